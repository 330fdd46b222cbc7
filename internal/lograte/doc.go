// Package lograte keeps logs readable under attack: a Limiter lets the
// first few lines of a kind through at once, then at most one line per
// interval, and the line that passes after a pause says how many lines
// like it were left out (the attribute "suppressed").
//
// A kind is a uint64 key the caller derives from what makes lines alike:
// a logger's scope, the level and the message template (Key, KeyMessage).
// A limiter holds at most MaxKinds kinds; lines of further kinds share one.
//
// Usage for a line that a peer can cause at will (one per bad packet or
// message):
//
//	var badFrame = lograte.New(lograte.DefaultBurst, lograte.DefaultInterval)
//	...
//	badFrame.Log(ctx, logger, slog.LevelWarn, "relay: bad frame", "err", err)
//
// Files: lograte.go holds the Limiter; doc.go only this comment.
package lograte
