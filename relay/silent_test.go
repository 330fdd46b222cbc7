package relay

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoal-sfu/shoal/internal/testutil"
)

// linkTo returns n's link to peer.
func (n *node) linkTo(peer *node) *link {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.peers[peer.name]
}

// pullCable blocks (on) or unblocks the traffic between a and b on fn, the
// network they share, as a cable pulled without FIN or RST.
func pullCable(fn *FaultNet, a, b *node, on bool) {
	ia, ib := a.Addr().Addr(), b.Addr().Addr()
	if on {
		fn.Block(ia, ib)
	} else {
		fn.Unblock(ia, ib)
	}
}

// linkEvents records what OnLinkChange told a node.
type linkEvents struct {
	mu     sync.Mutex
	ups    int
	downs  []error
	downAt []time.Time
}

func (e *linkEvents) record(_ string, up bool, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if up {
		e.ups++
		return
	}
	e.downs = append(e.downs, err)
	e.downAt = append(e.downAt, time.Now())
}

func (e *linkEvents) counts() (ups, downs int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.ups, len(e.downs)
}

func (e *linkEvents) lastDown() (time.Time, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.downs) == 0 {
		return time.Time{}, nil
	}
	return e.downAt[len(e.downAt)-1], e.downs[len(e.downs)-1]
}

// retryLog records the backoffs the dial loop logs ("relay link retry ...
// in") and passes every record its next handler wants on to it.
type retryLog struct {
	next slog.Handler
	rec  *retries
}

type retries struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (r *retries) list() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Duration(nil), r.waits...)
}

func (h retryLog) Enabled(context.Context, slog.Level) bool { return true }

func (h retryLog) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "relay link retry" {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "in" {
				h.rec.mu.Lock()
				h.rec.waits = append(h.rec.waits, a.Value.Duration())
				h.rec.mu.Unlock()
			}
			return true
		})
	}
	if h.next.Enabled(ctx, r.Level) {
		return h.next.Handle(ctx, r)
	}
	return nil
}

func (h retryLog) WithAttrs(as []slog.Attr) slog.Handler {
	return retryLog{next: h.next.WithAttrs(as), rec: h.rec}
}

func (h retryLog) WithGroup(name string) slog.Handler {
	return retryLog{next: h.next.WithGroup(name), rec: h.rec}
}

// A link whose network goes silent (no FIN, no RST: a black hole on the
// control stream and on the datagrams) is found down by both ends within
// LinkTimeout, keeps its remote tracks, is redialled with backoff while the
// silence lasts, and comes back by itself when it ends.
func TestLinkGoesSilentAndRecovers(t *testing.T) {
	// "brief": the hole closes as soon as both ends have seen the link go
	// down. "long": it stays open until the dialler has dialled into it four
	// times (each dial waits LinkTimeout for an answer): over four
	// LinkTimeouts in all.
	for _, tc := range []struct {
		name  string
		dials uint64 // dial attempts into the hole before it closes
	}{{"brief", 0}, {"long", 4}} {
		t.Run(tc.name, func(t *testing.T) { testSilentLink(t, tc.dials) })
	}
}

