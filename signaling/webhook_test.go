package signaling

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoal-sfu/shoal/affinity"
	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/signaling/wire"
)

// hookReceiver is a webhook receiver that records every body it gets.
type hookReceiver struct {
	*httptest.Server
	mu     sync.Mutex
	bodies []map[string]any
	// status answers each request; nil means 200.
	status func(n int) int
	n      atomic.Int64
}

func newHookReceiver(t *testing.T, status func(n int) int) *hookReceiver {
	r := &hookReceiver{status: status}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Errorf("webhook body not JSON: %q", b)
		}
		if m["id"] != req.Header.Get("shoal-event-id") || m["type"] != req.Header.Get("sora-event-webhook-type") {
			t.Errorf("headers %v do not match body %v", req.Header, m)
		}
		n := int(r.n.Add(1))
		r.mu.Lock()
		r.bodies = append(r.bodies, m)
		r.mu.Unlock()
		if r.status != nil {
			w.WriteHeader(r.status(n))
		}
	}))
	t.Cleanup(r.Close)
	return r
}

// ofType returns the bodies of type typ received so far, one per id (a
// receiver's deduplication).
func (r *hookReceiver) ofType(typ string) []map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[any]bool{}
	var out []map[string]any
	for _, b := range r.bodies {
		if b["type"] == typ && !seen[b["id"]] {
			seen[b["id"]] = true
			out = append(out, b)
		}
	}
	return out
}

