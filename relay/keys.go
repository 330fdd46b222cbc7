package relay

import (
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// MinClusterKeyLen is the shortest cluster key New accepts.
const MinClusterKeyLen = 16

// Labels keep every key derived from the cluster key apart from the others.
const (
	hkdfSalt       = "shoal relay v1"
	labelIdentity  = "tls identity"
	labelExporter  = "shoal relay srtp"
	labelDirection = "srtp direction "
	srtpKeyLen     = 16 // AEAD_AES_128_GCM master key
	srtpSaltLen    = 12 // AEAD_AES_128_GCM master salt
	exporterLen    = 32
	nonceLen       = 32
	certCommonName = "shoal-relay"
)

// identity is the TLS certificate every holder of the cluster key derives in
// the same way: HKDF(cluster key) → ed25519 seed → self-signed certificate.
// Both ends of a link present it and accept only a peer whose public key is
// the same, so a process without the key can finish no handshake.
type identity struct {
	cert tls.Certificate
	pub  ed25519.PublicKey
}

func deriveIdentity(clusterKey []byte) (*identity, error) {
	seed, err := hkdf.Key(sha256.New, clusterKey, []byte(hkdfSalt), labelIdentity, ed25519.SeedSize)
	if err != nil {
		return nil, fmt.Errorf("relay: derive identity: %w", err)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	pub := priv.Public().(ed25519.PublicKey)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: certCommonName},
		DNSNames:              []string{certCommonName},
		NotBefore:             time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, pub, priv)
	if err != nil {
		return nil, fmt.Errorf("relay: create certificate: %w", err)
	}
	return &identity{
		cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv},
		pub:  pub,
	}, nil
}

var errPeerKey = errors.New("relay: peer does not hold the cluster key")

// verify accepts exactly one certificate whose public key is ours. The TLS
// handshake has already proved the peer holds the matching private key.
func (id *identity) verify(rawCerts [][]byte, _ [][]*x509.Certificate) error {
	if len(rawCerts) != 1 {
		return errPeerKey
	}
	c, err := x509.ParseCertificate(rawCerts[0])
	if err != nil {
		return errPeerKey
	}
	pub, ok := c.PublicKey.(ed25519.PublicKey)
	if !ok || subtle.ConstantTimeCompare(pub, id.pub) != 1 {
		return errPeerKey
	}
	return nil
}

// tlsConfig is the configuration of both ends: TLS 1.3 only, mutual,
// pinned to the derived identity. The usual chain check is replaced by the
// pin (InsecureSkipVerify only turns off the chain check; VerifyPeerCertificate
// still runs and refuses every other key).
func (id *identity) tlsConfig(nextProto string) *tls.Config {
	return &tls.Config{
		MinVersion:            tls.VersionTLS13,
		Certificates:          []tls.Certificate{id.cert},
		ClientAuth:            tls.RequireAnyClientCert,
		InsecureSkipVerify:    true, //nolint:gosec // replaced by the pin in VerifyPeerCertificate
		VerifyPeerCertificate: id.verify,
		ServerName:            certCommonName,
		NextProtos:            []string{nextProto},
	}
}

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
