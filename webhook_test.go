package shoal_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
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

// A session whose only holder fails ends when the Raft leader releases
// that node's claims; no node released it itself, and the leader sends the
// one session.destroyed.
func TestEventWebhookSessionEndedByFailedNode(t *testing.T) {
	testutil.CheckLeaks(t)
	events, url := newEventLog(t)
	faults := cluster.NewFaultNet()
	nodes := e2eCluster(t, false, func(cfg *shoal.Config) {
		cfg.Faults = faults
		wh, err := signaling.NewEventWebhook(signaling.EventWebhookConfig{URL: url, NodeName: cfg.NodeName, Logger: testutil.Logger(t)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { wh.Close() })
		cfg.Signaling.Events = wh
	})
	var leader, victim *e2eNode
	testutil.Eventually(t, func() bool {
		leader, victim = nil, nil
		for _, n := range nodes {
			if n.Membership().RaftStats().State == "Leader" {
				leader = n
			} else if victim == nil {
				victim = n
			}
		}
		return leader != nil && victim != nil
	}, 10*time.Second, "a Raft leader")
	if _, _, err := connect(t, localAPI(t), victim.signaling, "gone", `{"affinity":false}`); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, func() bool { return len(events.of(signaling.EventSessionCreated)) == 1 }, 10*time.Second, "session.created")

	// Cut the victim off: it leaves the majority (its client is dropped,
	// its release cannot commit) and the leader releases its claims.
	var others []netip.Addr
	for _, n := range nodes {
		if n != victim {
			others = append(others, n.ip)
		}
	}
	faults.Partition(others, []netip.Addr{victim.ip})
	testutil.Eventually(t, func() bool { return len(events.of(signaling.EventSessionDestroyed)) >= 1 }, 30*time.Second, "session.destroyed")
	// Heal only once the victim has dropped its client as a minority node
	// does: a victim still serving when the cut heals claims its channel
	// again, and the leader, which still sees it failed until serf's
	// rejoin, releases it once more (a second session.destroyed; seen on a
	// loaded two-core run, where the leader's release came 1.1 s after the
	// cut and before the victim had noticed it was in the minority).
	testutil.Eventually(t, func() bool { return len(victim.SFU().Stats()) == 0 }, 30*time.Second, "the victim drops its client")
	faults.Heal()
	time.Sleep(2 * time.Second) // the victim back: its release retried must not send another
	destroyed := events.of(signaling.EventSessionDestroyed)
	if len(destroyed) != 1 || destroyed[0]["node_name"] != leader.Name() || destroyed[0]["channel_id"] != "gone" {
		t.Fatalf("session.destroyed: %v; want one, from the leader %s", destroyed, leader.Name())
	}
}
