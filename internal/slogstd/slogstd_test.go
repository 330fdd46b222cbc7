package slogstd

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestLevelsAndComponent(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	std := New(l, "serf")
	std.Printf("[WARN] memberlist: Refuting a suspect message (from: a)")
	std.Printf("[DEBUG] serf: messageJoinType: b")
	std.Printf("[ERR] memberlist: Failed to send")
	std.Printf("no prefix here")
	out := buf.String()
	for _, want := range []string{
		`level=WARN msg="memberlist: Refuting a suspect message (from: a)" component=serf`,
		`level=DEBUG msg="serf: messageJoinType: b" component=serf`,
		`level=ERROR msg="memberlist: Failed to send" component=serf`,
		`level=INFO msg="no prefix here" component=serf`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
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
