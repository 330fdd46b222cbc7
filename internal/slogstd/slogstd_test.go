package slogstd

import (
	"log/slog"
	"testing"

	"github.com/shoal-sfu/shoal/internal/testutil"
)

func TestLevelsAndComponent(t *testing.T) {
	l, buf := testutil.BufferLogger(slog.LevelDebug)
	std := New(l, "serf")
	std.Printf("[WARN] memberlist: Refuting a suspect message (from: a)")
	std.Printf("[DEBUG] serf: messageJoinType: b")
	std.Printf("[ERR] memberlist: Failed to send")
	std.Printf("no prefix here")
	for _, want := range buf.Missing(
		`level=WARN msg="memberlist: Refuting a suspect message (from: a)" component=serf`,
		`level=DEBUG msg="serf: messageJoinType: b" component=serf`,
		`level=ERROR msg="memberlist: Failed to send" component=serf`,
		`level=INFO msg="no prefix here" component=serf`,
	) {
		t.Errorf("output lacks %q:\n%s", want, buf)
	}
}

func TestParseLine(t *testing.T) {
	for _, tc := range []struct {
		in    string
		msg   string
		level slog.Level
	}{
		{"[INFO] raft: started\n", "raft: started", slog.LevelInfo},
		{"[TRACE] x", "x", slog.LevelDebug - 4},
		{"[ERROR] y", "y", slog.LevelError},
		{"", "", slog.LevelInfo},
		{"[WARN", "[WARN", slog.LevelInfo},
	} {
		msg, level := ParseLine([]byte(tc.in))
		if string(msg) != tc.msg || level != tc.level {
			t.Errorf("ParseLine(%q) = %q, %v; want %q, %v", tc.in, msg, level, tc.msg, tc.level)
		}
	}
}