func testSilentLink(t *testing.T, holeDials uint64) {
	testutil.CheckLeaks(t)
	var evA, evB linkEvents
	backoffs := &retries{}
	fn := NewFaultNet()
	a := startNode(t, "a", testKey, func(c *Config) {
		c.OnLinkChange = evA.record
		c.Logger = slog.New(retryLog{next: c.Logger.Handler(), rec: backoffs})
		c.Net = fn
	})
	b := startNode(t, "b", testKey, func(c *Config) {
		c.OnLinkChange = evB.record
		c.Net = fn
	})
	cfg := a.cfg
	lt, kf := relayVideo(t, a, b)
	seq := streamUntilEnd(t, lt)
	var w *fakeWriter
	testutil.Eventually(t, func() bool { w = b.local.sink("room").track(video.ID); return w != nil && w.n.Load() > 10 }, 5*time.Second, "streaming")
	testutil.Eventually(t, func() bool { return kf.n.Load() >= 1 }, 5*time.Second, "first keyframe request")
	kfBefore := kf.n.Load()
	if a.link(b).Reconnects != 0 || b.link(a).Reconnects != 0 {
		t.Fatalf("reconnects before the silence: %d, %d", a.link(b).Reconnects, b.link(a).Reconnects)
	}

	// Pull the cable: nothing closes, nothing more arrives.
	dialsAtOpen := a.linkTo(b).stats.dials.Load()
	retriesAtOpen := len(backoffs.list())
	opened := time.Now()
	pullCable(fn, a, b, true)
	holeClosed := false
	defer func() {
		if !holeClosed {
			pullCable(fn, a, b, false)
		}
	}()
	margin := time.Second // scheduling, -race, a shared machine
	testutil.Eventually(t, func() bool {
		_, da := evA.counts()
		_, db := evB.counts()
		return da == 1 && db == 1 && !a.link(b).Connected && !b.link(a).Connected
	}, cfg.LinkTimeout+margin, "both ends see the silent link down within LinkTimeout %v + %v", cfg.LinkTimeout, margin)
	for _, ev := range []struct {
		name string
		e    *linkEvents
	}{{"A", &evA}, {"B", &evB}} {
		at, err := ev.e.lastDown()
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("%s: link down with %v, want the control stream's read timeout", ev.name, err)
		}
		// The last heartbeat read before the hole opened was about one
		// interval earlier (more on a loaded machine): the silence, not an
		// error, ended the session.
		if d := at.Sub(opened); d < cfg.LinkTimeout/2 {
			t.Errorf("%s: link down %v after the hole opened, before LinkTimeout %v", ev.name, d, cfg.LinkTimeout)
		} else {
			t.Logf("%s saw the link down %v after the hole opened", ev.name, d.Round(time.Millisecond))
		}
	}
	delivered := w.n.Load()

	// The channel keeps its remote track through the break.
	if w.closed.Load() {
		t.Error("remote track closed by the silent link")
	}
	if b.local.sink("room").isClosed() || a.local.sink("room").isClosed() {
		t.Error("a channel ended with the silent link")
	}

	if holeDials > 0 {
		// The dialler keeps trying while the silence lasts, backing off.
		testutil.Eventually(t, func() bool { return a.linkTo(b).stats.dials.Load()-dialsAtOpen >= holeDials },
			time.Duration(holeDials+2)*(cfg.LinkTimeout+cfg.ReconnectMax), "%d dials into the hole", holeDials)
	}
	pullCable(fn, a, b, false)
	holeClosed = true
	silent := time.Since(opened)
	dials := a.linkTo(b).stats.dials.Load() - dialsAtOpen
	waits := backoffs.list()[retriesAtOpen:]
	t.Logf("hole open %v: %d dials, retry backoffs %v", silent.Round(time.Millisecond), dials, waits)
	if w.n.Load() != delivered {
		t.Errorf("%d packets delivered through the black hole", w.n.Load()-delivered)
	}
	if holeDials > 0 {
		// The session lasts LinkTimeout into the silence; then each dial
		// into the hole goes unanswered for LinkTimeout (as an unanswered
		// SYN), and the loop waits its backoff: no spinning.
		if least := time.Duration(holeDials) * cfg.LinkTimeout; silent < least {
			t.Errorf("%d dial attempts within %v of silence, want them %v apart at least", dials, silent, cfg.LinkTimeout)
		}
		if most := uint64(silent/cfg.LinkTimeout) + 1; dials > most {
			t.Errorf("%d dial attempts in %v of silence, want at most %d", dials, silent, most)
		}
		// The backoff starts at ReconnectMin after the session ended and
		// doubles with each failed dial, up to ReconnectMax.
		if uint64(len(waits)) < holeDials {
			t.Errorf("retry backoffs %v, want at least %d", waits, holeDials)
		} else if waits[0] != cfg.ReconnectMin {
			t.Errorf("first backoff %v, want ReconnectMin %v", waits[0], cfg.ReconnectMin)
		}
		for i := 1; i < len(waits); i++ {
			if want := min(2*waits[i-1], cfg.ReconnectMax); waits[i] != want {
				t.Errorf("backoff %d is %v after %v, want %v (%v)", i, waits[i], waits[i-1], want, waits)
			}
		}
	}

	// The link comes back by itself and the same remote track carries on.
	testutil.Eventually(t, func() bool {
		ua, _ := evA.counts()
		ub, _ := evB.counts()
		return ua == 2 && ub == 2 && a.link(b).Connected && b.link(a).Connected
	}, 5*time.Second, "link back up on both ends")
	if ra, rb := a.link(b).Reconnects, b.link(a).Reconnects; ra != 1 || rb != 1 {
		t.Errorf("reconnects %d on A, %d on B; want 1 each", ra, rb)
	}
	mark := uint16(seq.Load())
	testutil.Eventually(t, func() bool { return w.hasSeq(mark + 5) }, 5*time.Second, "media resumes to the same TrackWriter")
	testutil.Eventually(t, func() bool { return kf.n.Load() > kfBefore }, 5*time.Second, "keyframe requested on resume")
	sink := b.local.sink("room")
	sink.mu.Lock()
	added, same := sink.added, sink.tracks[video.ID] == w
	sink.mu.Unlock()
	if added != 1 || !same {
		t.Errorf("remote track added %d times (same writer: %v); the resumed link should carry on the same track", added, same)
	}
	if w.closed.Load() {
		t.Error("remote track closed")
	}
	ua, da := evA.counts()
	ub, db := evB.counts()
	if ua != 2 || da != 1 || ub != 2 || db != 1 {
		t.Errorf("OnLinkChange: A %d ups %d downs, B %d ups %d downs; want 2 and 1 each", ua, da, ub, db)
	}
}

