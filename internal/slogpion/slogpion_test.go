package slogpion

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestScopesAndLevels(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ice := New(l).NewLogger("ice")
	ice.Tracef("hidden %d", 1)
	ice.Debugf("pair %s", "a-b")
	ice.Warn("slow")
	ice.Errorf("failed: %v", "x")
	out := buf.String()
	if strings.Contains(out, "hidden") {
		t.Errorf("trace shown at debug level:\n%s", out)
	}
	for _, want := range []string{
		`level=DEBUG msg="pair a-b" pion=ice`,
		`level=WARN msg=slow pion=ice`,
		`level=ERROR msg="failed: x" pion=ice`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