func newTestWebhook(t *testing.T, cfg EventWebhookConfig) *EventWebhook {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testutil.Logger(t)
	}
	w, err := NewEventWebhook(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// A client that answers and disconnects gives session.created,
// connection.created, connection.destroyed and session.destroyed, with
// Sora's fields and an id each; one that never answers gives
// connection.failed.
func TestEventWebhookConnectionEvents(t *testing.T) {
	testutil.CheckLeaks(t)
	rcv := newHookReceiver(t, nil)
	wh := newTestWebhook(t, EventWebhookConfig{URL: rcv.URL, NodeName: "n1@127.0.0.1", Version: "test"})
	ts := newTestServer(t, Config{Events: wh, NodeName: "n1@127.0.0.1"})

	c := dial(t, ts.url)
	c.send(connectMsg("room", `,"client_id":"alice"`))
	offer := c.expect(wire.TypeOffer)
	c.send(`{"type":"answer","sdp":"v=0"}`)
	testutil.Eventually(t, func() bool { return len(rcv.ofType(EventConnectionCreated)) == 1 }, 5*time.Second, "connection.created")
	c.send(`{"type":"disconnect"}`)
	c.closed()
	testutil.Eventually(t, func() bool { return len(rcv.ofType(EventSessionDestroyed)) == 1 }, 5*time.Second, "session.destroyed")

	created := rcv.ofType(EventConnectionCreated)[0]
	for k, want := range map[string]any{"channel_id": "room", "client_id": "alice", "connection_id": offer["connection_id"],
		"role": "sendrecv", "node_name": "n1@127.0.0.1", "label": "Shoal", "version": "test", "audio": true, "video": true, "multistream": true} {
		if created[k] != want {
			t.Errorf("connection.created %s = %v, want %v", k, created[k], want)
		}
	}
	if id, _ := created["id"].(string); len(id) != 26 {
		t.Errorf("id %q", created["id"])
	}
	destroyed := rcv.ofType(EventConnectionDestroyed)
	if len(destroyed) != 1 {
		t.Fatalf("%d connection.destroyed", len(destroyed))
	}
	if d, _ := destroyed[0]["data"].(map[string]any); d["reason"] != "TYPE-DISCONNECT" || d["destroyed_timestamp"] == nil {
		t.Errorf("connection.destroyed data %v", destroyed[0]["data"])
	}
	if n := len(rcv.ofType(EventSessionCreated)); n != 1 {
		t.Errorf("%d session.created", n)
	}

	// No answer: connection.failed, not created/destroyed.
	c2 := dial(t, ts.url)
	c2.send(connectMsg("room2", ""))
	c2.expect(wire.TypeOffer)
	c2.ws.CloseNow()
	testutil.Eventually(t, func() bool { return len(rcv.ofType(EventConnectionFailed)) == 1 }, 5*time.Second, "connection.failed")
	if n := len(rcv.ofType(EventConnectionCreated)); n != 1 {
		t.Errorf("%d connection.created after a failed connection", n)
	}
	ids := map[any]bool{}
	rcv.mu.Lock()
	for _, b := range rcv.bodies {
		if ids[b["id"]] {
			t.Errorf("id %v sent twice with 200 answers", b["id"])
		}
		ids[b["id"]] = true
	}
	rcv.mu.Unlock()
	cn := ts.Counters()
	if cn.ConnectionsCreated != 1 || cn.ConnectionsDestroyed != 1 || cn.ConnectionsFailed != 1 || cn.SessionsCreated != 2 {
		t.Errorf("counters %+v", cn)
	}
}

func TestEventWebhookConnectionUpdated(t *testing.T) {
	testutil.CheckLeaks(t)
	rcv := newHookReceiver(t, nil)
	wh := newTestWebhook(t, EventWebhookConfig{URL: rcv.URL, UpdatedInterval: 50 * time.Millisecond})
	ts := newTestServer(t, Config{Events: wh})
	c := offered(t, ts.url, "room")
	c.send(`{"type":"answer","sdp":"v=0"}`)
	testutil.Eventually(t, func() bool { return len(rcv.ofType(EventConnectionUpdated)) >= 2 }, 5*time.Second, "connection.updated twice")
	c.send(`{"type":"disconnect"}`)
	c.closed()
	testutil.Eventually(t, func() bool { return len(rcv.ofType(EventConnectionDestroyed)) == 1 }, 5*time.Second, "destroyed")
	n := len(rcv.ofType(EventConnectionUpdated))
	time.Sleep(200 * time.Millisecond)
	if m := len(rcv.ofType(EventConnectionUpdated)); m != n {
		t.Errorf("connection.updated went on after the end: %d -> %d", n, m)
	}
}

// A receiver answering 500 gets the same event (same id) again, with
// backoff, until it accepts it or the retries run out.
func TestEventWebhookRetries(t *testing.T) {
	testutil.CheckLeaks(t)
	rcv := newHookReceiver(t, func(n int) int {
		if n <= 2 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	wh := newTestWebhook(t, EventWebhookConfig{URL: rcv.URL, Backoff: 10 * time.Millisecond, Retries: 3, Workers: 1})
	wh.Emit(Event{Type: EventSessionCreated, ChannelID: "room"})
	testutil.Eventually(t, func() bool { return wh.Stats().Delivered == 1 }, 5*time.Second, "delivered after two 500s")
	rcv.mu.Lock()
	if len(rcv.bodies) != 3 || rcv.bodies[0]["id"] != rcv.bodies[2]["id"] {
		t.Errorf("bodies %v: want the same event three times", rcv.bodies)
	}
	rcv.mu.Unlock()
	if s := wh.Stats(); s.FailedAttempts != 2 || s.Abandoned != 0 {
		t.Errorf("stats %+v", s)
	}

	// Always 500: abandoned after 1 + Retries attempts.
	bad := newHookReceiver(t, func(int) int { return http.StatusInternalServerError })
	wb := newTestWebhook(t, EventWebhookConfig{URL: bad.URL, Backoff: time.Millisecond, Retries: 2, Workers: 1})
	wb.Emit(Event{Type: EventSessionCreated, ChannelID: "room"})
	testutil.Eventually(t, func() bool { return wb.Stats().Abandoned == 1 }, 5*time.Second, "abandoned")
	if n := bad.n.Load(); n != 3 {
		t.Errorf("%d attempts, want 3", n)
	}
}

// hangingReceiver accepts requests and never answers until the test ends.
func hangingReceiver(t testing.TB) *httptest.Server {
	stop := make(chan struct{})
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-stop:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(stop); hs.Close() })
	return hs
}

// A receiver that hangs fills the bounded queue: the events beyond it are
// dropped and counted, Emit never blocks, and Close does not wait for the
// receiver.
func TestEventWebhookHangingReceiverDrops(t *testing.T) {
	testutil.CheckLeaks(t)
	hs := hangingReceiver(t)
	wh, err := NewEventWebhook(EventWebhookConfig{URL: hs.URL, QueueSize: 8, Workers: 2, Timeout: time.Minute, Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for range 1000 {
		wh.Emit(Event{Type: EventSessionCreated, ChannelID: "room"})
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("1000 Emits took %v", d)
	}
	s := wh.Stats()
	// At most the queue and one per worker are held; the rest dropped.
	if s.Dropped < 1000-8-2 || s.Emitted != 1000 {
		t.Errorf("stats %+v", s)
	}
	start = time.Now()
	wh.Close()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Close took %v with a hanging receiver", d)
	}
	if s := wh.Stats(); s.Dropped+s.Abandoned != 1000 {
		t.Errorf("after Close: %+v (every event dropped or abandoned)", s)
	}
}

// connectTimes connects n clients one after the other, each to its offer
// and answer, and returns the connect times (dial to offer).
func connectTimes(t *testing.T, url string, n int) []time.Duration {
	var out []time.Duration
	for i := range n {
		start := time.Now()
		c := dial(t, url)
		c.send(connectMsg("room", ""))
		c.expect(wire.TypeOffer)
		out = append(out, time.Since(start))
		c.send(`{"type":"answer","sdp":"v=0"}`)
		c.send(`{"type":"disconnect"}`)
		c.closed()
		_ = i
	}
	slices.Sort(out)
	return out
}

// A receiver that hangs, or answers 500, delays no connect: each
// completes (within the test's generous bound), and the median connect
// time is logged next to that without a webhook.
func TestEventWebhookSlowReceiverDoesNotDelayConnects(t *testing.T) {
	testutil.CheckLeaks(t)
	const n = 30
	base := newTestServer(t, Config{})
	hang := hangingReceiver(t)
	wHang := newTestWebhook(t, EventWebhookConfig{URL: hang.URL, QueueSize: 4, Workers: 1, Timeout: time.Minute})
	r500 := newHookReceiver(t, func(int) int { return http.StatusInternalServerError })
	w500 := newTestWebhook(t, EventWebhookConfig{URL: r500.URL, Backoff: time.Millisecond})
	withHang := newTestServer(t, Config{Events: wHang})
	with500 := newTestServer(t, Config{Events: w500})
	for _, tc := range []struct {
		name string
		url  string
	}{{"none", base.url}, {"hanging", withHang.url}, {"500", with500.url}} {
		times := connectTimes(t, tc.url, n)
		t.Logf("receiver %-8s connect (dial to offer) median %v, max %v over %d", tc.name, times[n/2], times[n-1], n)
		if times[n-1] > 3*time.Second {
			t.Errorf("receiver %s: a connect took %v", tc.name, times[n-1])
		}
	}
	if s := wHang.Stats(); s.Dropped == 0 {
		t.Errorf("hanging receiver: nothing dropped: %+v", s)
	}
	if s := w500.Stats(); s.FailedAttempts == 0 {
		t.Errorf("500 receiver: no failed attempt: %+v", s)
	}
}

// A channel joined on three nodes of a cluster (relay on, affinity off so
// that each client stays where it lands) gives exactly one session.created
// and, once all have left, one session.destroyed, though each node claimed
// and released the channel.
func TestEventWebhookOneSessionAcrossNodes(t *testing.T) {
	testutil.CheckLeaks(t)
	rcv := newHookReceiver(t, nil)
	off := false
	tc := &testCluster{names: []string{"a@127.0.0.1", "b@127.0.0.1", "c@127.0.0.1"}, servers: map[string]*testServer{},
		auth: &countingAuth{calls: map[string]int{}, affinity: &off}}
	var nodes []affinity.Node
	for _, n := range tc.names {
		nodes = append(nodes, affinity.Node{Name: n, Connected: true, Capacity: 100})
	}
	tc.mem = NewMemCluster(affinity.DefaultSettings(), nodes...)
	for _, n := range tc.names {
		wh := newTestWebhook(t, EventWebhookConfig{URL: rcv.URL, NodeName: n})
		tc.servers[n] = newTestServer(t, Config{NodeName: n, Cluster: tc.mem.Node(n), Authenticator: tc.auth, Events: wh})
	}
	var clients []*wsClient
	for _, short := range []string{"a", "b", "c"} {
		c := offered(t, tc.url(short), "room")
		c.send(`{"type":"answer","sdp":"v=0"}`)
		clients = append(clients, c)
	}
	v := tc.mem.Node("a@127.0.0.1").Snapshot()
	if len(v.Sessions["room"].Owners) != 3 {
		t.Fatalf("owners %+v, want the three nodes", v.Sessions["room"])
	}
	testutil.Eventually(t, func() bool { return len(rcv.ofType(EventConnectionCreated)) == 3 }, 5*time.Second, "3 connection.created")
	// Leave in an order where the creator is not the last.
	for i, c := range clients {
		c.send(`{"type":"disconnect"}`)
		c.closed()
		testutil.Eventually(t, func() bool {
			return len(tc.mem.Node("a@127.0.0.1").Snapshot().Sessions["room"].Owners) == 2-i
		}, 5*time.Second, "node %d released", i)
	}
	testutil.Eventually(t, func() bool { return len(rcv.ofType(EventSessionDestroyed)) == 1 }, 5*time.Second, "session.destroyed")
	time.Sleep(100 * time.Millisecond)
	created, destroyed := rcv.ofType(EventSessionCreated), rcv.ofType(EventSessionDestroyed)
	if len(created) != 1 || len(destroyed) != 1 {
		t.Fatalf("%d session.created, %d session.destroyed, want 1 and 1", len(created), len(destroyed))
	}
	if created[0]["node_name"] != "a@127.0.0.1" || destroyed[0]["node_name"] != "c@127.0.0.1" {
		t.Errorf("session.created by %v, destroyed by %v: want the creator a and the last to leave c", created[0]["node_name"], destroyed[0]["node_name"])
	}
	var from []string
	for _, b := range rcv.ofType(EventConnectionDestroyed) {
		from = append(from, b["node_name"].(string))
	}
	sort.Strings(from)
	if !slices.Equal(from, tc.names) {
		t.Errorf("connection.destroyed from %v", from)
	}
}

// BenchmarkConnectEventWebhook is the connect of BenchmarkConnectInProcessAuth
// with an event webhook whose receiver answers at once, answers 500, or
// hangs: the receiver must not change the connect rate.
func BenchmarkConnectEventWebhook(b *testing.B) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer ok.Close()
	fail := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }))
	defer fail.Close()
	stop := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-stop:
		case <-r.Context().Done():
		}
	}))
	defer hang.Close()
	defer close(stop)
	b.Run("none", func(b *testing.B) { runConnects(b, benchServer(b, Config{})) })
	for _, rc := range []struct {
		name string
		url  string
	}{{"ok", ok.URL}, {"500", fail.URL}, {"hanging", hang.URL}} {
		b.Run(rc.name, func(b *testing.B) {
			wh, err := NewEventWebhook(EventWebhookConfig{URL: rc.url, Logger: quietLogger(), Backoff: time.Millisecond, Timeout: time.Minute})
			if err != nil {
				b.Fatal(err)
			}
			defer wh.Close()
			runConnects(b, benchServer(b, Config{Events: wh}))
		})
	}
}
