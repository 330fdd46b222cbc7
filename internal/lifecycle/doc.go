// Package lifecycle is the start-once, close-once state every long-lived
// part of Shoal (cluster node, relay, SFU, the ready-wired node) keeps:
// constructors start nothing, Start runs once, Close is safe to call twice,
// and calls after Close fail with an error wrapping net.ErrClosed.
//
// The file lifecycle.go holds the whole package.
package lifecycle
