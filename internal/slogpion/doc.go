// Package slogpion adapts a *slog.Logger to pion's logging.LoggerFactory, so
// that pion's ICE, DTLS, SCTP and peer-connection logs go to the node's logger
// with their scope as an attribute.
//
// Usage:
//
//	se := webrtc.SettingEngine{}
//	se.LoggerFactory = slogpion.New(logger)
//
// Pion's Trace level maps to slog.LevelDebug-4, so it is hidden unless the
// handler asks for it.
//
// slogpion.go holds the whole package; doc.go only this comment.
package slogpion
