package signaling

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/shoal-sfu/shoal/affinity"
	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/signaling/wire"
)

// testCluster is three signaling servers (fake media) sharing a MemCluster.
type testCluster struct {
	mem     *MemCluster
	names   []string
	servers map[string]*testServer
	auth    *countingAuth
}

// countingAuth counts calls per node and answers with affinity.
type countingAuth struct {
	mu       sync.Mutex
	calls    map[string]int
	affinity *bool
}

func (a *countingAuth) Authenticate(ctx context.Context, r *AuthRequest) (AuthResult, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls[r.NodeName]++
	return AuthResult{Allowed: true, ClusterAffinity: a.affinity}, nil
}

func (a *countingAuth) count(node string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.calls[node]
}

func (a *countingAuth) setAffinity(v *bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.affinity = v
}

func newTestCluster(t *testing.T, settings affinity.Settings) *testCluster {
	t.Helper()
	tc := &testCluster{names: []string{"a@127.0.0.1", "b@127.0.0.1", "c@127.0.0.1"}, servers: map[string]*testServer{},
		auth: &countingAuth{calls: map[string]int{}}}
	var nodes []affinity.Node
	for _, n := range tc.names {
		nodes = append(nodes, affinity.Node{Name: n, Connected: true, Capacity: 100})
	}
	tc.mem = NewMemCluster(settings, nodes...)
	for _, n := range tc.names {
		ts := newTestServer(t, Config{NodeName: n, Cluster: tc.mem.Node(n), Authenticator: tc.auth, RedirectLinger: time.Second})
		tc.servers[n] = ts
		tc.mem.UpdateNode(n, func(nd *affinity.Node) { nd.SignalingURL = ts.url; nd.APIURL = "http://api." + n[:1] })
	}
	return tc
}

func (tc *testCluster) url(short string) string { return tc.servers[short+"@127.0.0.1"].url }
func (tc *testCluster) media(short string) *fakeMedia {
	return tc.servers[short+"@127.0.0.1"].media
}

// load pretends that node short serves n connections of other channels.
func (tc *testCluster) load(short string, n int) {
	tc.mem.Node(short+"@127.0.0.1").PublishLoad(n, map[string]int{"other": n})
}

// connectTo connects like the SDK: follows redirects, returns the URL that
// offered and the number of redirects.
func connectTo(t *testing.T, url, channel string) (string, int) {
	t.Helper()
	redirects := 0
	extra := ""
	for {
		c := dial(t, url)
		c.send(connectMsg(channel, extra))
		m, err := c.next()
		for err == nil && m["type"] == wire.TypeNotify {
			m, err = c.next()
		}
		if err != nil {
			t.Fatalf("connect to %s: %v", url, err)
		}
		switch m["type"] {
		case wire.TypeOffer:
			c.send(`{"type":"answer","sdp":"v=0"}`)
			return url, redirects
		case wire.TypeRedirect:
			c.ws.CloseNow()
			redirects++
			if redirects > 3 {
				t.Fatal("redirect loop")
			}
			url, extra = m["location"].(string), `,"redirect":true`
		default:
			t.Fatalf("got %v", m)
		}
	}
}

func TestPlacementRelayAffinity(t *testing.T) {
	testutil.CheckLeaks(t)
	tc := newTestCluster(t, affinity.DefaultSettings())
	tc.load("a", 50)
	tc.load("c", 30)

	// A new session goes to the most free node, b, by redirect; the hook
	// runs on both nodes (relay: authenticate on the contacted node first).
	got, redirects := connectTo(t, tc.url("a"), "room")
	if got != tc.url("b") || redirects != 1 {
		t.Fatalf("new session served at %s after %d redirects, want b after 1", got, redirects)
	}
	if tc.auth.count("a@127.0.0.1") != 1 || tc.auth.count("b@127.0.0.1") != 1 {
		t.Errorf("auth calls %v, want one on a and one on b", tc.auth.calls)
	}
	testutil.Eventually(t, func() bool { return tc.media("b").count() == 1 }, 5*time.Second, "b serves")

	// The existing session is gathered on b, even from the busy node c.
	if got, _ := connectTo(t, tc.url("c"), "room"); got != tc.url("b") {
		t.Errorf("existing session served at %s, want b", got)
	}

	// cluster_affinity false from the hook keeps the connection where it landed.
	off := false
	tc.auth.setAffinity(&off)
	if got, redirects := connectTo(t, tc.url("c"), "room"); got != tc.url("c") || redirects != 0 {
		t.Errorf("affinity off: served at %s after %d redirects, want c", got, redirects)
	}
	tc.auth.setAffinity(nil)

	// A full node redirects to the most free one.
	tc.mem.UpdateNode("a@127.0.0.1", func(n *affinity.Node) { n.Capacity = 50 })
	if got, _ := connectTo(t, tc.url("a"), "fresh"); got == tc.url("a") {
		t.Errorf("a full node served a new connection")
	}

	// A node outside the majority refuses, before asking the hook.
	calls := tc.auth.count("a@127.0.0.1")
	tc.mem.SetMinority("a@127.0.0.1", true)
	connectWantClose(t, tc.url("a"), "room", wire.CloseRefused, "NOT-IN-MAJORITY")
	if tc.auth.count("a@127.0.0.1") != calls {
		t.Error("the minority node asked the auth hook")
	}
}

