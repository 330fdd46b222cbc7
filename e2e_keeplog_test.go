package shoal_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/shoal-sfu/shoal/internal/testutil"
)

// keptLogLines is how many of the nodes' last log lines an e2e test keeps
// to print if it fails.
const keptLogLines = 30000

// keepLogger returns the logger of an e2e test's nodes: records at live
// and above go to t.Log as they come (as testutil.LoggerLevel), and every
// record down to Debug is kept in memory (the last keptLogLines lines),
// printed when the test has failed. A passing run prints only what it did
// before; a failing one says what the nodes did up to the failure (a
// flake seen once, with Warn only, left nothing to go on).
func keepLogger(t *testing.T, live slog.Level) *slog.Logger {
	ring := &lineRing{max: keptLogLines}
	kept := slog.NewTextHandler(ring, &slog.HandlerOptions{Level: slog.LevelDebug})
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		lines, dropped := ring.snapshot()
		t.Logf("the nodes' log at Debug, last %d lines (%d earlier ones not kept):", len(lines), dropped)
		for _, l := range lines {
			t.Log(l)
		}
	})
	return slog.New(teeHandler{a: testutil.LoggerLevel(t, live).Handler(), b: kept, bMin: slog.LevelDebug})
}

// teeHandler hands each record to both handlers, each at its own level;
// b gets pion's records (a logger with a "pion" attribute, the SFU's
// adapter) at Info and above only: its Debug (sctp's every read) would
// push the nodes' own lines out of the ring.
type teeHandler struct {
	a, b slog.Handler
	bMin slog.Level // b's records below this are skipped
}

func (h teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.a.Enabled(ctx, l) || (l >= h.bMin && h.b.Enabled(ctx, l))
}

func (h teeHandler) Handle(ctx context.Context, r slog.Record) error {
	if h.a.Enabled(ctx, r.Level) {
		_ = h.a.Handle(ctx, r.Clone())
	}
	if r.Level >= h.bMin && h.b.Enabled(ctx, r.Level) {
		return h.b.Handle(ctx, r)
	}
	return nil
}

func (h teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	min := h.bMin
	for _, a := range as {
		if a.Key == "pion" {
			min = max(min, slog.LevelInfo)
		}
	}
	return teeHandler{h.a.WithAttrs(as), h.b.WithAttrs(as), min}
}

func (h teeHandler) WithGroup(name string) slog.Handler {
	return teeHandler{h.a.WithGroup(name), h.b.WithGroup(name), h.bMin}
}

// lineRing keeps the last max lines written to it.
type lineRing struct {
	mu      sync.Mutex
	max     int
	lines   []string
	next    int // where the next line goes once full
	dropped int
}

func (r *lineRing) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for l := range bytes.Lines(p) {
		s := string(bytes.TrimRight(l, "\n"))
		if len(r.lines) < r.max {
			r.lines = append(r.lines, s)
			continue
		}
		r.lines[r.next] = s
		r.next = (r.next + 1) % r.max
		r.dropped++
	}
	return len(p), nil
}

// snapshot returns the lines kept, oldest first, and how many were not.
func (r *lineRing) snapshot() ([]string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := append([]string(nil), r.lines[r.next:]...)
	return append(out, r.lines[:r.next]...), r.dropped
}

// The ring keeps the last lines, oldest first; the tee gives the live
// handler its level only and the ring everything but pion's Debug.
func TestKeepLoggerRingAndTee(t *testing.T) {
	r := &lineRing{max: 3}
	for _, s := range []string{"a\n", "b\nc\n", "d\n", "e\n"} {
		_, _ = r.Write([]byte(s))
	}
	lines, dropped := r.snapshot()
	if len(lines) != 3 || lines[0] != "c" || lines[1] != "d" || lines[2] != "e" || dropped != 2 {
		t.Fatalf("kept %q, %d dropped; want [c d e], 2", lines, dropped)
	}
	var live bytes.Buffer
	ring := &lineRing{max: 10}
	log := slog.New(teeHandler{
		a:    slog.NewTextHandler(&live, &slog.HandlerOptions{Level: slog.LevelWarn}),
		b:    slog.NewTextHandler(ring, &slog.HandlerOptions{Level: slog.LevelDebug}),
		bMin: slog.LevelDebug,
	}).With("node", "n1")
	log.Debug("quiet")
	log.Warn("loud")
	log.With("pion", "sctp").Debug("chatter")
	log.With("pion", "pc").Info("pion info")
	kept, _ := ring.snapshot()
	if got := live.String(); !strings.Contains(got, "msg=loud node=n1") || strings.Contains(got, "quiet") {
		t.Errorf("live output %q: want the warning only", got)
	}
	if len(kept) != 3 || !strings.Contains(kept[0], "msg=quiet node=n1") || !strings.Contains(kept[1], "msg=loud") || !strings.Contains(kept[2], `msg="pion info"`) {
		t.Errorf("kept %q: want the node's two records and pion's Info, not its Debug", kept)
	}
}
