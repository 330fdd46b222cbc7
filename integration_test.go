package shoal_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"

	shoal "github.com/shoal-sfu/shoal"
	"github.com/shoal-sfu/shoal/affinity"
	"github.com/shoal-sfu/shoal/cluster"
	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/sfu"
	"github.com/shoal-sfu/shoal/signaling"
	"github.com/shoal-sfu/shoal/signaling/client"
	"github.com/shoal-sfu/shoal/signaling/wire"
)

// itNode is one node of the integration cluster: a cluster.Node, an SFU, a
// signaling server and the admin API on one HTTP listener.
type itNode struct {
	name    string
	ip      netip.Addr
	cluster *cluster.Node
	sfu     *sfu.SFU
	sig     *signaling.Server
	sigURL  string
	apiURL  string
}

// authHook is the webhook of the test cluster: it allows everyone and
// answers cluster_affinity as the client's metadata asks.
func authHook(t testing.TB) string {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req signaling.AuthRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			w.WriteHeader(400)
			return
		}
		var md struct {
			Affinity *bool `json:"affinity"`
		}
		_ = json.Unmarshal(req.Metadata, &md)
		res := map[string]any{"allowed": true}
		if md.Affinity != nil {
			res["cluster_affinity"] = *md.Affinity
		}
		json.NewEncoder(w).Encode(res)
	}))
	t.Cleanup(hs.Close)
	return hs.URL
}

// startNodes starts one node per capacity, named "a", "b", .. in that
// order, on one port range, sharing a FaultNet (returned) and the auth
// hook, logging at level. The cluster is not initialised.
func startNodes(t *testing.T, level slog.Level, capacities ...int) ([]*itNode, *cluster.FaultNet) {
	t.Helper()
	logger := testutil.LoggerLevel(t, level)
	hook := authHook(t)
	faults := cluster.NewFaultNet()
	port := testutil.FreePort(t, testutil.LoopbackIP(t))
	var nodes []*itNode
	for i, capacity := range capacities {
		nodes = append(nodes, startNode(t, string(rune('a'+i)), port, capacity, faults, hook, logger))
	}
	return nodes, faults
}

