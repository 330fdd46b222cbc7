package lograte

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/shoal-sfu/shoal/internal/testutil"
)

// fakeClock returns a limiter whose clock the test moves.
func fakeClock(burst int, interval time.Duration) (*Limiter, *time.Time) {
	l := New(burst, interval)
	now := time.Unix(1000, 0)
	l.now = func() time.Time { return now }
	return l, &now
}

func TestBurstThenOnePerInterval(t *testing.T) {
	l, now := fakeClock(3, time.Second)
	a, b := Key(0, "a %d"), Key(0, "b %d")
	allowed := 0
	for range 100 {
		if ok, _ := l.Allow(a); ok {
			allowed++
		}
	}
	if allowed != 3 {
		t.Fatalf("%d of 100 lines at once allowed, want the burst of 3", allowed)
	}
	if ok, n := l.Allow(b); !ok || n != 0 {
		t.Fatalf("another kind's first line: allowed %v suppressed %d", ok, n)
	}
	*now = now.Add(999 * time.Millisecond)
	if ok, _ := l.Allow(a); ok {
		t.Fatal("allowed before the interval")
	}
	*now = now.Add(time.Millisecond)
	ok, n := l.Allow(a)
	if !ok || n != 98 {
		t.Fatalf("after the interval: allowed %v suppressed %d, want true 98", ok, n)
	}
	if ok, _ := l.Allow(a); ok {
		t.Fatal("two lines in one interval")
	}
	// A long quiet period refills the burst, no more.
	*now = now.Add(time.Hour)
	allowed = 0
	for range 10 {
		if ok, _ := l.Allow(a); ok {
			allowed++
		}
	}
	if allowed != 3 {
		t.Fatalf("after an hour %d lines allowed, want 3", allowed)
	}
}

func TestKindsBounded(t *testing.T) {
	l, _ := fakeClock(1, time.Second)
	for i := range 10 * MaxKinds {
		l.Allow(Key(uint64(i), "x"))
	}
	if len(l.kinds) > MaxKinds {
		t.Fatalf("%d kinds tracked, bound %d", len(l.kinds), MaxKinds)
	}
	// Past the bound, new kinds share one: at most one line of them.
	allowed := 0
	for i := range 100 {
		if ok, _ := l.Allow(Key(uint64(i), "y")); ok {
			allowed++
		}
	}
	if allowed > 1 {
		t.Fatalf("%d lines of untracked kinds allowed, want at most 1", allowed)
	}
}

func TestKeyMessageIgnoresNumbers(t *testing.T) {
	a := KeyMessage(0, "srtp ssrc=1234 index=77: duplicated packet")
	b := KeyMessage(0, "srtp ssrc=99 index=65535: duplicated packet")
	c := KeyMessage(0, "srtcp ssrc=99 index=65535: duplicated packet")
	if a != b {
		t.Error("messages differing in numbers are different kinds")
	}
	long := " and then a long tail of text that goes past sixty-four bytes, the end"
	if KeyMessage(0, "size 4 < 16:"+long) != KeyMessage(0, "size 101 < 160828:"+long) {
		t.Error("long messages differing in the length of their numbers are different kinds")
	}
	if a == c {
		t.Error("different messages are one kind")
	}
	if KeyMessage(1, "x") == KeyMessage(2, "x") {
		t.Error("the seed is ignored")
	}
}

func TestLogShowsSuppressed(t *testing.T) {
	logger, buf := testutil.BufferLogger(slog.LevelInfo)
	l, now := fakeClock(2, time.Second)
	ctx := context.Background()
	for i := range 50 {
		l.Log(ctx, logger, slog.LevelWarn, "bad frame", "n", i)
		l.Log(ctx, logger, slog.LevelDebug, "hidden", "n", i)
	}
	*now = now.Add(time.Second)
	l.Log(ctx, logger, slog.LevelWarn, "bad frame", "n", 50)
	out := buf.String()
	if got := strings.Count(out, "\n"); got != 3 {
		t.Fatalf("%d lines, want 3:\n%s", got, out)
	}
	for _, want := range buf.Missing(`msg="bad frame" n=0`, `msg="bad frame" n=1`, `msg="bad frame" n=50 suppressed=48`) {
		t.Errorf("output lacks %q:\n%s", want, out)
	}
}

func TestAllowAllocatesNothing(t *testing.T) {
	l := New(1, time.Hour)
	k := Key(0, "x")
	l.Allow(k)
	if n := testing.AllocsPerRun(1000, func() { l.Allow(k) }); n != 0 {
		t.Fatalf("Allow allocates %v per call", n)
	}
}
