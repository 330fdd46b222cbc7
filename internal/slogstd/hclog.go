package slogstd

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"slices"
	"strconv"

	"github.com/hashicorp/go-hclog"
)

// LevelFunc returns the level at which to log a message that a library
// logs at level with args (its key-value pairs). It lets a caller demote
// messages known to be part of normal operation.
type LevelFunc func(level slog.Level, msg string, args []any) slog.Level

// NewHCLog returns an hclog.Logger whose messages go to logger (nil:
// slog.Default()), tagged with component=name and prefixed "name: ", the
// key-value pairs as attributes. Levels map one to one (hclog's Trace is
// slog.LevelDebug-4); level, if not nil, may change the level of a
// message. The level filter is logger's: SetLevel does nothing. An argument
// named "node" or "component", keys this module's loggers set, is renamed
// name.node or name.component.
func NewHCLog(logger *slog.Logger, name string, level LevelFunc) hclog.Logger {
	if logger == nil {
		logger = slog.Default()
	}
	return &hcLogger{base: logger, l: logger.With("component", name), name: name, level: level}
}

type hcLogger struct {
	base  *slog.Logger // without component and implied args, for Named
	l     *slog.Logger
	name  string
	args  []any // implied args, already in l
	level LevelFunc
}

var _ hclog.Logger = (*hcLogger)(nil)

// slogLevel maps an hclog level to slog's.
func slogLevel(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace:
		return slog.LevelDebug - 4
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	}
	return slog.LevelInfo // Info, NoLevel
}

func (h *hcLogger) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off {
		return
	}
	lv := slogLevel(level)
	if h.level != nil {
		lv = h.level(lv, msg, args)
	}
	ctx := context.Background()
	if !h.l.Enabled(ctx, lv) {
		return
	}
	h.l.Log(ctx, lv, h.name+": "+msg, h.attrs(args)...)
}

// reserved are the attribute keys that the loggers of this module set
// themselves. A library's own argument with one of these keys is renamed
// NAME.KEY (raft's "node", the state it enters, becomes raft.node), so that
// a line never carries a key twice.
var reserved = []string{"node", "component"}

// attrs turns hclog's key-value pairs into slog's, formatting hclog's value
// types (Fmt, Hex, ...) and other values that are not errors or slog kinds
// as hclog does. A lone last value gets the key EXTRA_VALUE_AT_END, as in
// hclog.
func (h *hcLogger) attrs(args []any) []any {
	out := make([]any, 0, len(args))
	for i := 0; i < len(args); i += 2 {
		if i+1 == len(args) {
			out = append(out, slog.Any("EXTRA_VALUE_AT_END", value(args[i])))
			break
		}
		k := fmt.Sprint(args[i])
		if slices.Contains(reserved, k) {
			k = h.name + "." + k
		}
		out = append(out, slog.Any(k, value(args[i+1])))
	}
	return out
}

func value(v any) any {
	switch v := v.(type) {
	case hclog.Format:
		if len(v) == 0 {
			return ""
		}
		return fmt.Sprintf(fmt.Sprint(v[0]), v[1:]...)
	case hclog.Hex:
		return "0x" + strconv.FormatInt(int64(v), 16)
	case hclog.Octal:
		return "0" + strconv.FormatInt(int64(v), 8)
	case hclog.Binary:
		return "0b" + strconv.FormatInt(int64(v), 2)
	case hclog.Quote:
		return strconv.Quote(string(v))
	case error:
		return v
	}
	if slog.AnyValue(v).Kind() == slog.KindAny {
		return fmt.Sprint(v) // as hclog does; slog's %+v would name struct fields
	}
	return v
}

func (h *hcLogger) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }
func (h *hcLogger) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }
func (h *hcLogger) Info(msg string, args ...any)  { h.Log(hclog.Info, msg, args...) }
func (h *hcLogger) Warn(msg string, args ...any)  { h.Log(hclog.Warn, msg, args...) }
func (h *hcLogger) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }

func (h *hcLogger) enabled(l hclog.Level) bool {
	return h.l.Enabled(context.Background(), slogLevel(l))
}

func (h *hcLogger) IsTrace() bool { return h.enabled(hclog.Trace) }
func (h *hcLogger) IsDebug() bool { return h.enabled(hclog.Debug) }
func (h *hcLogger) IsInfo() bool  { return h.enabled(hclog.Info) }
func (h *hcLogger) IsWarn() bool  { return h.enabled(hclog.Warn) }
func (h *hcLogger) IsError() bool { return h.enabled(hclog.Error) }

func (h *hcLogger) ImpliedArgs() []any { return h.args }

func (h *hcLogger) With(args ...any) hclog.Logger {
	c := *h
	c.args = append(append([]any(nil), h.args...), args...)
	c.l = h.l.With(h.attrs(args)...)
	return &c
}

func (h *hcLogger) Name() string { return h.name }

func (h *hcLogger) Named(name string) hclog.Logger {
	if h.name != "" {
		name = h.name + "." + name
	}
	return h.ResetNamed(name)
}

func (h *hcLogger) ResetNamed(name string) hclog.Logger {
	c := *h
	c.name = name
	c.l = h.base.With("component", name).With(c.attrs(h.args)...)
	return &c
}

func (h *hcLogger) SetLevel(hclog.Level) {}

func (h *hcLogger) GetLevel() hclog.Level {
	for _, l := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn, hclog.Error} {
		if h.enabled(l) {
			return l
		}
	}
	return hclog.Off
}

// StandardLogger returns a *log.Logger writing to this logger. Its lines'
// "[LEVEL]" prefixes are read as New reads them, unless opts.ForceLevel
// sets the level.
func (h *hcLogger) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(opts), "", 0)
}

func (h *hcLogger) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	w := &stdWriter{h: h}
	if opts != nil {
		w.force = opts.ForceLevel
	}
	return w
}

type stdWriter struct {
	h     *hcLogger
	force hclog.Level
}

func (w *stdWriter) Write(p []byte) (int, error) {
	line, level := ParseLine(p)
	if w.force != hclog.NoLevel {
		level = slogLevel(w.force)
	}
	ctx := context.Background()
	if w.h.l.Enabled(ctx, level) {
		w.h.l.Log(ctx, level, string(line))
	}
	return len(p), nil
}
