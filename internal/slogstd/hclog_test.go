package slogstd

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func textLogger(buf *bytes.Buffer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
}

type server struct{ ID, Addr string }

func TestHCLogLevelsAndArgs(t *testing.T) {
	var buf bytes.Buffer
	h := NewHCLog(textLogger(&buf, slog.LevelDebug).With("node", "n1"), "raft", nil)
	h.Trace("hidden below debug")
	h.Debug("d", "n", 1)
	h.Info("entering candidate state", "node", server{"a", "b"}, "term", 2)
	h.Warn("w", "error", errors.New("log not found"), "f", hclog.Fmt("%d-%s", 3, "x"), "h", hclog.Hex(255))
	h.Error("e", "lone")
	h.Log(hclog.Off, "off")
	want := []string{
		`level=DEBUG msg="raft: d" node=n1 component=raft n=1`,
		`level=INFO msg="raft: entering candidate state" node=n1 component=raft raft.node="{a b}" term=2`,
		`level=WARN msg="raft: w" node=n1 component=raft error="log not found" f=3-x h=0xff`,
		`level=ERROR msg="raft: e" node=n1 component=raft EXTRA_VALUE_AT_END=lone`,
	}
	if got := strings.TrimSpace(buf.String()); got != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", got, strings.Join(want, "\n"))
	}
}

func TestHCLogLevelFunc(t *testing.T) {
	var buf bytes.Buffer
	demote := func(level slog.Level, msg string, args []any) slog.Level {
		if msg == "expected" {
			return slog.LevelDebug
		}
		return level
	}
	h := NewHCLog(textLogger(&buf, slog.LevelInfo), "raft", demote)
	h.Warn("expected")
	h.Warn("real")
	if got := strings.TrimSpace(buf.String()); got != `level=WARN msg="raft: real" component=raft` {
		t.Errorf("got %q", got)
	}
}

func TestHCLogEnabledFollowsHandler(t *testing.T) {
	var buf bytes.Buffer
	h := NewHCLog(textLogger(&buf, slog.LevelInfo), "raft", nil)
	if h.IsDebug() || h.IsTrace() || !h.IsInfo() || !h.IsWarn() || !h.IsError() {
		t.Errorf("Is* at Info: trace %v debug %v info %v warn %v error %v", h.IsTrace(), h.IsDebug(), h.IsInfo(), h.IsWarn(), h.IsError())
	}
	if h.GetLevel() != hclog.Info {
		t.Errorf("GetLevel = %v, want Info", h.GetLevel())
	}
}

func TestHCLogWithAndNamed(t *testing.T) {
	var buf bytes.Buffer
	h := NewHCLog(textLogger(&buf, slog.LevelInfo), "raft", nil)
	w := h.With("snapshot-id", "s1")
	w.Info("a")
	w.Named("wal").Info("b")
	h.ResetNamed("x").Info("c")
	if got := w.ImpliedArgs(); len(got) != 2 {
		t.Errorf("ImpliedArgs = %v", got)
	}
	want := []string{
		`level=INFO msg="raft: a" component=raft snapshot-id=s1`,
		`level=INFO msg="raft.wal: b" component=raft.wal snapshot-id=s1`,
		`level=INFO msg="x: c" component=x`,
	}
	if got := strings.TrimSpace(buf.String()); got != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", got, strings.Join(want, "\n"))
	}
}

func TestHCLogStandardLogger(t *testing.T) {
	var buf bytes.Buffer
	h := NewHCLog(textLogger(&buf, slog.LevelDebug), "raft", nil)
	h.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}).Printf("[WARN] w")
	h.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Error}).Printf("[DEBUG] e")
	want := []string{`level=WARN msg=w component=raft`, `level=ERROR msg=e component=raft`}
	if got := strings.TrimSpace(buf.String()); got != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", got, strings.Join(want, "\n"))
	}
}
