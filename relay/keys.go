package relay

import (
	"crypto/hkdf"
	"crypto/sha256"
	"fmt"

	"github.com/shoal-sfu/shoal/internal/clusterkey"
)

// MinClusterKeyLen is the shortest cluster key New accepts.
const MinClusterKeyLen = clusterkey.MinLen

// Labels keep every key derived from the cluster key apart from the others.
const (
	hkdfSalt       = "shoal relay v1"
	labelExporter  = "shoal relay srtp"
	labelDirection = "srtp direction "
	srtpKeyLen     = 16 // AEAD_AES_128_GCM master key
	srtpSaltLen    = 12 // AEAD_AES_128_GCM master salt
	exporterLen    = 32
	nonceLen       = 32
)

// srtpKeys derives the SRTP master key and salt for one direction of one
// link from the cluster key, the TLS exporter of this link's control
// connection, both hello nonces and the direction's node names. A fresh
// control connection gives fresh keys, so sequence numbers may restart.
func srtpKeys(clusterKey, exporter, dialerNonce, acceptorNonce []byte, from, to string) (key, salt []byte, err error) {
	secret := make([]byte, 0, len(clusterKey)+len(exporter))
	secret = append(append(secret, clusterKey...), exporter...)
	s := make([]byte, 0, len(dialerNonce)+len(acceptorNonce))
	s = append(append(s, dialerNonce...), acceptorNonce...)
	out, err := hkdf.Key(sha256.New, secret, s, labelDirection+from+">"+to, srtpKeyLen+srtpSaltLen)
	if err != nil {
		return nil, nil, fmt.Errorf("relay: derive srtp keys: %w", err)
	}
	return out[:srtpKeyLen], out[srtpKeyLen:], nil
}
