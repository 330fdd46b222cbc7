package slogstd

import (
	"bytes"
	"fmt"
	"log"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-sfu/shoal/internal/testutil"
)

// fakeClock runs the functions a Limiter schedules when the test advances
// it, instead of on a timer.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Duration
	pending []scheduled
}

type scheduled struct {
	at time.Duration
	f  func()
}

func (c *fakeClock) after(d time.Duration, f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pending = append(c.pending, scheduled{c.now + d, f})
}

// advance moves the clock by d, running what falls due in order.
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	end := c.now + d
	c.mu.Unlock()
	for {
		c.mu.Lock()
		i := -1
		for j, s := range c.pending {
			if s.at <= end && (i < 0 || s.at < c.pending[i].at) {
				i = j
			}
		}
		if i < 0 {
			c.now = end
			c.mu.Unlock()
			return
		}
		s := c.pending[i]
		c.pending = append(c.pending[:i], c.pending[i+1:]...)
		c.now = s.at
		c.mu.Unlock()
		s.f()
	}
}

func (c *fakeClock) scheduled() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}

// limited returns a logger through a Limiter on a fake clock, with what it
// writes.
func limited(t *testing.T, interval time.Duration, maxSources int) (*log.Logger, *fakeClock, *bytes.Buffer, *Limiter) {
	t.Helper()
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	clock := &fakeClock{}
	lim := NewLimiter(interval, maxSources)
	lim.after = clock.after
	return New(l, "memberlist", WithLimiter(lim)), clock, &buf, lim
}