func startNode(t *testing.T, short string, port, capacity int, faults *cluster.FaultNet, hook string, logger *slog.Logger) *itNode {
	t.Helper()
	ip := testutil.LoopbackIP(t)
	ln, err := net.Listen("tcp", netip.AddrPortFrom(ip, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	n := &itNode{name: short + "@" + ip.String(), ip: ip, sigURL: "ws://" + ln.Addr().String() + "/signaling", apiURL: base + "/api/"}
	cfg := cluster.DefaultConfig()
	cfg.NodeName, cfg.Cluster = n.name, true
	cfg.ExternalSignalingURL, cfg.ExternalAPIURL = n.sigURL, n.apiURL
	cfg.ListenMinPort, cfg.ListenMaxPort = port, port+3
	cfg.MaxConnections = capacity
	cfg.ClusterKey = []byte("0123456789abcdef0123456789abcdef")
	cfg.Timing = cluster.FastTiming()
	cfg.Faults = faults
	cfg.Logger = logger // the cluster adds node=<NodeName>
	if n.cluster, err = cluster.New(cfg); err != nil {
		t.Fatal(err)
	}
	if err := n.cluster.Start(testutil.Context(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	scfg := sfu.LocalConfig(logger.With("node", n.name))
	if n.sfu, err = sfu.New(scfg); err != nil {
		t.Fatal(err)
	}
	n.sig, err = signaling.New(signaling.Config{Logger: logger.With("node", n.name), NodeName: n.name,
		Authenticator: &signaling.Webhook{URL: hook}, Media: shoal.NewMedia(n.sfu), Cluster: n.cluster,
		PingInterval: time.Second, PongTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	admin, err := signaling.NewAdminHandler(n.cluster, signaling.AdminConfig{NodeName: n.name, Channels: n.sig, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/signaling", n.sig)
	mux.Handle("/api/", http.StripPrefix("/api", admin))
	hs := &http.Server{Handler: mux}
	go hs.Serve(ln)
	t.Cleanup(func() {
		n.sig.Close()
		hs.Close()
		n.sfu.Close()
		n.cluster.Close()
	})
	return n
}

// notes collects notify messages.
type notes struct {
	mu  sync.Mutex
	got []client.Notify
}

func (n *notes) add(x client.Notify) {
	n.mu.Lock()
	n.got = append(n.got, x)
	n.mu.Unlock()
}

func (n *notes) has(event, id string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, x := range n.got {
		if x.EventType == event && x.ConnectionID == id {
			return true
		}
	}
	return false
}

func connect(t *testing.T, api func(*client.Config), url, channel string, metadata string) (*client.Conn, *notes, error) {
	t.Helper()
	ns := &notes{}
	cfg := client.Config{URLs: []string{url}, ChannelID: channel, Role: wire.RoleSendrecv, OnNotify: ns.add,
		Logger: testutil.Logger(t)}
	api(&cfg)
	if metadata != "" {
		cfg.Metadata = json.RawMessage(metadata)
	}
	c, err := client.Connect(testutil.Context(t, 20*time.Second), cfg)
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, ns, err
}

// TestCluster3 runs three real nodes (cluster, SFU, signaling, admin API)
// in one process and connects real Go clients to them.
func TestCluster3(t *testing.T) {
	testutil.CheckLeaks(t)
	nodes, faults := startNodes(t, slog.LevelWarn, 1, 100, 100)
	a, b, c := nodes[0], nodes[1], nodes[2]
	ctx := testutil.Context(t, 30*time.Second)
	if _, err := a.cluster.InitCluster(ctx, []string{a.name, b.name, c.name}); err != nil {
		t.Fatalf("InitCluster: %v", err)
	}
	for _, n := range nodes {
		testutil.Eventually(t, func() bool {
			v := n.cluster.Snapshot()
			if !v.InMajority {
				return false
			}
			for _, nd := range v.Nodes {
				if !nd.Connected || nd.Capacity <= 0 || nd.SignalingURL == "" {
					return false
				}
			}
			return len(v.Nodes) == 3
		}, 15*time.Second, "%s sees the cluster", n.name)
	}
	api := localAPI(t)
	// sees waits until every node sees node's load and the channel's owners.
	sees := func(node *itNode, conns int, channel string, owner *itNode) {
		t.Helper()
		for _, n := range nodes {
			testutil.Eventually(t, func() bool {
				v := n.cluster.Snapshot()
				i := v.NodeIndex(node.name)
				if i < 0 || v.Nodes[i].Connections != conns {
					return false
				}
				if owner == nil {
					return true
				}
				s := v.Sessions[channel]
				return len(s.Owners) > 0 && v.Nodes[s.Owners[0].Node].Name == owner.name
			}, 10*time.Second, "%s sees %s with %d connections", n.name, node.name, conns)
		}
	}

	// served connects a client of channel at node from and checks that it
	// is served at want after redirects redirects (any number if -1).
	served := func(what string, from *itNode, channel, metadata string, want *itNode, redirects int) (*client.Conn, *notes) {
		t.Helper()
		cl, ns, err := connect(t, api, from.sigURL, channel, metadata)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if cl.URL != want.sigURL || (redirects >= 0 && cl.Redirects != redirects) {
			t.Errorf("%s served at %s after %d redirects, want %s after %d", what, cl.URL, cl.Redirects, want.name, redirects)
		}
		return cl, ns
	}

	// 1. The first client of a quiet cluster is served where it lands; a
	// (capacity 1) is then full.
	c1, n1 := served("client 1", a, "x", "", a, 0)
	testutil.Eventually(t, func() bool { return n1.has("connection.created", c1.ConnectionID) }, 5*time.Second, "own connection.created")
	sees(a, 1, "x", a)

	// 2. A full node redirects a new session to the most free node (b and c
	// are tied; the lower name wins).
	c2, _ := served("client 2", a, "room", "", b, 1)
	sees(b, 1, "room", b)

	// 3. A new session contacted at b goes to the most free node, c.
	c3, _ := served("client 3", b, "w", "", c, 1)
	sees(c, 1, "w", c)

	// 4. An existing session is gathered on its node.
	c4, _ := served("client 4 (existing session)", c, "room", "", b, -1)

	// 5. cluster_affinity false from the webhook keeps it where it landed.
	c5, _ := served("client 5 (affinity off)", c, "room", `{"affinity":false}`, c, 0)

	// 6. API: a channel operation sent to a node not holding the channel
	// answers 307 to the responsible node, and following it works.
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	status, loc, _ := apiPost(t, noFollow, a.apiURL, signaling.TargetDisconnectChannel, `{"channel_id":"w"}`)
	if status != http.StatusTemporaryRedirect || loc != c.apiURL {
		t.Errorf("API on a for channel w: %d Location %q, want 307 %s", status, loc, c.apiURL)
	}
	status, _, body := apiPost(t, http.DefaultClient, a.apiURL, signaling.TargetDisconnectChannel, `{"channel_id":"w"}`)
	var dc signaling.DisconnectChannelResult
	if err := json.Unmarshal([]byte(body), &dc); status != 200 || err != nil || dc.ChannelID != "w" || dc.Disconnected < 1 {
		t.Errorf("followed 307: %d %s", status, body)
	}
	select {
	case <-c3.Done():
	case <-time.After(10 * time.Second):
		t.Error("client 3 still connected after DisconnectChannel")
	}
	status, _, body = apiPost(t, http.DefaultClient, b.apiURL, signaling.TargetListClusterNodes, ``)
	var listed []cluster.NodeStatus
	if status != 200 || json.Unmarshal([]byte(body), &listed) != nil || len(listed) != 3 {
		t.Errorf("ListClusterNodes: %d %s", status, body)
	}

	// 7. A node cut off from the majority refuses.
	faults.Partition([]netip.Addr{a.ip, b.ip}, []netip.Addr{c.ip})
	testutil.Eventually(t, func() bool { return !c.cluster.Snapshot().InMajority }, 15*time.Second, "c leaves the majority")
	_, _, err := connect(t, api, c.sigURL, "room", "")
	var ce *client.CloseError
	if !errors.As(err, &ce) || ce.Code != wire.CloseRefused || ce.Reason != "NOT-IN-MAJORITY" {
		t.Errorf("minority node: got %v, want close %d NOT-IN-MAJORITY", err, wire.CloseRefused)
	}
	faults.Heal()
	for _, cl := range []*client.Conn{c1, c2, c4, c5} {
		cl.Close()
	}
}

func apiPost(t *testing.T, hc *http.Client, url, target, body string) (int, string, string) {
	t.Helper()
	status, loc, resp, err := testutil.AdminPost(testutil.Context(t, 10*time.Second), hc, url, target, body)
	if err != nil {
		t.Fatal(err)
	}
	return status, loc, resp
}

// TestMediaPath checks the sfu adapter end to end on one node: offer,
// answer, candidates, notify, a re-offer when a second client joins, and
// connection.destroyed with counts when it leaves.
func TestMediaPath(t *testing.T) {
	testutil.CheckLeaks(t)
	logger := testutil.LoggerLevel(t, slog.LevelWarn)
	s, err := sfu.New(sfu.LocalConfig(logger))
	if err != nil {
		t.Fatal(err)
	}
	sig, err := signaling.New(signaling.Config{Logger: logger, Authenticator: signaling.AllowAll, Media: shoal.NewMedia(s),
		PingInterval: 100 * time.Millisecond, PongTimeout: 400 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(sig)
	t.Cleanup(func() { sig.Close(); hs.Close(); s.Close() })
	url := "ws" + hs.URL[len("http"):]
	api := localAPI(t)
	c1, n1, err := connect(t, api, url, "room", `{"k":1}`)
	if err != nil {
		t.Fatal(err)
	}
	var offer map[string]any
	json.Unmarshal(c1.Offer, &offer)
	if dcs, _ := offer["data_channels"].([]any); len(dcs) < 3 {
		t.Errorf("offer data_channels %v", offer["data_channels"])
	}
	c2, _, err := connect(t, api, url, "room", "")
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, func() bool { return n1.has("connection.created", c2.ConnectionID) }, 5*time.Second, "c1 hears of c2")
	if got := sig.Connections("room"); len(got) != 2 {
		t.Errorf("Connections: %d", len(got))
	}
	c2.Close()
	testutil.Eventually(t, func() bool { return n1.has("connection.destroyed", c2.ConnectionID) }, 5*time.Second, "c1 hears c2 leave")
	n1.mu.Lock()
	var last map[string]any
	json.Unmarshal(n1.got[len(n1.got)-1].Raw, &last)
	n1.mu.Unlock()
	if last["channel_connections"] != 1.0 {
		t.Errorf("connection.destroyed counts: %v", last)
	}
	// The client answers pings: after many ping periods it is still up.
	time.Sleep(time.Second)
	select {
	case <-c1.Done():
		t.Fatalf("client 1 dropped: %v", c1.Err())
	default:
	}
	c1.Close()
	var ce *client.CloseError
	if err := c1.Err(); !errors.As(err, &ce) || ce.Code != 1000 {
		t.Errorf("after Close: %v, want the server's close 1000", err)
	}
	testutil.Eventually(t, func() bool { return s.Counts().Total == 0 }, 5*time.Second, "sfu empty: %+v", s.Counts())
}

// localAPI returns a setter of a loopback-only client API (this package
// may not import pion itself).
func localAPI(t testing.TB) func(*client.Config) {
	api, err := client.LocalAPI(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return func(c *client.Config) { c.API = api }
}

// BenchmarkConnectSFU measures whole connects on real nodes: the Go client
// opens signaling, connects, answers, and the peer connection reaches
// "connected" (ICE and DTLS on loopback); then it disconnects. Sub-benchmarks:
// in-process auth, webhook auth, and a connect redirected once (two nodes
// sharing a MemCluster) against one served where it lands.
func BenchmarkConnectSFU(b *testing.B) {
	logger := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError}))
	api := localAPI(b)
	node := func(b *testing.B, auth signaling.Authenticator, name string, cl signaling.Cluster) (*signaling.Server, string) {
		s, err := sfu.New(sfu.LocalConfig(logger))
		if err != nil {
			b.Fatal(err)
		}
		sig, err := signaling.New(signaling.Config{Logger: logger, NodeName: name, Cluster: cl, Authenticator: auth, Media: shoal.NewMedia(s)})
		if err != nil {
			b.Fatal(err)
		}
		hs := httptest.NewServer(sig)
		b.Cleanup(func() { sig.Close(); hs.Close(); s.Close() })
		return sig, "ws" + hs.URL[len("http"):]
	}
	run := func(b *testing.B, url string) {
		b.ReportAllocs()
		start := time.Now()
		for b.Loop() {
			cfg := client.Config{URLs: []string{url}, ChannelID: "bench", Role: wire.RoleSendrecv, Logger: logger}
			api(&cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			c, err := client.Connect(ctx, cfg)
			cancel()
			if err != nil {
				b.Fatal(err)
			}
			c.Close()
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "connects/s")
	}
	b.Run("inprocess-auth", func(b *testing.B) {
		_, url := node(b, signaling.AllowAll, "", nil)
		run(b, url)
	})
	b.Run("webhook-auth", func(b *testing.B) {
		_, url := node(b, &signaling.Webhook{URL: authHook(b)}, "", nil)
		run(b, url)
	})
	mem := signaling.NewMemCluster(affinity.DefaultSettings(),
		affinity.Node{Name: "a@127.0.0.1", Connected: true, Capacity: 1 << 20},
		affinity.Node{Name: "b@127.0.0.1", Connected: true, Capacity: 1 << 20})
	urls := map[string]string{}
	for _, n := range []string{"a@127.0.0.1", "b@127.0.0.1"} {
		_, urls[n] = node(b, signaling.AllowAll, n, mem.Node(n))
		mem.UpdateNode(n, func(nd *affinity.Node) { nd.SignalingURL = urls[n] })
	}
	mem.Node("a@127.0.0.1").PublishLoad(1000, nil) // a looks busy: new sessions go to b
	b.Run("cluster-direct", func(b *testing.B) { run(b, urls["b@127.0.0.1"]) })
	b.Run("cluster-redirected", func(b *testing.B) { run(b, urls["a@127.0.0.1"]) })
}
