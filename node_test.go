package shoal_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	shoal "github.com/shoal-sfu/shoal"
	"github.com/shoal-sfu/shoal/cluster"
	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/relay"
	"github.com/shoal-sfu/shoal/sfu"
	"github.com/shoal-sfu/shoal/signaling"
	"github.com/shoal-sfu/shoal/signaling/client"
	"github.com/shoal-sfu/shoal/signaling/wire"
)

func TestNodeConfigErrors(t *testing.T) {
	ok := shoal.DefaultConfig()
	ok.NodeName = "a@127.0.0.1"
	ok.Authenticator = signaling.AllowAll
	for _, tc := range []struct {
		name string
		edit func(*shoal.Config)
		want string
	}{
		{"no authenticator", func(c *shoal.Config) { c.Authenticator = nil }, "Authenticator is required"},
		{"host without a dot", func(c *shoal.Config) { c.NodeName = "a@localhost" }, "localhost"},
		{"cluster without key", func(c *shoal.Config) {
			c.Cluster = true
			c.ExternalSignalingURL, c.ExternalAPIURL = "ws://127.0.0.1/signaling", "http://127.0.0.1/api"
		}, "key"},
		{"relay port", func(c *shoal.Config) { c.RelayPort = 70000 }, "RelayPort"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok
			tc.edit(&cfg)
			_, err := shoal.New(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v; want an error mentioning %q", err, tc.want)
			}
		})
	}
	n, err := shoal.New(ok)
	if err != nil {
		t.Fatalf("New with a valid config: %v", err)
	}
	n.Close()
}

// testSoloConfig is the Config of a node with cluster off: every connect
// allowed, an SFU on loopback, logging at level.
func testSoloConfig(t *testing.T, level slog.Level) shoal.Config {
	cfg := shoal.DefaultConfig()
	cfg.Authenticator = signaling.AllowAll
	cfg.SFU = sfu.LocalConfig(nil)
	cfg.Logger = testutil.LoggerLevel(t, level)
	return cfg
}

// testClusterConfig is the Config of a node of a test cluster: cluster on
// with the tests' key, capacity 10, node-to-node ports port..port+3, fast
// timing and relay links, every connect allowed, an SFU on loopback.
func testClusterConfig(name string, port int) shoal.Config {
	cfg := shoal.DefaultConfig()
	cfg.NodeName = name
	cfg.Cluster = true
	cfg.MaxConnections = 10
	cfg.ClusterKey = e2eKey
	cfg.ListenMinPort, cfg.ListenMaxPort = port, port+3
	cfg.Timing = cluster.FastTiming()
	cfg.RelayLink = relay.FastConfig(relay.Config{})
	cfg.Authenticator = signaling.AllowAll
	cfg.SFU = sfu.LocalConfig(nil)
	return cfg
}

// ntStartThree starts three clustered nodes named <prefix>1@ip..
// <prefix>3@ip on distinct loopback addresses (returned as ips), without
// default affinity and logging errors only; set, if not nil, changes each
// Config first. The cluster is not initialised.
func ntStartThree(t *testing.T, prefix string, set func(*shoal.Config)) (nodes []*ntNode, names []string, ips []netip.Addr) {
	t.Helper()
	log := testutil.LoggerLevel(t, slog.LevelError)
	ips = testutil.LoopbackIPs(t, 3)
	port := testutil.FreePort(t, ips[0])
	for i, ip := range ips {
		cfg := testClusterConfig(fmt.Sprintf("%s%d@%v", prefix, i+1, ip), port)
		cfg.DefaultAffinity = false
		cfg.Logger = log // the node adds node=<NodeName>
		if set != nil {
			set(&cfg)
		}
		nodes = append(nodes, ntStart(t, cfg))
		names = append(names, cfg.NodeName)
	}
	return nodes, names, ips
}

// ntNode is a node of these tests, with its signaling on an HTTP server.
type ntNode struct {
	*shoal.Node
	url string
}

