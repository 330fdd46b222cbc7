package slogpion

import (
	"fmt"
	"github.com/shoal-sfu/shoal/internal/lograte"
	"log/slog"
	"strings"
	"testing"
	"time"

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

// TestPerPacketLinesLimited: a peer causing one pion line per packet gets
// the first few lines of each kind, not one per packet, whichever logger of
// the scope writes them; other kinds and scopes still show; Debug is not
// limited.
func TestPerPacketLinesLimited(t *testing.T) {
	l, buf := testutil.BufferLogger(slog.LevelDebug)
	f := New(l)
	ice1, ice2, srtp := f.NewLogger("ice"), f.NewLogger("ice"), f.NewLogger("srtp")
	for i := range 1000 {
		ice1.Warnf("Discard message from (%s), unknown TransactionID 0x%x", "10.0.0.1:5000", i)
		ice2.Warnf("Discard message from (%s), unknown TransactionID 0x%x", "10.0.0.2:5000", i)
		srtp.Info(fmt.Sprintf("srtp ssrc=%d index=%d: duplicated packet", i, i))
		ice1.Debugf("debug %d", i)
	}
	ice1.Warn("other")
	srtp.Error("srtp: closed")
	out := buf.String()
	if n := strings.Count(out, "Discard message"); n != lograte.DefaultBurst {
		t.Errorf("%d ICE lines for 2000 packets, want %d", n, lograte.DefaultBurst)
	}
	if n := strings.Count(out, "duplicated packet"); n != lograte.DefaultBurst {
		t.Errorf("%d SRTP lines for 1000 packets, want %d", n, lograte.DefaultBurst)
	}
	if n := strings.Count(out, "debug "); n != 1000 {
		t.Errorf("%d debug lines, want 1000", n)
	}
	for _, want := range buf.Missing(
		`level=WARN msg="Discard message from (10.0.0.1:5000), unknown TransactionID 0x0" pion=ice`,
		`level=WARN msg=other pion=ice`,
		`level=ERROR msg="srtp: closed" pion=srtp`,
	) {
		t.Errorf("output lacks %q", want)
	}
}

// TestSuppressedCountShown: the first line of a kind allowed after a flood
// says how many were left out.
func TestSuppressedCountShown(t *testing.T) {
	l, buf := testutil.BufferLogger(slog.LevelInfo)
	f := New(l)
	lg := f.NewLogger("mux")
	now := time.Unix(1000, 0)
	f.scopes["mux"].SetClock(func() time.Time { return now })
	for range 20 {
		lg.Errorf("mux: failed to read from packetio.Buffer %s", "short buffer")
	}
	now = now.Add(lograte.DefaultInterval)
	lg.Errorf("mux: failed to read from packetio.Buffer %s", "short buffer")
	if n := strings.Count(buf.String(), "\n"); n != lograte.DefaultBurst+1 {
		t.Fatalf("%d lines, want %d:\n%s", n, lograte.DefaultBurst+1, buf)
	}
	for _, want := range buf.Missing(fmt.Sprintf(`msg="mux: failed to read from packetio.Buffer short buffer" pion=mux suppressed=%d`, 20-lograte.DefaultBurst)) {
		t.Errorf("output lacks %q:\n%s", want, buf)
	}
}

// TestDisabledLevelsAllocateNothing: Debug and Trace cost only the level
// check when off. (Debugf/Tracef's variadic arguments are pion's: the
// slice escapes into fmt.Sprintf, so it is allocated at pion's call site
// whatever the level; that is not ours to change.)
func TestDisabledLevelsAllocateNothing(t *testing.T) {
	l, _ := testutil.BufferLogger(slog.LevelInfo)
	lg := New(l).NewLogger("ice")
	if n := testing.AllocsPerRun(1000, func() {
		lg.Debug("pair")
		lg.Trace("x")
	}); n != 0 {
		t.Fatalf("disabled levels allocate %v", n)
	}
}

// BenchmarkLine: a pion line per packet at a level the handler drops
// (debug), and at one it keeps once its kind is over its rate (warn,
// suppressed).
func BenchmarkLine(b *testing.B) {
	l, _ := testutil.BufferLogger(slog.LevelInfo)
	lg := New(l).NewLogger("ice")
	b.Run("debug-off", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			lg.Debug("Discard message")
		}
	})
	b.Run("warn-suppressed", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			lg.Warn("Discard message from (10.0.0.1:5000), unknown TransactionID")
		}
	})
	b.Run("warnf-suppressed-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				lg.Warnf("Discard message from (%s), unknown TransactionID", "10.0.0.1:5000")
			}
		})
	})
}
