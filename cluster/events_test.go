package cluster

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoal-sfu/shoal/internal/testutil"
)

// Subscribe's promises: calls in order, never concurrent; cancel waits for
// the call in progress and no call follows it.
func TestSubscribeOrderAndCancel(t *testing.T) {
	testutil.CheckLeaks(t)
	n := newSolo(t, Config{})

	var got []string
	var inCall atomic.Int32
	done := make(chan struct{})
	cancel := n.Subscribe(func(e Event) {
		if inCall.Add(1) != 1 {
			t.Error("two calls at once")
		}
		time.Sleep(time.Millisecond)
		got = append(got, e.Node)
		if len(got) == 50 {
			close(done)
		}
		inCall.Add(-1)
	})
	for i := range 50 {
		n.emit(Event{Kind: EventNode, Node: strconv.Itoa(i)})
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("events not delivered")
	}
	cancel()
	for i, s := range got {
		if s != strconv.Itoa(i) {
			t.Fatalf("event %d is %q: out of order", i, s)
		}
	}

	entered, release := make(chan struct{}), make(chan struct{})
	var after atomic.Int32
	cancel = n.Subscribe(func(e Event) {
		if e.Node == "late" {
			after.Add(1)
			return
		}
		close(entered)
		<-release
	})
	n.emit(Event{Kind: EventNode, Node: "block"})
	<-entered
	cancelled := make(chan struct{})
	go func() { cancel(); close(cancelled) }()
	n.emit(Event{Kind: EventNode, Node: "late"})
	testutil.Eventually(t, func() bool {
		n.subsMu.Lock()
		defer n.subsMu.Unlock()
		return len(n.subs) == 0
	}, 5*time.Second, "cancel under way")
	time.Sleep(10 * time.Millisecond) // cancel has stopped the queue by now
	select {
	case <-cancelled:
		t.Fatal("cancel returned while a call was in progress")
	default:
	}
	close(release)
	<-cancelled
	n.emit(Event{Kind: EventNode, Node: "late"})
	time.Sleep(20 * time.Millisecond)
	if after.Load() != 0 {
		t.Fatal("a call after cancel")
	}
}

func TestSubscriberNeverBlocks(t *testing.T) {
	testutil.CheckLeaks(t)
	n := newSolo(t, Config{})
	ctx := ctxT(t)
	n.Start(ctx)
	release := make(chan struct{})
	var got atomic.Int32
	cancel := n.Subscribe(func(e Event) {
		<-release // a stuck subscriber
		got.Add(1)
	})
	start := time.Now()
	for i := range 50 {
		ch := "c" + string(rune('A'+i))
		n.ClaimChannel(ctx, ch)
		n.rebuild()
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("node stalled by a subscriber: %v", d)
	}
	close(release)
	testutil.Eventually(t, func() bool { return got.Load() >= 50 }, 5*time.Second, "queued events delivered (%d)", got.Load())
	cancel()
}
