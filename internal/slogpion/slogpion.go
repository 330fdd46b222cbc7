package slogpion

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// LevelTrace is the slog level used for pion's Trace messages.
const LevelTrace = slog.LevelDebug - 4

// Factory is a logging.LoggerFactory writing to a *slog.Logger.
type Factory struct {
	logger *slog.Logger
}

var _ logging.LoggerFactory = (*Factory)(nil)

// New returns a factory writing to logger; nil means slog.Default().
func New(logger *slog.Logger) *Factory {
	if logger == nil {
		logger = slog.Default()
	}
	return &Factory{logger: logger}
}

// NewLogger returns a leveled logger for one pion scope ("ice", "dtls", ...).
func (f *Factory) NewLogger(scope string) logging.LeveledLogger {
	return &leveled{l: f.logger.With("pion", scope)}
}

type leveled struct{ l *slog.Logger }

var _ logging.LeveledLogger = (*leveled)(nil)

func (p *leveled) log(level slog.Level, msg string) {
	p.l.Log(context.Background(), level, msg)
}

func (p *leveled) logf(level slog.Level, format string, args ...any) {
	// Formatting costs even when the level is off; check first.
	if !p.l.Enabled(context.Background(), level) {
		return
	}
	p.l.Log(context.Background(), level, fmt.Sprintf(format, args...))
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