func lines(buf *bytes.Buffer) []string {
	s := strings.TrimSpace(buf.String())
	buf.Reset()
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func TestLimiterFirstLineThenOneSummaryPerInterval(t *testing.T) {
	std, clock, buf, _ := limited(t, 10*time.Second, 4)
	for i := range 1000 {
		std.Printf("[ERR] memberlist: Decrypt packet failed: bad %d from=10.0.0.1:%d", i, 1000+i)
	}
	got := lines(buf)
	want := []string{`level=ERROR msg="memberlist: Decrypt packet failed: bad 0 from=10.0.0.1:1000" component=memberlist`}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("before the interval ends: got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	clock.advance(9 * time.Second)
	if got := lines(buf); len(got) != 0 {
		t.Fatalf("summary before the interval ended: %q", got)
	}
	clock.advance(time.Second)
	got = lines(buf)
	want = []string{`level=ERROR msg="repeated lines from one source suppressed" component=memberlist source=10.0.0.1 suppressed=999 within=10s last="memberlist: Decrypt packet failed: bad 999 from=10.0.0.1:1999"`}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("at the interval's end: got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// The sender goes on: no new first line, one summary per interval.
	for range 3 {
		for range 50 {
			std.Printf("[WARN] memberlist: Got ping for unexpected node 'x' from=10.0.0.1:7")
		}
		if got := lines(buf); len(got) != 0 {
			t.Fatalf("a source being limited logged %q", got)
		}
		clock.advance(10 * time.Second)
		if got := lines(buf); len(got) != 1 || !strings.Contains(got[0], "level=WARN") || !strings.Contains(got[0], "suppressed=50 ") {
			t.Fatalf("summary %q, want one at WARN with suppressed=50", got)
		}
	}

	// Quiet for an interval: forgotten, its next line is logged whole,
	// and nothing is left scheduled.
	clock.advance(10 * time.Second)
	if got := lines(buf); len(got) != 0 {
		t.Fatalf("summary of a quiet interval: %q", got)
	}
	if n := clock.scheduled(); n != 0 {
		t.Fatalf("%d flushes scheduled with no source left", n)
	}
	std.Printf("[ERR] memberlist: again from=10.0.0.1:1")
	if got := lines(buf); len(got) != 1 || !strings.Contains(got[0], `msg="memberlist: again`) {
		t.Fatalf("after a quiet interval: %q", got)
	}
}

func TestLimiterPerSource(t *testing.T) {
	std, clock, buf, _ := limited(t, time.Second, 4)
	for i := range 3 {
		for src := range 3 {
			std.Printf("[ERR] memberlist: bad %d from=10.0.0.%d:5", i, src)
		}
	}
	if got := lines(buf); len(got) != 3 {
		t.Fatalf("3 sources logged %d lines, want one each:\n%s", len(got), strings.Join(got, "\n"))
	}
	clock.advance(time.Second)
	got := strings.Join(lines(buf), "\n")
	for src := range 3 {
		if !strings.Contains(got, fmt.Sprintf("source=10.0.0.%d suppressed=2 ", src)) {
			t.Errorf("no summary of 2 for 10.0.0.%d in\n%s", src, got)
		}
	}
}

func TestLimiterBoundedTable(t *testing.T) {
	const max = 8
	std, clock, buf, lim := limited(t, time.Second, max)
	// A spoofing sender: every packet from a new address.
	for i := range 10000 {
		std.Printf("[ERR] memberlist: bad from=10.%d.%d.%d:5", i>>16, (i>>8)&0xff, i&0xff)
	}
	lim.mu.Lock()
	size := len(lim.sources)
	lim.mu.Unlock()
	if size > max {
		t.Fatalf("table holds %d sources, want at most %d", size, max)
	}
	if got := lines(buf); len(got) != max {
		t.Fatalf("logged %d lines, want %d (one per source the table holds)", len(got), max)
	}
	clock.advance(time.Second)
	got := lines(buf)
	if len(got) != 1 || !strings.Contains(got[0], `source="other sources" suppressed=9992 `) {
		t.Fatalf("summary %q, want one for the other sources with suppressed=9992", got)
	}
	// The quiet sources were forgotten: room for new ones.
	std.Printf("[ERR] memberlist: bad from=192.0.2.1:5")
	if got := lines(buf); len(got) != 1 {
		t.Fatalf("a new source after a flush logged %q", got)
	}
}

func TestLimiterLeavesOtherLinesAlone(t *testing.T) {
	std, clock, buf, _ := limited(t, time.Second, 4)
	for range 5 {
		std.Printf("[DEBUG] memberlist: Stream connection from=10.0.0.1:5")
		std.Printf("[INFO] serf: EventMemberJoin: a 10.0.0.1")
		std.Printf("[WARN] memberlist: Was able to connect to b over TCP but UDP probes failed")
	}
	if got := lines(buf); len(got) != 15 {
		t.Fatalf("logged %d of 15 lines below Warn or naming no source", len(got))
	}
	clock.advance(time.Second)
	if got := lines(buf); len(got) != 0 {
		t.Fatalf("summary with nothing suppressed: %q", got)
	}
}

func TestLimiterSharedByLoggers(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, nil))
	clock := &fakeClock{}
	lim := NewLimiter(time.Second, 4)
	lim.after = clock.after
	a := New(l, "memberlist", WithLimiter(lim))
	b := New(l, "serf", WithLimiter(lim))
	a.Printf("[ERR] memberlist: x from=10.0.0.1:1")
	b.Printf("[ERR] serf: y from=10.0.0.1:2")
	if got := lines(&buf); len(got) != 1 {
		t.Fatalf("one source through two loggers logged %d lines, want 1", len(got))
	}
	clock.advance(time.Second)
	if got := lines(&buf); len(got) != 1 || !strings.Contains(got[0], "component=serf") {
		t.Fatalf("summary %q, want one through the logger of the last line", got)
	}
}

func TestSource(t *testing.T) {
	for _, tc := range []struct {
		line, src string
		ok        bool
	}{
		{"memberlist: Decrypt packet failed: x from=10.0.0.1:7946", "10.0.0.1", true},
		{"memberlist: failed to receive: EOF from=[2001:db8::1]:7946", "2001:db8::1", true},
		{"memberlist: y from=[::ffff:10.0.0.2]:1 more", "10.0.0.2", true},
		{"memberlist: z from=<unknown address>", "<unknown", true},
		{"memberlist: from=host.example:1", "host.example", true},
		{"memberlist: Refuting a suspect message (from: a)", "", false},
		{"memberlist: from=", "", false},
	} {
		src, ok := Source([]byte(tc.line))
		if src != tc.src || ok != tc.ok {
			t.Errorf("Source(%q) = %q, %v; want %q, %v", tc.line, src, ok, tc.src, tc.ok)
		}
	}
}

// The real timer: a summary arrives about an interval after the lines.
func TestLimiterRealTimer(t *testing.T) {
	l, buf := testutil.BufferLogger(slog.LevelInfo)
	std := New(l, "memberlist", WithLimiter(NewLimiter(50*time.Millisecond, 0)))
	std.Printf("[ERR] a from=10.0.0.1:1")
	std.Printf("[ERR] b from=10.0.0.1:1")
	testutil.Eventually(t, func() bool { return len(buf.Missing("suppressed=1 ")) == 0 }, 5*time.Second,
		"a summary; output:\n%s", buf)
}
