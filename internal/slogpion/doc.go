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
// Logs stay readable under attack. Several pion components write a line per
// bad packet a peer sends: the SRTP session one per packet failing its
// authentication or replay check (Info), ICE one per undecodable datagram,
// per binding request with a wrong username or broken integrity and per
// response with an unknown transaction (Warn), the internal mux one per
// packet it cannot dispatch (Warn, Error). So Info, Warn and Error lines
// are rate-limited (internal/lograte): per scope (all "ice" loggers of the
// factory together, whatever the connection) and per message template (the
// format of an Infof/Warnf/Errorf call; for Info/Warn/Error, the message
// with its digits left out), 5 lines of a kind at once, then at most one
// every 10 seconds; the first line of a kind shown after suppressed ones
// carries suppressed=N, the number left out since the previous one.
// Debug and Trace are not limited (they are for debugging) and cost only
// the level check when off.
//
// slogpion.go holds the whole package; doc.go only this comment.
package slogpion
