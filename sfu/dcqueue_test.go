package sfu

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// fakeDC is a data channel as the outbox sees it.
type fakeDC struct {
	ch       *Channel // Send checks that its lock is free
	buffered atomic.Uint64
	mu       sync.Mutex
	sent     [][]byte
	locked   atomic.Int64 // sends made with ch.mu held
}

func (f *fakeDC) Send(b []byte) error {
	if f.ch != nil {
		if !f.ch.mu.TryLock() {
			f.locked.Add(1)
		} else {
			f.ch.mu.Unlock()
		}
	}
	f.mu.Lock()
	f.sent = append(f.sent, b)
	f.mu.Unlock()
	return nil
}
func (f *fakeDC) BufferedAmount() uint64              { return f.buffered.Load() }
func (f *fakeDC) ReadyState() webrtc.DataChannelState { return webrtc.DataChannelStateOpen }
func (f *fakeDC) count() int                          { f.mu.Lock(); defer f.mu.Unlock(); return len(f.sent) }

// dcTestChannel makes a channel with n receiving connections on "#chat"
// (header: with the sender id header), their outboxes not running.
func dcTestChannel(t testing.TB, n int, cfg MessageConfig, header bool) (*Channel, []*Connection, []*fakeDC) {
	s, err := New(Config{Messages: cfg})
	if err != nil {
		t.Fatal(err)
	}
	ch := newChannel(s, "dc")
	var conns []*Connection
	var fakes []*fakeDC
	for i := range n {
		c := &Connection{sfu: s, id: string(rune('A' + i)), done: make(chan struct{}), q: newEventQueue()}
		t.Cleanup(func() { c.q.stop(true) })
		f := &fakeDC{ch: ch}
		e := &dcEntry{spec: DataChannelSpec{Label: "#chat", SenderIDHeader: header}, out: f, low: make(chan struct{}, 1)}
		e.ob = newOutbox(c, s.cfg.Messages, &s.drops)
		c.dcs = map[string]*dcEntry{"#chat": e}
		ch.conns = append(ch.conns, c)
		conns, fakes = append(conns, c), append(fakes, f)
	}
	return ch, conns, fakes
}

// Queueing a message for ten receivers allocates nothing (they share its
// buffer); with the sender id header, one buffer for all of them.
func TestMessageDeliveryShares(t *testing.T) {
	for _, header := range []bool{false, true} {
		ch, conns, _ := dcTestChannel(t, 10, MessageConfig{QueueLen: 1 << 16}, header)
		msg := []byte("hello")
		allocs := testing.AllocsPerRun(1000, func() {
			ch.mu.Lock()
			ch.deliverLocked("#chat", "FAR", msg)
			ch.mu.Unlock()
		})
		want := 0.0
		if header {
			want = 1
		}
		if allocs != want {
			t.Errorf("header %v: %.1f allocations per message for 10 receivers, want %v", header, allocs, want)
		}
		it, _ := conns[3].dcs["#chat"].ob.front()
		it2, _ := conns[7].dcs["#chat"].ob.front()
		if header && string(it.data) != "FARhello" || !header && string(it.data) != "hello" || &it.data[0] != &it2.data[0] {
			t.Errorf("header %v: queued %q and %q, not one shared buffer", header, it.data, it2.data)
		}
	}
}

// A full queue drops, counted; the sends happen with no channel lock held,
// and wait while the data channel has BufferedMax bytes buffered, until pion
// says it drained.
func TestOutboxBoundedAndBuffered(t *testing.T) {
	ch, conns, fakes := dcTestChannel(t, 1, MessageConfig{QueueLen: 4, BufferedMax: 1000}, false)
	c, f := conns[0], fakes[0]
	e := c.dcs["#chat"]
	f.buffered.Store(1000) // at BufferedMax: the outbox must wait
	for range 6 {
		ch.mu.Lock()
		ch.deliverLocked("#chat", "FAR", []byte("m"))
		ch.mu.Unlock()
	}
	if got := ch.sfu.Drops().MessageQueueFull; got != 2 {
		t.Fatalf("MessageQueueFull = %d, want 2 (6 messages, 4 slots)", got)
	}
	done := make(chan struct{})
	ended := make(chan struct{})
	go func() { defer close(ended); e.ob.run(done) }()
	defer func() { close(done); <-ended }()
	time.Sleep(50 * time.Millisecond)
	if n := f.count(); n != 0 {
		t.Fatalf("%d messages sent while the data channel had BufferedMax buffered", n)
	}
	f.buffered.Store(400)
	e.low <- struct{}{} // pion's OnBufferedAmountLow
	for deadline := time.Now().Add(5 * time.Second); f.count() < 4; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of 4 messages sent once the buffer drained", f.count())
		}
	}
	if f.locked.Load() != 0 {
		t.Fatalf("%d sends made under the channel's lock", f.locked.Load())
	}
}