func ntStart(t *testing.T, cfg shoal.Config) *ntNode {
	t.Helper()
	ip := testutil.LoopbackIP(t)
	if cfg.NodeName == "" {
		cfg.NodeName = "solo@" + ip.String()
	}
	ln, err := net.Listen("tcp", netip.AddrPortFrom(ip, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	url := "ws://" + ln.Addr().String() + "/signaling"
	if cfg.Cluster {
		cfg.ExternalSignalingURL, cfg.ExternalAPIURL = url, "http://"+ln.Addr().String()+"/api"
	}
	return &ntNode{Node: serveNode(t, cfg, ln), url: url}
}

// serveNode creates a node from cfg, serves its signaling on ln, starts it
// and stops both when the test ends.
func serveNode(t *testing.T, cfg shoal.Config, ln net.Listener) *shoal.Node {
	t.Helper()
	n, err := shoal.New(cfg)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	srv := &http.Server{Handler: n.SignalingHandler()}
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()
	t.Cleanup(func() {
		n.Close()
		srv.Close()
		<-done
	})
	if err := n.Start(testutil.Context(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	return n
}

func ntClient(t *testing.T, url, channel string) (*client.Conn, error) {
	t.Helper()
	api, err := client.LocalAPI(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Connect(testutil.Context(t, 20*time.Second), client.Config{
		URLs: []string{url}, ChannelID: channel, Role: wire.RoleRecvonly, API: api,
		Logger: testutil.LoggerLevel(t, slog.LevelWarn)})
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

// TestNodeSingle: with cluster off a Node is a plain SFU that serves at once.
func TestNodeSingle(t *testing.T) {
	testutil.CheckLeaks(t)
	n := ntStart(t, testSoloConfig(t, slog.LevelWarn))
	if !n.Ready() {
		t.Fatal("a node with cluster off is not ready")
	}
	if n.Relay() != nil {
		t.Fatal("a node with cluster off has a relay")
	}
	c, err := ntClient(t, n.url, "solo-room")
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	if got := n.SFU().Counts().Channels["solo-room"]; got != 1 {
		t.Fatalf("SFU serves %d connections of solo-room, want 1", got)
	}
	c.Close()
	testutil.Eventually(t, func() bool { return n.SFU().Counts().Total == 0 }, 5*time.Second, "connection gone")
	if err := n.Err(); err != nil {
		t.Fatalf("Err of a running node: %v", err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case <-n.Done():
	default:
		t.Fatal("Done still open after Close")
	}
	if err := n.Err(); err != shoal.ErrNodeClosed {
		t.Fatalf("Err after Close: %v, want ErrNodeClosed", err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := n.Start(testutil.Context(t, time.Second)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Start after Close: %v, want an error wrapping net.ErrClosed", err)
	}
}

// TestNodeClusterWiring checks the glue of three in-process nodes: a channel
// with clients on two nodes is relayed between exactly those two, the relay
// ends with the session, and a node cut off from the majority drops its
// clients and refuses new ones until the partition heals.
func TestNodeClusterWiring(t *testing.T) {
	testutil.CheckLeaks(t)
	faults := cluster.NewFaultNet()
	nodes, names, ips := ntStartThree(t, "w", func(cfg *shoal.Config) { cfg.Faults = faults })
	if nodes[0].Ready() {
		t.Fatal("a clustered node is ready before InitCluster")
	}
	if _, err := ntClient(t, nodes[0].url, "early"); err == nil {
		t.Fatal("a node served a client before InitCluster")
	}
	if _, err := nodes[0].InitCluster(testutil.Context(t, 20*time.Second), names); err != nil {
		t.Fatalf("InitCluster: %v", err)
	}
	for _, n := range nodes {
		testutil.Eventually(t, n.Ready, 15*time.Second, "%s ready", n.Name())
	}

	c1, err := ntClient(t, nodes[0].url, "wired")
	if err != nil {
		t.Fatalf("client on %s: %v", names[0], err)
	}
	c2, err := ntClient(t, nodes[1].url, "wired")
	if err != nil {
		t.Fatalf("client on %s: %v", names[1], err)
	}
	relayedWith := func(n *ntNode) []string {
		for _, c := range n.Relay().Stats().Channels {
			if c.Channel == "wired" {
				return c.Peers
			}
		}
		return nil
	}
	testutil.Eventually(t, func() bool {
		return slices.Equal(relayedWith(nodes[0]), names[1:2]) && slices.Equal(relayedWith(nodes[1]), names[0:1])
	}, 10*time.Second, "wired relayed between %s and %s: %v / %v / %v", names[0], names[1],
		relayedWith(nodes[0]), relayedWith(nodes[1]), relayedWith(nodes[2]))
	if p := relayedWith(nodes[2]); p != nil {
		t.Errorf("%s relays wired with %v; it has no client of it", names[2], p)
	}
	c1.Close()
	c2.Close()
	testutil.Eventually(t, func() bool { return relayedWith(nodes[0]) == nil && relayedWith(nodes[1]) == nil },
		15*time.Second, "relay of wired ended with its session")

	// Majority: node 3 is cut off from the other two.
	c3, err := ntClient(t, nodes[2].url, "island")
	if err != nil {
		t.Fatalf("client on %s: %v", names[2], err)
	}
	faults.Partition(ips[:2], ips[2:])
	select {
	case <-c3.Done():
	case <-time.After(15 * time.Second):
		t.Fatal("the client of a node outside the majority was not disconnected")
	}
	var ce *client.CloseError
	if err := c3.Err(); !errors.As(err, &ce) || ce.Code != wire.CloseRefused {
		t.Errorf("client of the minority node ended with %v; want close %d", err, wire.CloseRefused)
	}
	if _, err := ntClient(t, nodes[2].url, "island"); !errors.As(err, &ce) || ce.Code != wire.CloseRefused {
		t.Errorf("connect to the minority node: %v; want refused with %d", err, wire.CloseRefused)
	}
	if _, err := ntClient(t, nodes[0].url, "island"); err != nil {
		t.Errorf("the majority does not serve: %v", err)
	}
	faults.Heal()
	testutil.Eventually(t, nodes[2].Ready, 15*time.Second, "%s back in the majority", names[2])
	if _, err := ntClient(t, nodes[2].url, "back"); err != nil {
		t.Errorf("connect after the partition healed: %v", err)
	}
}

// TestNodePartStopsAfterStart: a part that stops on its own after Start (here
// the relay, whose TCP listener fails under it) is reported: logged at
// Error, Done closes, Err names it, and Close returns it.
func TestNodePartStopsAfterStart(t *testing.T) {
	testutil.CheckLeaks(t)
	logger, logs := testutil.BufferLogger(slog.LevelWarn)
	ip := testutil.LoopbackIP(t)
	port := testutil.FreePort(t, ip)
	bn := &breakableNet{}
	cfg := testClusterConfig("p1@"+ip.String(), port)
	cfg.RelayLink.Net = bn
	cfg.Logger = logger
	n := ntStart(t, cfg)
	select {
	case <-n.Done():
		t.Fatalf("Done closed with every part running: %v", n.Err())
	case <-time.After(200 * time.Millisecond):
	}
	if err := n.Err(); err != nil {
		t.Fatalf("Err with every part running: %v", err)
	}

	bn.breakListener()
	select {
	case <-n.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the relay's listener failed, and Done did not close")
	}
	err := n.Err()
	if err == nil || errors.Is(err, shoal.ErrNodeClosed) || !strings.Contains(err.Error(), "relay") {
		t.Fatalf("Err = %v; want the relay's failure", err)
	}
	if m := logs.Missing("level=ERROR", "relay"); m != nil {
		t.Errorf("the failure was not logged at Error naming the relay (no %q); logs:\n%s", m, logs)
	}
	if cerr := n.Close(); !errors.Is(cerr, err) {
		t.Errorf("Close = %v; want it to return %v", cerr, err)
	}
	if got := n.Err(); got != err {
		t.Errorf("Err after Close = %v; want still %v", got, err)
	}
}

// breakableNet is the host's network for a relay (relay.Network); a test
// closes the relay's TCP listener under it with breakListener.
type breakableNet struct {
	mu sync.Mutex
	ln net.Listener
}

func (b *breakableNet) ListenUDP(a netip.AddrPort) (net.PacketConn, error) {
	return net.ListenUDP("udp", net.UDPAddrFromAddrPort(a))
}

func (b *breakableNet) ListenTCP(a netip.AddrPort) (net.Listener, error) {
	ln, err := net.Listen("tcp", a.String())
	b.mu.Lock()
	b.ln = ln
	b.mu.Unlock()
	return ln, err
}

func (b *breakableNet) DialTCP(ctx context.Context, laddr, raddr netip.AddrPort) (net.Conn, error) {
	var d net.Dialer
	if laddr.IsValid() {
		d.LocalAddr = net.TCPAddrFromAddrPort(laddr)
	}
	return d.DialContext(ctx, "tcp", raddr.String())
}

func (b *breakableNet) breakListener() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ln.Close()
}
