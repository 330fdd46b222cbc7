package slogstd

import (
	"bytes"
	"context"
	"log"
	"log/slog"
)

// Option configures New.
type Option func(*writer)

// WithLimiter makes the logger count its warnings and errors against lim,
// which several loggers may share. Without it each logger has its own
// Limiter with the default interval and size.
func WithLimiter(lim *Limiter) Option {
	return func(w *writer) { w.lim = lim }
}

// New returns a *log.Logger whose lines go to logger (nil: slog.Default()),
// tagged with component.
func New(logger *slog.Logger, component string, opts ...Option) *log.Logger {
	if logger == nil {
		logger = slog.Default()
	}
	if component != "" {
		logger = logger.With("component", component)
	}
	w := &writer{l: logger}
	for _, o := range opts {
		o(w)
	}
	if w.lim == nil {
		w.lim = NewLimiter(0, 0)
	}
	return log.New(w, "", 0)
}

type writer struct {
	l   *slog.Logger
	lim *Limiter
}

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
	ctx := context.Background()
	if !w.l.Enabled(ctx, level) {
		return n, nil
	}
	if level >= slog.LevelWarn {
		if src, ok := Source(line); ok && !w.lim.admit(src, level, string(line), w.l) {
			return n, nil
		}
	}
	w.l.Log(ctx, level, string(line))
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
