package relay

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoal-sfu/shoal/internal/testutil"
)

// Two remote tracks on B, one whose local fan-out is slow (its writer
// takes 20 ms a packet): the other still gets every packet, since each
// remote track has its own queue and goroutine; the slow one's queue
// overflows and its drops are counted. When the writers ran on the relay's
// one receive goroutine, the slow track held up every packet of the node.
func TestSlowTrackDelaysNoOther(t *testing.T) {
	testutil.CheckLeaks(t)
	a := startNode(t, "a", testKey)
	b := startNode(t, "b", testKey, func(c *Config) { c.TrackQueueLen = 8 })
	meet(t, a, b)
	if err := a.OpenChannel("room", b.name); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, func() bool { return b.local.sink("room") != nil }, 5*time.Second, "B relays room")
	slowInfo, fastInfo := video, video
	slowInfo.ID, fastInfo.ID = "slow", "fast"
	slow, err := a.AddLocalTrack("room", slowInfo, nil)
	if err != nil {
		t.Fatal(err)
	}
	fast, err := a.AddLocalTrack("room", fastInfo, nil)
	if err != nil {
		t.Fatal(err)
	}
	sink := b.local.sink("room")
	testutil.Eventually(t, func() bool { return sink.track("slow") != nil && sink.track("fast") != nil }, 5*time.Second, "both tracks on B")
	var slowGot atomic.Int64
	sink.track("slow").onWrite(func([]byte) { time.Sleep(20 * time.Millisecond); slowGot.Add(1) })
	var fastGot atomic.Int64
	sink.track("fast").onWrite(func([]byte) { fastGot.Add(1) })

	// 1,000 packets of each, 500 a second.
	const n = 1000
	payload := make([]byte, 1000)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for i := range n {
		<-tick.C
		_ = slow.WriteRTP(rtpPacket(uint16(i), payload))
		_ = fast.WriteRTP(rtpPacket(uint16(i), payload))
	}
	testutil.Eventually(t, func() bool { return fastGot.Load() >= n*99/100 }, 5*time.Second, "the fast track gets its packets (%d of %d)", fastGot.Load(), n)
	st := b.link(a)
	t.Logf("fast %d, slow %d of %d; drops %+v", fastGot.Load(), slowGot.Load(), n, st.Dropped)
	if st.Dropped.TrackQueueFull == 0 {
		t.Fatal("the slow track's queue never overflowed")
	}
}

// A remote track's queue allocates nothing once made.
func TestTrackQueueAllocatesNothing(t *testing.T) {
	q := newTrackQueue(4)
	pkt := rtpPacket(1, make([]byte, 1200))
	allocs := testing.AllocsPerRun(1000, func() {
		if q.push(pkt) == queueFull {
			t.Fatal("full")
		}
		<-q.kick
		p, ok := q.front()
		if !ok || len(p) != len(pkt) {
			t.Fatal("lost")
		}
		q.pop()
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per packet", allocs)
	}
	for range 4 {
		q.push(pkt)
	}
	if q.push(pkt) != queueFull {
		t.Fatal("a fifth packet fit in four slots")
	}
}

// At most Config's fan-out slots of remote tracks' fan-outs run at once,
// and they do run side by side: eight tracks whose writers take 2 ms a
// packet, two slots. With a goroutine per track and no limit, all eight
// ran at once, each taking the SFU's locks; with one goroutine, one.
func TestFanOutsBounded(t *testing.T) {
	testutil.CheckLeaks(t)
	a := startNode(t, "a", testKey)
	b := startNode(t, "b", testKey, func(c *Config) { c.fanOutSlots = 2 })
	meet(t, a, b)
	if err := a.OpenChannel("room", b.name); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, func() bool { return b.local.sink("room") != nil }, 5*time.Second, "B relays room")
	const tracks, each = 8, 20
	var active, most, got atomic.Int64
	lts := make([]*LocalTrack, tracks)
	for i := range lts {
		info := video
		info.ID = string(rune('a' + i))
		lt, err := a.AddLocalTrack("room", info, nil)
		if err != nil {
			t.Fatal(err)
		}
		lts[i] = lt
		var w *fakeWriter
		testutil.Eventually(t, func() bool { w = b.local.sink("room").track(info.ID); return w != nil }, 5*time.Second, "track %s on B", info.ID)
		w.onWrite(func([]byte) {
			n := active.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			time.Sleep(2 * time.Millisecond)
			active.Add(-1)
			got.Add(1)
		})
	}
	payload := make([]byte, 100)
	for seq := range each {
		for _, lt := range lts {
			_ = lt.WriteRTP(rtpPacket(uint16(seq), payload))
		}
	}
	testutil.Eventually(t, func() bool { return got.Load() == tracks*each }, 10*time.Second, "every packet written (%d of %d)", got.Load(), tracks*each)
	if m := most.Load(); m != 2 {
		t.Fatalf("%d fan-outs ran at once, want 2 (the slots)", m)
	}
}

