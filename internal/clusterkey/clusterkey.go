package clusterkey

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

// MinLen is the shortest cluster key accepted.
const MinLen = 16

// ErrPeerKey is the handshake error for a peer that does not hold the key.
var ErrPeerKey = errors.New("clusterkey: peer does not hold the cluster key")

const salt = "shoal cluster key v1"

// Identity is the certificate derived from a cluster key for one purpose.
type Identity struct {
	cert tls.Certificate
	pub  ed25519.PublicKey
	name string
}

// Derive returns the identity of purpose ("cluster", "relay", ...) for key.
// The same key and purpose give the same identity on every node.
func Derive(key []byte, purpose string) (*Identity, error) {
	if len(key) < MinLen {
		return nil, fmt.Errorf("clusterkey: key of %d bytes, want at least %d", len(key), MinLen)
	}
	if purpose == "" {
		return nil, errors.New("clusterkey: empty purpose")
	}
	seed, err := hkdf.Key(sha256.New, key, []byte(salt), purpose+" tls identity", ed25519.SeedSize)
	if err != nil {
		return nil, fmt.Errorf("clusterkey: derive %s identity: %w", purpose, err)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	pub := priv.Public().(ed25519.PublicKey)
	name := "shoal-" + purpose
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		DNSNames:              []string{name},
		NotBefore:             time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	// ed25519 signing is deterministic: no randomness needed.
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, pub, priv)
	if err != nil {
		return nil, fmt.Errorf("clusterkey: create %s certificate: %w", purpose, err)
	}
	return &Identity{cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}, pub: pub, name: name}, nil
}

// Verify accepts exactly one certificate whose public key is the
// identity's. The TLS handshake has already proved that the peer holds the
// matching private key. It has the signature of
// tls.Config.VerifyPeerCertificate.
func (id *Identity) Verify(rawCerts [][]byte, _ [][]*x509.Certificate) error {
	if len(rawCerts) != 1 {
		return ErrPeerKey
	}
	c, err := x509.ParseCertificate(rawCerts[0])
	if err != nil {
		return ErrPeerKey
	}
	pub, ok := c.PublicKey.(ed25519.PublicKey)
	if !ok || subtle.ConstantTimeCompare(pub, id.pub) != 1 {
		return ErrPeerKey
	}
	return nil
}

// TLSConfig is the configuration of both ends of a connection: TLS 1.3
// only, mutual, pinned to the identity. InsecureSkipVerify turns off only
// the chain check, which the pin in VerifyPeerCertificate replaces.
func (id *Identity) TLSConfig(nextProtos ...string) *tls.Config {
	return &tls.Config{
		MinVersion:            tls.VersionTLS13,
		Certificates:          []tls.Certificate{id.cert},
		ClientAuth:            tls.RequireAnyClientCert,
		InsecureSkipVerify:    true, // replaced by the pin in VerifyPeerCertificate
		VerifyPeerCertificate: id.Verify,
		ServerName:            id.name,
		NextProtos:            nextProtos,
	}
}