// gatedLocal is a fakeLocal whose sinks call gate inside AddRemoteTrack,
// after making the writer and before returning it.
type gatedLocal struct {
	*fakeLocal
	gate func(info TrackInfo)
}

func (g gatedLocal) RelayChannel(r *Relay, channel string) (ChannelSink, error) {
	s, err := g.fakeLocal.RelayChannel(r, channel)
	if err != nil {
		return nil, err
	}
	return gatedSink{s.(*fakeSink), g.gate}, nil
}

type gatedSink struct {
	*fakeSink
	gate func(info TrackInfo)
}

func (s gatedSink) AddRemoteTrack(from string, info TrackInfo, kf KeyframeRequester) (TrackWriter, error) {
	w, err := s.fakeSink.AddRemoteTrack(from, info, kf)
	if err == nil {
		s.gate(info)
	}
	return w, err
}

// The first packets of a remote track: those that arrive while the sink's
// AddRemoteTrack runs are dropped and counted for the channel; none that
// arrives after it returned is lost (the track was taken for an unknown
// one until the relay had filed it, after AddRemoteTrack returned).
func TestFirstPacketsOfRemoteTrack(t *testing.T) {
	testutil.CheckLeaks(t)
	a := startNode(t, "a", testKey)
	entered := make(chan struct{})
	var enterOnce sync.Once
	var bn *node
	var filed atomic.Bool
	b := startNode(t, "b", testKey, func(c *Config) {
		c.Local = gatedLocal{fakeLocal: c.Local.(*fakeLocal), gate: func(info TrackInfo) {
			filed.Store(bn.linkTo(a).inbound("room", info.ID) != nil)
			// Block until packets sent since AddRemoteTrack was called have
			// reached B's receive path (they count as drops there).
			drops := bn.link(a).Drops
			enterOnce.Do(func() { close(entered) })
			if !testutil.WaitFor(func() bool { return bn.link(a).Drops >= drops+3 }, 5*time.Second) {
				t.Error("no packet reached B while AddRemoteTrack blocked")
			}
		}}
	})
	bn = b
	lt, kf := relayVideo(t, a, b)

	// Send from the moment B's AddRemoteTrack is called, one packet a
	// millisecond, seq 1, 2, ...
	var seq atomic.Uint32
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-entered:
		case <-stop:
			return
		}
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			_ = lt.WriteRTP(rtpPacket(uint16(seq.Add(1)), []byte("first")))
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	stopped := false
	stopSending := func() {
		if !stopped {
			stopped = true
			close(stop)
			wg.Wait()
		}
	}
	defer stopSending()

	// The keyframe request that follows AddRemoteTrack's return reaches A:
	// every packet sent from now on left after it returned.
	testutil.Eventually(t, func() bool { return kf.n.Load() >= 1 }, 5*time.Second, "keyframe request after AddRemoteTrack")
	mark := uint16(seq.Load())
	if !filed.Load() {
		t.Error("the remote track was not filed with its link when AddRemoteTrack was called")
	}
	w := b.local.sink("room").track(video.ID)
	testutil.Eventually(t, func() bool { return w.hasSeq(mark + 20) }, 5*time.Second, "packets after AddRemoteTrack returned")
	stopSending()
	last := uint16(seq.Load())
	testutil.Eventually(t, func() bool { return w.hasSeq(last) }, 5*time.Second, "the last packet")

	w.mu.Lock()
	got := append([]uint16(nil), w.seqs...)
	w.mu.Unlock()
	first := got[0]
	for i, s := range got {
		if s != first+uint16(i) {
			t.Fatalf("delivered %v...: a gap after the first delivered packet %d", got[:min(len(got), i+3)], first)
		}
	}
	if first > mark+1 {
		t.Errorf("first delivered packet %d; packets from %d on were sent after AddRemoteTrack returned", first, mark+1)
	}
	if got[len(got)-1] != last {
		t.Errorf("last delivered %d, sent %d", got[len(got)-1], last)
	}
	// Those before the first delivered one arrived while AddRemoteTrack ran:
	// each is counted as a drop of the channel, none vanished untold.
	if drops := b.Stats().Channels[0].Drops; drops != uint64(first-1) || first < 4 {
		t.Errorf("first delivered packet %d, channel drops %d: want at least 3 packets dropped while AddRemoteTrack ran, each counted", first, drops)
	}
	t.Logf("packets 1..%d dropped while AddRemoteTrack ran, %d..%d delivered; keyframe request seen at %d", first-1, first, last, mark)
}

