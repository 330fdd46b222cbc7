package sfu_test

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/internal/testutil/pionapi"
	"github.com/shoal-sfu/shoal/sfu"
)

// slowAPI makes clients that never read their data channels: with
// detached data channels pion reads nothing until the application does, so
// the client's SCTP window closes and the server's buffered amount grows.
var slowAPI = pionapi.Local(func(se *webrtc.SettingEngine) { se.DetachDataChannels() })

// dcSetup joins a fast receiver and a slow one (which never reads) to a
// channel with the messaging channel "#chat", and returns them with a
// counter of what the fast one got.
func dcSetup(t *testing.T, s *sfu.SFU, id string) (fast, slow *testClient, got *atomic.Int64) {
	t.Helper()
	fast = join(t, s, clientOpts{channel: id, id: "FAST", role: sfu.RoleRecvonly, labels: []string{"#chat"}})
	slow = join(t, s, clientOpts{channel: id, id: "SLOW", role: sfu.RoleRecvonly, labels: []string{"#chat"}, api: slowAPI})
	for _, c := range []*testClient{fast, slow} {
		testutil.Eventually(t, func() bool { return c.isOpen("#chat") }, wait, "%s's #chat open", c.conn.ID())
	}
	got = new(atomic.Int64)
	fast.dc("#chat").OnMessage(func(webrtc.DataChannelMessage) { got.Add(1) }) // counts, keeps nothing
	return fast, slow, got
}

// sendPaced injects n messages of size bytes, 8 at a time (half the
// smallest queue of the tests), each batch once the fast receiver has had
// the previous one: what the fast one reads, the slow one gets too, and
// does not read.
func sendPaced(t *testing.T, ch *sfu.Channel, got *atomic.Int64, n, size int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if err := ch.InjectMessage("#chat", "FAR", make([]byte, size)); err != nil {
			t.Fatal(err)
		}
		if i%8 == 7 {
			testutil.Eventually(t, func() bool { return got.Load() >= int64(i+1) }, wait, "the fast receiver gets message %d", i)
		}
	}
	testutil.Eventually(t, func() bool { return got.Load() == int64(n) }, wait, "the fast receiver gets all %d messages", n)
}

// A client that stops reading its data channel: the server holds at most
// its queue (64 messages here) and about a megabyte buffered for it while
// 24 MB of messages pass; the other receiver gets every message; the
// slow one's are dropped and counted. Before the queues, pion buffered all
// of it for the slow client.
func TestSlowMessageReaderIsBounded(t *testing.T) {
	testutil.CheckLeaks(t)
	s := newSFU(t, func(c *sfu.Config) { c.Messages.QueueLen = 64 })
	_, slow, got := dcSetup(t, s, "slowdc")
	ch := channel(t, s, "slowdc")
	before := heapInUse()
	const n, size = 768, 16 << 10 // 12 MB, twice
	sendPaced(t, ch, got, n, size)
	half := heapInUse()
	got.Store(0)
	sendPaced(t, ch, got, n, size)
	after := heapInUse()
	grew, grewLater := after-before, after-half
	d := s.Drops()
	t.Logf("heap grew %d KB while %d MB passed, %d KB of it during the second half; drops %+v", grew>>10, 2*n*size>>20, grewLater>>10, d)
	if grew > 12<<20 || grewLater > 4<<20 {
		t.Errorf("heap grew %d KB, %d KB of it during the second half, for a client that does not read", grew>>10, grewLater>>10)
	}
	if d.MessageQueueFull < n || d.MessageQueueFull > 2*n {
		t.Errorf("MessageQueueFull = %d, want %d..%d", d.MessageQueueFull, n, 2*n)
	}
	if slow.conn.Err() != nil {
		t.Errorf("slow connection closed (%v) without CloseSlow", slow.conn.Err())
	}
}

// With MessageConfig.CloseSlow the slow reader is closed instead, with
// ErrSlowConsumer, and the other one keeps getting every message.
func TestSlowMessageReaderClosed(t *testing.T) {
	testutil.CheckLeaks(t)
	s := newSFU(t, func(c *sfu.Config) { c.Messages = sfu.MessageConfig{QueueLen: 16, CloseSlow: true} })
	_, slow, got := dcSetup(t, s, "closedc")
	ch := channel(t, s, "closedc")
	sendPaced(t, ch, got, 512, 16<<10)
	testutil.Eventually(t, func() bool { return errors.Is(slow.conn.Err(), sfu.ErrSlowConsumer) }, wait, "slow connection closed as a slow consumer (err %v)", slow.conn.Err())
	if d := s.Drops(); d.SlowConsumersClosed != 1 {
		t.Errorf("SlowConsumersClosed = %d, want 1", d.SlowConsumersClosed)
	}
	select {
	case <-slow.conn.Done():
	case <-time.After(wait):
		t.Fatal("slow connection not done")
	}
}

// Send and SendText (notify, push, signaling) refuse once a client that
// does not read has four times Messages.BufferedMax buffered, instead of
// having pion buffer without bound.
func TestSendRefusedToSlowReader(t *testing.T) {
	testutil.CheckLeaks(t)
	s := newSFU(t, func(c *sfu.Config) { c.Messages.BufferedMax = 64 << 10 })
	slow := join(t, s, clientOpts{channel: "sendslow", id: "SLOW", role: sfu.RoleRecvonly, api: slowAPI})
	testutil.Eventually(t, func() bool { return slow.isOpen(sfu.LabelNotify) }, wait, "notify open")
	msg := string(make([]byte, 32<<10))
	var err error
	sent := 0
	for ; sent < 1000 && err == nil; sent++ { // 32 MB at most
		err = slow.conn.SendText(sfu.LabelNotify, msg)
	}
	if !errors.Is(err, sfu.ErrSlowConsumer) {
		t.Fatalf("after %d messages of 32 KB: err %v, want ErrSlowConsumer", sent, err)
	}
	t.Logf("refused after %d messages of 32 KB", sent)
	if d := s.Drops(); d.SendBufferFull != 1 {
		t.Fatalf("SendBufferFull = %d, want 1", d.SendBufferFull)
	}
}
