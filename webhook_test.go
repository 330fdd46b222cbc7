package shoal_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	shoal "github.com/shoal-sfu/shoal"
	"github.com/shoal-sfu/shoal/cluster"
	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/signaling"
)

// eventLog is a webhook receiver that keeps the events by type, one per id.
type eventLog struct {
	mu   sync.Mutex
	seen map[string]bool
	got  map[string][]map[string]any
}

func newEventLog(t *testing.T) (*eventLog, string) {
	l := &eventLog{seen: map[string]bool{}, got: map[string][]map[string]any{}}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var m map[string]any
		if json.Unmarshal(b, &m) != nil {
			w.WriteHeader(400)
			return
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		id, _ := m["id"].(string)
		if l.seen[id] {
			return
		}
		l.seen[id] = true
		typ, _ := m["type"].(string)
		l.got[typ] = append(l.got[typ], m)
	}))
	t.Cleanup(hs.Close)
	return l, hs.URL
}

func (l *eventLog) of(typ string) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]map[string]any(nil), l.got[typ]...)
}

// A channel joined on the three nodes of a real cluster (Raft orders the
// claims and releases) gives exactly one session.created, from the node
// that created the session, and one session.destroyed once every client
// has left, from the node whose release ended it.
func TestEventWebhookOneSessionInCluster(t *testing.T) {
	testutil.CheckLeaks(t)
	events, url := newEventLog(t)
	var hooks []*signaling.EventWebhook
	nodes := e2eCluster(t, false, func(cfg *shoal.Config) {
		wh, err := signaling.NewEventWebhook(signaling.EventWebhookConfig{URL: url, NodeName: cfg.NodeName, Logger: testutil.Logger(t)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { wh.Close() })
		hooks = append(hooks, wh)
		cfg.Signaling.Events = wh
	})
	api := localAPI(t)
	var closers []func() error
	for i, n := range nodes {
		cl, _, err := connect(t, api, n.signaling, "room", `{"affinity":false}`)
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		if cl.URL != n.signaling {
			t.Fatalf("client %d served at %s, want %s", i, cl.URL, n.signaling)
		}
		closers = append(closers, cl.Close)
	}
	testutil.Eventually(t, func() bool {
		v := nodes[0].View()
		return len(v.Sessions["room"].Owners) == 3
	}, 10*time.Second, "the session held by the three nodes")
	testutil.Eventually(t, func() bool { return len(events.of(signaling.EventConnectionCreated)) == 3 }, 10*time.Second, "3 connection.created")
	// Leave all at once: the releases race, Raft orders them.
	var wg sync.WaitGroup
	for _, c := range closers {
		wg.Go(func() { c() })
	}
	wg.Wait()
	testutil.Eventually(t, func() bool { return len(events.of(signaling.EventSessionDestroyed)) >= 1 }, 15*time.Second, "session.destroyed")
	testutil.Eventually(t, func() bool { return len(events.of(signaling.EventConnectionDestroyed)) == 3 }, 10*time.Second, "3 connection.destroyed")
	time.Sleep(500 * time.Millisecond) // a duplicate would come by now
	created, destroyed := events.of(signaling.EventSessionCreated), events.of(signaling.EventSessionDestroyed)
	if len(created) != 1 || len(destroyed) != 1 {
		t.Fatalf("%d session.created, %d session.destroyed; want exactly one of each", len(created), len(destroyed))
	}
	if created[0]["node_name"] != nodes[0].Name() {
		t.Errorf("session.created from %v, want the creator %s", created[0]["node_name"], nodes[0].Name())
	}
	t.Logf("session.destroyed from %v", destroyed[0]["node_name"])
	for _, wh := range hooks {
		if s := wh.Stats(); s.Dropped != 0 || s.Abandoned != 0 {
			t.Errorf("webhook stats %+v", s)
		}
	}
}

// failedNodeCluster starts three nodes sending webhooks to events, and
// returns the Raft leader and a victim: a follower other than n1 whose
// client holds channel ch alone, with its session.created received. n2
// and n3 see failures by gossip late (a suspicion of 30 probe intervals, 6
// s with FastTiming, longer than the 4.8 s a node keeps serving without
// hearing from a Raft leader), as a cut-off node does in production,
// where memberlist's Lifeguard slows its probes: the majority (n1 among
// it) sees the victim failed within about a second, the victim stops
// serving only by the Raft bound.
func failedNodeCluster(t *testing.T, events *eventLog, url, ch string) (faults *cluster.FaultNet, leader, victim *e2eNode, others []netip.Addr) {
	t.Helper()
	faults = cluster.NewFaultNet()
	nodes := e2eCluster(t, false, func(cfg *shoal.Config) {
		cfg.Faults = faults
		if !strings.HasPrefix(cfg.NodeName, "n1@") {
			cfg.Timing.SuspicionMult = 30
		}
		wh, err := signaling.NewEventWebhook(signaling.EventWebhookConfig{URL: url, NodeName: cfg.NodeName, Logger: testutil.Logger(t)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { wh.Close() })
		cfg.Signaling.Events = wh
	})
	testutil.Eventually(t, func() bool {
		leader, victim = nil, nil
		for _, n := range nodes {
			if n.Membership().RaftStats().State == "Leader" {
				leader = n
			} else if victim == nil && n != nodes[0] {
				victim = n
			}
		}
		return leader != nil && victim != nil
	}, 10*time.Second, "a Raft leader")
	if _, _, err := connect(t, localAPI(t), victim.signaling, ch, `{"affinity":false}`); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, func() bool { return len(events.of(signaling.EventSessionCreated)) == 1 }, 10*time.Second, "session.created")
	for _, n := range nodes {
		if n != victim {
			others = append(others, n.ip)
		}
	}
	return faults, leader, victim, others
}

// seesConnected reports whether from's view shows node connected.
func seesConnected(from *e2eNode, node string) bool {
	v := from.View()
	i := v.NodeIndex(node)
	return i >= 0 && v.Nodes[i].Connected
}

// A session whose only holder fails ends when the Raft leader releases
// that node's claims; no node released it itself, and the leader sends the
// one session.destroyed, once the holder has dropped its client: the cut
// may heal at once, and the holder coming back sends none. (Before the
// leader waited for the holder to stop, it ended the session about a
// second after the cut while the holder still served its client; healed
// then, the holder claimed its channel again: a second session.created
// and more session.destroyed.)
func TestEventWebhookSessionEndedByFailedNode(t *testing.T) {
	testutil.CheckLeaks(t)
	events, url := newEventLog(t)
	faults, leader, victim, others := failedNodeCluster(t, events, url, "gone")

	// Cut the victim off: it leaves the majority (its client is dropped,
	// its release cannot commit) and the leader releases its claims.
	cut := time.Now()
	faults.Partition(others, []netip.Addr{victim.ip})
	testutil.Eventually(t, func() bool { return len(events.of(signaling.EventSessionDestroyed)) >= 1 }, 30*time.Second, "session.destroyed")
	if n := len(victim.SFU().Stats()); n != 0 {
		t.Fatalf("session.destroyed %v after the cut while the victim still serves %d connections", time.Since(cut), n)
	}
	t.Logf("session.destroyed %v after the cut", time.Since(cut).Round(time.Millisecond))
	faults.Heal()
	testutil.Eventually(t, func() bool { return seesConnected(leader, victim.Name()) && victim.Ready() }, 15*time.Second, "the victim back")
	time.Sleep(2 * time.Second) // the victim back: its release retried must not send another
	destroyed := events.of(signaling.EventSessionDestroyed)
	if len(destroyed) != 1 || destroyed[0]["node_name"] != leader.Name() || destroyed[0]["channel_id"] != "gone" {
		t.Fatalf("session.destroyed: %v; want one, from the leader %s", destroyed, leader.Name())
	}
	if created := events.of(signaling.EventSessionCreated); len(created) != 1 {
		t.Fatalf("%d session.created, want 1: %v", len(created), created)
	}
}

// A cut that heals before the holder noticed it ends nothing: the leader
// saw the holder failed but waits for it to stop serving before it
// releases its claims, the holder never stops, its client stays, and no
// session.destroyed or second session.created is sent. Before that wait,
// the leader ended the session on its next tick and the holder, still
// serving, created it again.
func TestEventWebhookCutHealedQuickly(t *testing.T) {
	testutil.CheckLeaks(t)
	events, url := newEventLog(t)
	faults, leader, victim, others := failedNodeCluster(t, events, url, "stays")

	cut := time.Now()
	faults.Partition(others, []netip.Addr{victim.ip})
	testutil.Eventually(t, func() bool { return !seesConnected(leader, victim.Name()) }, 10*time.Second, "the leader sees the victim failed")
	failed := time.Since(cut)
	time.Sleep(time.Second) // ten housekeeping ticks of the leader
	if !victim.Ready() {
		t.Fatalf("the victim stopped serving %v after the cut, before the heal: the test needs it still serving", time.Since(cut))
	}
	healed := time.Since(cut)
	faults.Heal()
	testutil.Eventually(t, func() bool { return seesConnected(leader, victim.Name()) }, 15*time.Second, "the victim back")
	time.Sleep(2 * time.Second) // what the release would have sent
	if d := events.of(signaling.EventSessionDestroyed); len(d) != 0 {
		t.Errorf("session.destroyed sent for a cut healed %v after it: %v", healed, d)
	}
	if c := events.of(signaling.EventSessionCreated); len(c) != 1 {
		t.Errorf("%d session.created, want 1: %v", len(c), c)
	}
	if d := events.of(signaling.EventConnectionDestroyed); len(d) != 0 {
		t.Errorf("connection.destroyed: %v", d)
	}
	if n := len(victim.SFU().Stats()); n != 1 || !victim.Ready() {
		t.Errorf("the victim serves %d connections (ready %v), want its client still", n, victim.Ready())
	}
	t.Logf("the leader saw the victim failed %v after the cut; healed %v after it", failed.Round(time.Millisecond), healed.Round(time.Millisecond))
}
