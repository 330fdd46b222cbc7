package slogpion

import (
	"log/slog"
	"testing"

	"github.com/shoal-sfu/shoal/internal/testutil"
)

func TestScopesAndLevels(t *testing.T) {
	l, buf := testutil.BufferLogger(slog.LevelDebug)
	ice := New(l).NewLogger("ice")
	ice.Tracef("hidden %d", 1)
	ice.Debugf("pair %s", "a-b")
	ice.Warn("slow")
	ice.Errorf("failed: %v", "x")
	if buf.Missing("hidden") == nil {
		t.Errorf("trace shown at debug level:\n%s", buf)
	}
	for _, want := range buf.Missing(
		`level=DEBUG msg="pair a-b" pion=ice`,
		`level=WARN msg=slow pion=ice`,
		`level=ERROR msg="failed: x" pion=ice`,
	) {
		t.Errorf("output lacks %q:\n%s", want, buf)
	}
}
