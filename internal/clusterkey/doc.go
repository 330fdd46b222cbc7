// Package clusterkey turns the cluster key into the TLS identity that every
// node-to-node connection uses (the cluster's Raft and RPC port, the relay's
// control links): HKDF-SHA256(cluster key, purpose) → ed25519 seed → a
// self-signed certificate. Both ends present it and accept only a peer whose
// public key is the same, so a process without the key completes no
// handshake, neither as client nor as server.
//
// Usage:
//
//	id, err := clusterkey.Derive(key, "relay")
//	if err != nil { ... }
//	ln := tls.NewListener(raw, id.TLSConfig("shoal-relay/1"))
//	conn := tls.Client(raw, id.TLSConfig("shoal-relay/1"))
//
// Each purpose gets its own key pair, so a certificate of one cannot be
// replayed on the other's port.
//
// clusterkey.go holds the whole package; doc.go only this comment.
package clusterkey
