package relay

import (
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/shoal-sfu/shoal/internal/testutil"
)

// A flood of messages fills the link's message queue (2 here) while tracks
// open and close: every track announcement still reaches the peer, since
// control frames have their own queue, ahead of messages, and are never
// dropped. With one queue for both, the announcements queued while it was
// full were lost for good.
func TestControlSurvivesMessageFlood(t *testing.T) {
	testutil.CheckLeaks(t)
	a := startNode(t, "a", testKey, func(c *Config) { c.QueueLen = 2 })
	b := startNode(t, "b", testKey)
	meet(t, a, b)
	if err := a.OpenChannel("room", b.name); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, func() bool { return b.local.sink("room") != nil }, 5*time.Second, "B relays room")
	big := make([]byte, 256<<10)
	const tracks = 20
	var lts []*LocalTrack
	for i := range tracks {
		for range 10 {
			if err := a.SendMessage("room", Message{Label: "#chat", From: "conn1", Data: big}); err != nil {
				t.Fatal(err)
			}
		}
		info := video
		info.ID = fmt.Sprintf("t%d", i)
		lt, err := a.AddLocalTrack("room", info, nil)
		if err != nil {
			t.Fatal(err)
		}
		lts = append(lts, lt)
	}
	for i, lt := range lts {
		if i%2 == 1 {
			for range 10 {
				_ = a.SendMessage("room", Message{Label: "#chat", From: "conn1", Data: big})
			}
			_ = lt.Close()
		}
	}
	if a.link(b).Drops == 0 {
		t.Fatal("the flood dropped no message: the test did not fill the queue")
	}
	sink := b.local.sink("room")
	testutil.Eventually(t, func() bool {
		for i := range tracks {
			w := sink.called(fmt.Sprintf("t%d", i))
			if w == nil || w.closed.Load() != (i%2 == 1) {
				return false
			}
		}
		return true
	}, 10*time.Second, "every track open on B, and the closed ones closed")
	st := a.link(b)
	t.Logf("messages dropped: %d (message queue full %d); control coalesced %d", st.Drops, st.Dropped.MessageQueueFull, st.ControlCoalesced)
	if st.Dropped.MessageQueueFull != st.Drops {
		t.Fatalf("drops %+v: only messages should have been dropped", st.Dropped)
	}
}

// The control queue coalesces: heartbeats and a track's keyframe requests
// waiting absorb the next ones, a track's newer demand replaces the one
// waiting in its place, and the rest (announcements) keep their order.
func TestControlQueueCoalesces(t *testing.T) {
	s := &session{l: &link{}, done: make(chan struct{}), ctlKick: make(chan struct{}, 1)}
	s.control(KindTrackOpen, "room", "v", nil)
	s.control(KindHeartbeat, "", "", nil)
	s.control(KindTrackDemand, "room", "v", []byte{0})
	s.control(KindKeyframe, "room", "v", nil)
	s.control(KindHeartbeat, "", "", nil)
	s.control(KindKeyframe, "room", "v", nil)
	s.control(KindKeyframe, "room", "a", nil)
	s.control(KindTrackDemand, "room", "v", []byte{1})
	s.control(KindTrackClose, "room", "x", nil)
	var got []string
	for _, b := range s.takeControl() {
		f, err := DecodeFrame(b[4:])
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%d:%s:%x", f.Kind, f.Track, f.Payload))
	}
	want := fmt.Sprintf("[%d:v: %d:: %d:v:01 %d:v: %d:a: %d:x:]", KindTrackOpen, KindHeartbeat, KindTrackDemand, KindKeyframe, KindKeyframe, KindTrackClose)
	if fmt.Sprint(got) != want {
		t.Fatalf("queue %v, want %v", got, want)
	}
	if n := s.l.stats.controlCoalesced.Load(); n != 3 {
		t.Fatalf("ControlCoalesced = %d, want 3", n)
	}
	// Taken: the next ones queue again.
	s.control(KindHeartbeat, "", "", nil)
	if n := len(s.takeControl()); n != 1 {
		t.Fatalf("%d heartbeats queued after the queue was taken, want 1", n)
	}
	s.endControl()
	if s.control(KindTrackOpen, "room", "v", nil) {
		t.Fatal("a control frame queued on an ended session")
	}
}

// A control queue at its most closes its session rather than grow.
func TestControlQueueOverflowClosesSession(t *testing.T) {
	defer func(n int) { maxControlQueued = n }(maxControlQueued)
	maxControlQueued = 3
	c1, c2 := net.Pipe()
	defer c2.Close()
	s := &session{l: &link{}, conn: c1, done: make(chan struct{}), ctlKick: make(chan struct{}, 1)}
	for i := range 3 {
		if !s.control(KindTrackOpen, "room", fmt.Sprint(i), nil) {
			t.Fatalf("frame %d refused", i)
		}
	}
	if s.control(KindTrackOpen, "room", "3", nil) {
		t.Fatal("a fourth frame queued past the most")
	}
	select {
	case <-s.done:
	default:
		t.Fatal("session not closed")
	}
	if n := s.l.stats.controlOverflows.Load(); n != 1 {
		t.Fatalf("ControlOverflows = %d, want 1", n)
	}
}

// A peer sending control frames that are refused (track demands of the
// wrong length here, each for its own track so none is coalesced) gets
// the first few "relay control frame refused" lines, not one per frame,
// and the line after a pause says how many were left out.
func TestRefusedControlFramesLogLimited(t *testing.T) {
	testutil.CheckLeaks(t)
	logger, buf := testutil.BufferLogger(slog.LevelInfo)
	a := startNode(t, "a", testKey, func(c *Config) { c.Logger = logger })
	b := startNode(t, "b", testKey)
	meet(t, a, b)
	testutil.Eventually(t, func() bool { return a.link(b).Connected && b.link(a).Connected }, 5*time.Second, "link up")
	b.mu.Lock()
	l := b.peers[a.name]
	b.mu.Unlock()
	s := l.sess.Load()
	if s == nil {
		t.Fatal("no session")
	}
	const frames = 300
	for i := range frames {
		if !s.control(KindTrackDemand, "room", fmt.Sprintf("t%d", i), []byte{1, 2}) {
			t.Fatalf("frame %d not queued", i)
		}
	}
	testutil.Eventually(t, func() bool { return strings.Contains(buf.String(), "relay control frame refused") }, 5*time.Second, "a refused frame logged")
	time.Sleep(500 * time.Millisecond) // the rest served
	n := strings.Count(buf.String(), "relay control frame refused")
	if n > 10 {
		t.Fatalf("%d lines for %d refused frames, want at most 10", n, frames)
	}
}