func TestPlacementNoRelayRedirectsBeforeAuth(t *testing.T) {
	testutil.CheckLeaks(t)
	s := affinity.DefaultSettings()
	s.Relay = false
	tc := newTestCluster(t, s)
	tc.load("a", 10)
	tc.load("b", 10)
	if got, _ := connectTo(t, tc.url("c"), "room"); got != tc.url("c") {
		t.Fatalf("served at %s, want c (most free)", got)
	}
	before := tc.auth.count("a@127.0.0.1")
	got, redirects := connectTo(t, tc.url("a"), "room")
	if got != tc.url("c") || redirects != 1 {
		t.Errorf("served at %s after %d redirects, want c after 1", got, redirects)
	}
	if n := tc.auth.count("a@127.0.0.1"); n != before {
		t.Errorf("without relay the redirect comes before auth, but a called the hook %d times", n-before)
	}
	// The session's node full: the connect fails (no relay).
	tc.mem.UpdateNode("c@127.0.0.1", func(n *affinity.Node) { n.Capacity = 2 })
	connectWantClose(t, tc.url("a"), "room", wire.CloseRefused, "SESSION-NODE-FULL")
}

func TestReleaseEndsSession(t *testing.T) {
	testutil.CheckLeaks(t)
	tc := newTestCluster(t, affinity.DefaultSettings())
	c := offered(t, tc.url("a"), "room")
	v := tc.mem.Node("a@127.0.0.1").Snapshot()
	if s := v.Sessions["room"]; len(s.Owners) != 1 || v.Nodes[s.Owners[0].Node].Name != "a@127.0.0.1" || s.Owners[0].Connections != 1 {
		t.Fatalf("session after connect: %+v", s)
	}
	c.send(`{"type":"disconnect"}`)
	c.closed()
	testutil.Eventually(t, func() bool {
		v := tc.mem.Node("b@127.0.0.1").Snapshot()
		_, ok := v.Sessions["room"]
		return !ok && v.Nodes[0].Connections == 0
	}, 5*time.Second, "session released and load published")
}

func ExampleMemCluster() {
	mem := NewMemCluster(affinity.DefaultSettings(),
		affinity.Node{Name: "a@10.0.0.1", Connected: true, Capacity: 100, SignalingURL: "wss://a.example.com/signaling"},
		affinity.Node{Name: "b@10.0.0.2", Connected: true, Capacity: 100, SignalingURL: "wss://b.example.com/signaling"})
	mem.Node("a@10.0.0.1").PublishLoad(40, map[string]int{"x": 40})
	v := mem.Node("a@10.0.0.1").Snapshot()
	d := affinity.Place(&v, affinity.Request{ChannelID: "room", Contacted: "a@10.0.0.1"})
	fmt.Println(d.Action, d.SignalingURL)
	// Output: redirect wss://b.example.com/signaling
}

// Two nodes creating one session at once: the one whose claim came second
// sends its client to the creator when affinity gathers, and only then.
func TestGatherOnCreator(t *testing.T) {
	view := affinity.View{
		Settings: affinity.DefaultSettings(),
		Nodes: []affinity.Node{
			{Name: "a@127.0.0.1", Connected: true, Capacity: 10, SignalingURL: "ws://a/signaling"},
			{Name: "b@127.0.0.2", Connected: true, Capacity: 10, SignalingURL: "ws://b/signaling"},
			{Name: "c@127.0.0.3", Connected: false, Capacity: 10, SignalingURL: "ws://c/signaling"},
		},
		InMajority: true,
	}
	req := affinity.Request{ChannelID: "x", Contacted: "b@127.0.0.2"}
	noRelay := view
	noRelay.Settings.Relay = false
	noAffinity := view
	noAffinity.Settings.DefaultAffinity = false
	sessionSeen := view
	sessionSeen.Sessions = map[string]affinity.Session{"x": {Owners: []affinity.Owner{{Node: 0, Connections: 21}}}}
	for _, tc := range []struct {
		name     string
		view     affinity.View
		affinity affinity.Affinity
		owners   []string
		want     string // "" = serve here
	}{
		{"creator elsewhere", view, affinity.AffinityUnset, []string{"a@127.0.0.1", "b@127.0.0.2"}, "ws://a/signaling"},
		{"this node created it", view, affinity.AffinityUnset, []string{"b@127.0.0.2"}, ""},
		{"this node first of two", view, affinity.AffinityUnset, []string{"b@127.0.0.2", "a@127.0.0.1"}, ""},
		{"no claim made", view, affinity.AffinityUnset, nil, ""},
		{"hook turned affinity off", view, affinity.AffinityOff, []string{"a@127.0.0.1", "b@127.0.0.2"}, ""},
		{"affinity off by default", noAffinity, affinity.AffinityUnset, []string{"a@127.0.0.1", "b@127.0.0.2"}, ""},
		{"hook turned affinity on", noAffinity, affinity.AffinityOn, []string{"a@127.0.0.1", "b@127.0.0.2"}, "ws://a/signaling"},
		{"relay off", noRelay, affinity.AffinityUnset, []string{"a@127.0.0.1", "b@127.0.0.2"}, ""},
		{"placement saw the session (threshold)", sessionSeen, affinity.AffinityUnset, []string{"a@127.0.0.1", "b@127.0.0.2"}, ""},
		{"creator disconnected", view, affinity.AffinityUnset, []string{"c@127.0.0.3", "b@127.0.0.2"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := req
			r.Affinity = tc.affinity
			d, ok := gatherOnCreator(&tc.view, r, tc.owners)
			got := ""
			if ok {
				got = d.SignalingURL
			}
			if got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}
