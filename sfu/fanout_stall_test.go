package sfu

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/shoal-sfu/shoal/internal/testutil"
)

// gapWriter notes when each packet was written to it; with block set,
// each write first waits for block to close (a stalled subscriber).
type gapWriter struct {
	mu    sync.Mutex
	at    []time.Duration
	block chan struct{}
	t0    time.Time
}

func (w *gapWriter) WriteRTP(_ *rtp.Header, payload []byte) (int, error) {
	if w.block != nil {
		<-w.block
	}
	w.mu.Lock()
	w.at = append(w.at, time.Since(w.t0))
	w.mu.Unlock()
	return len(payload), nil
}

func (w *gapWriter) Write(b []byte) (int, error) { return len(b), nil }

func (w *gapWriter) times() []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.at)
}

// p99Gap returns the 99th percentile of the gaps between consecutive
// packets over the writers.
func p99Gap(ws []*gapWriter) time.Duration {
	var gaps []time.Duration
	for _, w := range ws {
		at := w.times()
		for i := 1; i < len(at); i++ {
			gaps = append(gaps, at[i]-at[i-1])
		}
	}
	if len(gaps) == 0 {
		return 0
	}
	slices.Sort(gaps)
	return gaps[len(gaps)*99/100]
}

// One stalled subscriber (its writes blocked, as behind a full socket
// buffer) leaves the p99 gap between the packets the other subscribers of
// the track get as it is without it, once the track's fan-out is spread:
// a steady stream (a packet a millisecond) to 30 subscribers, measured
// with and without subscriber 0 stalled, compared over the subscribers of
// the other workers. Those of the stalled one's worker share its stall
// (checked, so that the test can tell a stall); an inline fan-out stalls
// whole (TestSpreadStalledSubscriber).
func TestStalledSubscriberGap(t *testing.T) {
	testutil.CheckLeaks(t)
	const subs, pkts = 30, 400
	run := func(stall bool) (others, same []*gapWriter) {
		s, err := New(Config{KeyframeInterval: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = s.Close() }()
		src := newSource(newChannel(s, "stall"), TrackInfo{ID: "t", StreamID: "P", Kind: webrtc.RTPCodecTypeVideo, Codec: vp8}, nil, nil)
		defer src.close()
		release := make(chan struct{})
		defer close(release) // before src.close: the stalled worker returns
		t0 := time.Now()
		var ds []*downTrack
		var ws []*gapWriter
		for i := range subs {
			w := &gapWriter{t0: t0}
			if i == 0 && stall {
				w.block = release
			}
			d := newDownTrack(src, nil)
			if _, err := d.Bind(&fakeContext{ssrc: webrtc.SSRC(1000 + i), pt: 96, ws: w}); err != nil {
				t.Fatal(err)
			}
			src.addSub(d)
			ds, ws = append(ds, d), append(ws, w)
		}
		next := time.Now()
		for i := range pkts {
			if err := src.write(seqPacket(uint16(i))); err != nil {
				t.Fatal(err)
			}
			next = next.Add(time.Millisecond)
			time.Sleep(time.Until(next))
		}
		sp := src.spread.Load()
		if sp == nil {
			t.Fatal("not spread")
		}
		n := len(sp.workers)
		stalled := spreadIndex(ds[0], n)
		testutil.Eventually(t, func() bool {
			for i, w := range ws {
				if spreadIndex(ds[i], n) != stalled && len(w.times()) < pkts {
					return false
				}
			}
			return true
		}, 10*time.Second, "the other workers' subscribers get every packet")
		for i, w := range ws {
			switch {
			case i == 0:
			case spreadIndex(ds[i], n) == stalled:
				same = append(same, w)
			default:
				others = append(others, w)
			}
		}
		return others, same
	}
	base, _ := run(false)
	others, same := run(true)
	if len(others) == 0 || len(base) == 0 {
		t.Fatal("every subscriber shares the stalled one's worker: the test cannot tell")
	}
	p99Base, p99Stalled := p99Gap(base), p99Gap(others)
	t.Logf("p99 gap: %v without a stalled subscriber, %v with one (%d subscribers of other workers)", p99Base, p99Stalled, len(others))
	// Generous: the machine may be loaded; a stall would be the whole run.
	if limit := 3*p99Base + 25*time.Millisecond; p99Stalled > limit {
		t.Fatalf("p99 gap %v with a stalled subscriber, %v without (limit %v)", p99Stalled, p99Base, limit)
	}
	// The measure sees a stall: the stalled worker's other subscribers got
	// at most a ring's worth before it.
	for _, w := range same {
		if n := len(w.times()); n >= pkts {
			t.Fatalf("a subscriber of the stalled worker got all %d packets: the test cannot tell a stall", n)
		}
	}
}
