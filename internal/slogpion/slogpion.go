package slogpion

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/pion/logging"

	"github.com/shoal-sfu/shoal/internal/lograte"
)

// LevelTrace is the slog level used for pion's Trace messages.
const LevelTrace = slog.LevelDebug - 4

// Factory is a logging.LoggerFactory writing to a *slog.Logger.
type Factory struct {
	logger *slog.Logger

	mu     sync.Mutex
	scopes map[string]*lograte.Limiter // one per scope, shared by its loggers
}

var _ logging.LoggerFactory = (*Factory)(nil)

// New returns a factory writing to logger; nil means slog.Default().
func New(logger *slog.Logger) *Factory {
	if logger == nil {
		logger = slog.Default()
	}
	return &Factory{logger: logger, scopes: map[string]*lograte.Limiter{}}
}

// NewLogger returns a leveled logger for one pion scope ("ice", "dtls", ...).
// The Info, Warn and Error lines of all loggers of one scope are rate-limited
// together, per message template (lograte.DefaultBurst at once, then one per
// lograte.DefaultInterval).
func (f *Factory) NewLogger(scope string) logging.LeveledLogger {
	f.mu.Lock()
	lim := f.scopes[scope]
	if lim == nil {
		lim = lograte.New(lograte.DefaultBurst, lograte.DefaultInterval)
		f.scopes[scope] = lim
	}
	f.mu.Unlock()
	return &leveled{l: f.logger.With("pion", scope), lim: lim}
}

type leveled struct {
	l   *slog.Logger
	lim *lograte.Limiter
}

var _ logging.LeveledLogger = (*leveled)(nil)

var bg = context.Background()

func (p *leveled) log(level slog.Level, msg string) {
	if !p.l.Enabled(bg, level) {
		return
	}
	n := 0
	if level >= slog.LevelInfo {
		// A plain message is often an error's text with numbers in it
		// (an SSRC, an index): alike once the digits are left out.
		var ok bool
		if ok, n = p.lim.Allow(lograte.KeyMessage(uint64(level), msg)); !ok {
			return
		}
	}
	p.write(level, msg, n)
}

func (p *leveled) logf(level slog.Level, format string, args ...any) {
	// Formatting costs even when the level is off; check first.
	if !p.l.Enabled(bg, level) {
		return
	}
	n := 0
	if level >= slog.LevelInfo {
		var ok bool
		if ok, n = p.lim.Allow(lograte.Key(uint64(level), format)); !ok {
			return
		}
	}
	p.write(level, fmt.Sprintf(format, args...), n)
}

func (p *leveled) write(level slog.Level, msg string, suppressed int) {
	if suppressed > 0 {
		p.l.Log(bg, level, msg, lograte.SuppressedKey, suppressed)
		return
	}
	p.l.Log(bg, level, msg)
}

func (p *leveled) Trace(msg string)                  { p.log(LevelTrace, msg) }
func (p *leveled) Tracef(format string, args ...any) { p.logf(LevelTrace, format, args...) }
func (p *leveled) Debug(msg string)                  { p.log(slog.LevelDebug, msg) }
func (p *leveled) Debugf(format string, args ...any) { p.logf(slog.LevelDebug, format, args...) }
func (p *leveled) Info(msg string)                   { p.log(slog.LevelInfo, msg) }
func (p *leveled) Infof(format string, args ...any)  { p.logf(slog.LevelInfo, format, args...) }
func (p *leveled) Warn(msg string)                   { p.log(slog.LevelWarn, msg) }
func (p *leveled) Warnf(format string, args ...any)  { p.logf(slog.LevelWarn, format, args...) }
func (p *leveled) Error(msg string)                  { p.log(slog.LevelError, msg) }
func (p *leveled) Errorf(format string, args ...any) { p.logf(slog.LevelError, format, args...) }
