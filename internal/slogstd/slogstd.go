// Package slogstd adapts a *slog.Logger to the standard library *log.Logger
// that serf and memberlist take (and that raft's hclog can wrap), keeping the
// level these libraries write as a "[LEVEL]" prefix.
//
// Usage:
//
//	conf := serf.DefaultConfig()
//	conf.Logger = slogstd.New(logger, "serf")
//	conf.MemberlistConfig.Logger = slogstd.New(logger, "memberlist")
//
// A line such as "[WARN] memberlist: Refuting a suspect message" becomes a
// slog record at LevelWarn with the message "memberlist: Refuting a suspect
// message" and the attribute component=serf. Lines without a known prefix are
// logged at Info.
package slogstd

import (
	"bytes"
	"context"
	"log"
	"log/slog"
)

// New returns a *log.Logger whose lines go to logger (nil: slog.Default()),
// tagged with component.
func New(logger *slog.Logger, component string) *log.Logger {
	if logger == nil {
		logger = slog.Default()
	}
	if component != "" {
		logger = logger.With("component", component)
	}
	return log.New(&writer{l: logger}, "", 0)
}

type writer struct{ l *slog.Logger }

var levels = []struct {
	prefix []byte
	level  slog.Level
}{
	{[]byte("[TRACE]"), slog.LevelDebug - 4},
	{[]byte("[DEBUG]"), slog.LevelDebug},
	{[]byte("[INFO]"), slog.LevelInfo},
	{[]byte("[WARN]"), slog.LevelWarn},
	{[]byte("[ERR]"), slog.LevelError},
	{[]byte("[ERROR]"), slog.LevelError},
}

// Write logs one line. The *log.Logger calls it once per line, serialised.
func (w *writer) Write(p []byte) (int, error) {
	n := len(p)
	line, level := ParseLine(p)
	w.l.Log(context.Background(), level, string(line))
	return n, nil
}

// ParseLine splits a "[LEVEL] message" line into its message and slog level.
// It trims the trailing newline and surrounding spaces. A line without a known
// prefix is returned whole at slog.LevelInfo.
func ParseLine(p []byte) ([]byte, slog.Level) {
	p = bytes.TrimSpace(p)
	for _, lv := range levels {
		if bytes.HasPrefix(p, lv.prefix) {
			return bytes.TrimSpace(p[len(lv.prefix):]), lv.level
		}
	}
	return p, slog.LevelInfo
}
