package relay

import (
	"fmt"
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
			w := sink.track(fmt.Sprintf("t%d", i))
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
