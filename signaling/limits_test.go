package signaling

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/shoal-sfu/shoal/affinity"
	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/signaling/wire"
)

// heldMedia is a Media whose Join waits: for delay, and while hold is set
// until it is closed. It lets a test put many connects, or a change of the
// cluster, between placement and serving.
type heldMedia struct {
	*fakeMedia
	delay  time.Duration
	mu     sync.Mutex
	hold   chan struct{}
	joined chan struct{} // gets a value when a Join starts waiting on hold
}

func (m *heldMedia) Join(ctx context.Context, req MediaRequest) (MediaConn, error) {
	m.mu.Lock()
	hold := m.hold
	m.mu.Unlock()
	if hold != nil {
		m.joined <- struct{}{}
		select {
		case <-hold:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	time.Sleep(m.delay)
	return m.fakeMedia.Join(ctx, req)
}

// outcome is what one connect got first: an offer, a redirect, or a close.
type outcome struct {
	kind   string // wire.TypeOffer, wire.TypeRedirect or "close"
	code   int
	reason string
	where  string // the redirect's location
}

// firstOutcome connects to channel at url and reads until an offer, a
// redirect or a close. The socket stays open on an offer.
func firstOutcome(t *testing.T, url, channel string) outcome {
	c := dial(t, url)
	c.send(connectMsg(channel, ""))
	for {
		m, err := c.next()
		if err != nil {
			var ce websocket.CloseError
			if errors.As(err, &ce) {
				return outcome{kind: "close", code: int(ce.Code), reason: ce.Reason}
			}
			return outcome{kind: "error", reason: err.Error()}
		}
		switch m["type"] {
		case wire.TypeOffer:
			return outcome{kind: wire.TypeOffer}
		case wire.TypeRedirect:
			loc, _ := m["location"].(string)
			return outcome{kind: wire.TypeRedirect, where: loc}
		}
	}
}

// burst makes n connects to url at once and counts their outcomes: "offer",
// "redirect <location>", "close <code> <reason>".
func burst(t *testing.T, n int, url, channel string) map[string]int {
	var mu sync.Mutex
	got := map[string]int{}
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			o := firstOutcome(t, url, channel)
			k := o.kind
			switch o.kind {
			case wire.TypeRedirect:
				k += " " + o.where
			case "close", "error":
				k += fmt.Sprintf(" %d %s", o.code, o.reason)
			}
			mu.Lock()
			got[k]++
			mu.Unlock()
		})
	}
	wg.Wait()
	return got
}

// TestMaxConnectionsHard: placement reads a view whose load is published
// after the fact, so a burst of connects all see room. max_connections
// holds anyway: 50 connects at once to a node with room for k serve
// exactly k; the rest get what the table says for a full node.
func TestMaxConnectionsHard(t *testing.T) {
	testutil.CheckLeaks(t)
	const k, n = 3, 50
	node := func(name string, capacity int) affinity.Node {
		return affinity.Node{Name: name, Connected: true, Capacity: capacity}
	}
	t.Run("no cluster", func(t *testing.T) {
		// A full node fails the connect (NO-CAPACITY).
		mem := NewMemCluster(affinity.Settings{}, node("a@127.0.0.1", k))
		media := &heldMedia{fakeMedia: &fakeMedia{}, delay: 100 * time.Millisecond}
		ts := newTestServer(t, Config{NodeName: "a@127.0.0.1", Cluster: mem.Node("a@127.0.0.1"), Media: media})
		got := burst(t, n, ts.url, "room")
		want := map[string]int{wire.TypeOffer: k, "close 4503 NO-CAPACITY": n - k}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%d connects at once to a node of capacity %d: %v, want %v", n, k, got, want)
		}
		if c := media.count(); c != k {
			t.Errorf("%d media connections made, want %d", c, k)
		}
	})
	t.Run("relay without affinity", func(t *testing.T) {
		// The contacted node serves while it has room, then redirects to
		// the most free node.
		s := affinity.DefaultSettings()
		s.DefaultAffinity = false
		mem := NewMemCluster(s, node("a@127.0.0.1", k), node("b@127.0.0.1", 100))
		media := &heldMedia{fakeMedia: &fakeMedia{}, delay: 100 * time.Millisecond}
		ts := newTestServer(t, Config{NodeName: "a@127.0.0.1", Cluster: mem.Node("a@127.0.0.1"), Media: media})
		mem.UpdateNode("a@127.0.0.1", func(n *affinity.Node) { n.SignalingURL = ts.url })
		mem.UpdateNode("b@127.0.0.1", func(n *affinity.Node) { n.SignalingURL = "ws://b.example/signaling" })
		got := burst(t, n, ts.url, "room")
		want := map[string]int{wire.TypeOffer: k, "redirect ws://b.example/signaling": n - k}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%d connects at once to a node of capacity %d: %v, want %v", n, k, got, want)
		}
	})
	t.Run("slots come back", func(t *testing.T) {
		// Refused and ended connections free their slots.
		mem := NewMemCluster(affinity.Settings{}, node("a@127.0.0.1", 1))
		ts := newTestServer(t, Config{NodeName: "a@127.0.0.1", Cluster: mem.Node("a@127.0.0.1")})
		ts.media.full = true
		connectWantClose(t, ts.url, "room", wire.CloseRefused, "NODE-FULL")
		ts.media.full = false
		c := offered(t, ts.url, "room")
		connectWantClose(t, ts.url, "room", wire.CloseRefused, "NO-CAPACITY")
		c.send(`{"type":"disconnect"}`)
		c.closed()
		testutil.Eventually(t, func() bool { return len(ts.Connections("")) == 0 }, 5*time.Second, "connection gone")
		testutil.Eventually(t, func() bool {
			o := firstOutcome(t, ts.url, "room")
			return o.kind == wire.TypeOffer
		}, 5*time.Second, "the slot of the ended connection is free again")
	})
}