// Writers that block hold their fan-out slots, and with every slot held
// the other tracks' packets wait in their queues, which overflow (counted);
// the receive goroutine never waits for a slot: it goes on reading,
// and messages still arrive. Once the writers return, the queued packets
// go out.
func TestBlockedWritersStallNoReceive(t *testing.T) {
	testutil.CheckLeaks(t)
	a := startNode(t, "a", testKey)
	b := startNode(t, "b", testKey, func(c *Config) { c.fanOutSlots, c.TrackQueueLen = 2, 8 })
	meet(t, a, b)
	if err := a.OpenChannel("room", b.name); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, func() bool { return b.local.sink("room") != nil }, 5*time.Second, "B relays room")
	release := make(chan struct{})
	var once sync.Once
	defer once.Do(func() { close(release) })
	lts := map[string]*LocalTrack{}
	var fast atomic.Int64
	for _, id := range []string{"stuck1", "stuck2", "fast"} {
		info := video
		info.ID = id
		lt, err := a.AddLocalTrack("room", info, nil)
		if err != nil {
			t.Fatal(err)
		}
		lts[id] = lt
		var w *fakeWriter
		testutil.Eventually(t, func() bool { w = b.local.sink("room").track(id); return w != nil }, 5*time.Second, "track %s on B", id)
		if id == "fast" {
			w.onWrite(func([]byte) { fast.Add(1) })
		} else {
			w.onWrite(func([]byte) { <-release })
		}
	}
	payload := make([]byte, 100)
	_ = lts["stuck1"].WriteRTP(rtpPacket(1, payload))
	_ = lts["stuck2"].WriteRTP(rtpPacket(1, payload))
	time.Sleep(100 * time.Millisecond) // both writers hold their slots
	in0 := b.link(a).PacketsIn
	for i := range 50 {
		_ = lts["fast"].WriteRTP(rtpPacket(uint16(i), payload))
	}
	if err := a.SendMessage("room", Message{Label: "#chat", From: "c1", Data: []byte("hi")}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, func() bool { return b.link(a).PacketsIn-in0 >= 50 }, 5*time.Second, "B's receive goroutine reads on (%d of 50)", b.link(a).PacketsIn-in0)
	testutil.Eventually(t, func() bool { return len(b.local.sink("room").messages()) == 1 }, 5*time.Second, "the message arrives")
	if n := fast.Load(); n != 0 {
		t.Fatalf("%d packets written with every slot held", n)
	}
	testutil.Eventually(t, func() bool { return b.link(a).Dropped.TrackQueueFull >= 50-8 }, 5*time.Second, "the waiting track's queue overflows, counted (%+v)", b.link(a).Dropped)
	once.Do(func() { close(release) })
	testutil.Eventually(t, func() bool { return fast.Load() == 8 }, 5*time.Second, "the queued packets go out once the slots free (%d of 8)", fast.Load())
}