// inbound returns the link's inbound track, or nil.
func (l *link) inbound(channel, id string) *inTrack {
	l.inMu.RLock()
	defer l.inMu.RUnlock()
	return l.in[channel][id]
}

// A remote track whose channel ends while the sink's AddRemoteTrack runs is
// closed when it returns, not left open in a channel that is gone.
func TestRemoteTrackEndsWhileAdded(t *testing.T) {
	testutil.CheckLeaks(t)
	a := startNode(t, "a", testKey)
	var bn *node
	b := startNode(t, "b", testKey, func(c *Config) {
		c.Local = gatedLocal{fakeLocal: c.Local.(*fakeLocal), gate: func(TrackInfo) {
			if err := bn.CloseChannel("room"); err != nil {
				t.Error(err)
			}
		}}
	})
	bn = b
	openRoom(t, a, b)
	if _, err := a.AddLocalTrack("room", video, nil); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, func() bool { return b.local.sink("room").called(video.ID) != nil }, 5*time.Second, "AddRemoteTrack called on B")
	testutil.Eventually(t, b.local.sink("room").isClosed, 5*time.Second, "B's channel ended")
	w := b.local.sink("room").called(video.ID)
	testutil.Eventually(t, w.closed.Load, 5*time.Second, "the remote track closed")
	if tr := b.linkTo(a).inbound("room", video.ID); tr != nil {
		t.Error("the remote track is still filed with the link")
	}
}