// TestMajorityDrop: a Server wired by hand (no shoal.Node) closes every
// connection when its Cluster's view says it left the majority, and serves
// again once it is back.
func TestMajorityDrop(t *testing.T) {
	testutil.CheckLeaks(t)
	tc := newTestCluster(t, affinity.DefaultSettings())
	a := offered(t, tc.url("a"), "room")
	b := offered(t, tc.url("b"), "other")
	tc.mem.SetMinority("a@127.0.0.1", true)
	code, reason := closedWithin(t, a, 3*time.Second)
	if code != wire.CloseRefused || reason != "NOT-IN-MAJORITY" {
		t.Fatalf("a's client after a left the majority: close %d %q, want %d NOT-IN-MAJORITY", code, reason, wire.CloseRefused)
	}
	connectWantClose(t, tc.url("a"), "room", wire.CloseRefused, "NOT-IN-MAJORITY")
	if n := len(tc.servers["b@127.0.0.1"].Connections("")); n != 1 {
		t.Errorf("b, in the majority, serves %d connections, want 1", n)
	}
	b.send(`{"type":"disconnect"}`)
	b.closed()
	tc.mem.SetMinority("a@127.0.0.1", false)
	testutil.Eventually(t, func() bool {
		return firstOutcome(t, tc.url("a"), "again").kind == wire.TypeOffer
	}, 5*time.Second, "a serves again in the majority")
}

// TestMajorityLostWhileJoining: a connect that passed placement and is
// creating its media connection when the node leaves the majority is not
// served: the majority is checked again where the connection becomes
// served, and the drop cannot miss it.
func TestMajorityLostWhileJoining(t *testing.T) {
	testutil.CheckLeaks(t)
	mem := NewMemCluster(affinity.DefaultSettings(),
		affinity.Node{Name: "a@127.0.0.1", Connected: true, Capacity: 10},
		affinity.Node{Name: "b@127.0.0.1", Connected: true, Capacity: 10},
		affinity.Node{Name: "c@127.0.0.1", Connected: true, Capacity: 10})
	media := &heldMedia{fakeMedia: &fakeMedia{}, hold: make(chan struct{}), joined: make(chan struct{}, 1)}
	ts := newTestServer(t, Config{NodeName: "a@127.0.0.1", Cluster: mem.Node("a@127.0.0.1"), Media: media})
	c := dial(t, ts.url)
	c.send(connectMsg("room", ""))
	select {
	case <-media.joined:
	case <-time.After(5 * time.Second):
		t.Fatal("the connect did not reach Media.Join")
	}
	mem.SetMinority("a@127.0.0.1", true)
	time.Sleep(300 * time.Millisecond) // the server has seen the view
	close(media.hold)
	code, reason := closedWithin(t, c, 3*time.Second)
	if code != wire.CloseRefused || reason != "NOT-IN-MAJORITY" {
		t.Fatalf("connect placed before the node left the majority, joined after: close %d %q, want %d NOT-IN-MAJORITY",
			code, reason, wire.CloseRefused)
	}
	if n := len(ts.Connections("")); n != 0 {
		t.Errorf("%d connections served outside the majority", n)
	}
	testutil.Eventually(t, func() bool {
		mc := media.conn(0)
		return mc != nil && mc.isClosed()
	}, 5*time.Second, "the media connection made for it is closed")
}

// closedWithin reads from c until the server closes it, at most d, and
// returns the close code and reason (-1 if c was not closed in time).
func closedWithin(t *testing.T, c *wsClient, d time.Duration) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for {
		_, _, err := c.ws.Read(ctx)
		if err == nil {
			continue
		}
		var ce websocket.CloseError
		if errors.As(err, &ce) {
			return int(ce.Code), ce.Reason
		}
		return -1, err.Error()
	}
}
