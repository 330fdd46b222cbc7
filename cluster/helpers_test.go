package cluster

import (
	"context"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/shoal-sfu/shoal/internal/testutil"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

// tnode is one node of a test cluster, restartable from its config.
type tnode struct {
	*Node
	cfg  Config
	ip   netip.Addr
	root testing.TB // owns the node's cleanup, whatever subtest restarts it
}

type tcluster struct {
	t     testing.TB
	net   *FaultNet
	nodes []*tnode
	port  int
}

func newTestCluster(t *testing.T) *tcluster {
	return &tcluster{t: t, net: NewFaultNet()}
}

// runCluster checks the test for leaked goroutines, then starts a cluster
// of k regular nodes; it returns them with a context for the test.
func runCluster(t *testing.T, k int) (*tcluster, []*tnode, context.Context) {
	t.Helper()
	testutil.CheckLeaks(t)
	c := newTestCluster(t)
	return c, c.regular(k), ctxT(t)
}

// newSolo returns a node with clustering off, not started, closed when
// the test ends.
func newSolo(t *testing.T, cfg Config) *Node {
	t.Helper()
	cfg.NodeName = "solo@10.0.0.1"
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// add creates and starts a node (regular unless temporary), not yet in a
// cluster.
func (c *tcluster) add(name string, temporary bool) *tnode {
	return c.addWith(name, temporary, nil)
}

// addWith is add with set, when not nil, changing the config first.
func (c *tcluster) addWith(name string, temporary bool, set func(*Config)) *tnode {
	t := c.t
	ip := testutil.LoopbackIP(t)
	if c.port == 0 {
		c.port = testutil.FreePort(t, ip)
	}
	cfg := DefaultConfig()
	cfg.NodeName = name + "@" + ip.String()
	cfg.Cluster = true
	cfg.ExternalSignalingURL = "wss://" + name + ".example/signaling"
	cfg.ExternalAPIURL = "https://" + name + ".example/api"
	cfg.ListenMinPort, cfg.ListenMaxPort = c.port, c.port+3
	cfg.Temporary = temporary
	cfg.MaxConnections = 100
	cfg.ClusterKey = testKey
	cfg.Version = "test"
	cfg.Timing = FastTiming()
	cfg.Faults = c.net
	cfg.Logger = testutil.LoggerLevel(t, levelFromEnv())
	if !temporary {
		cfg.DataDir = t.TempDir()
	}
	if set != nil {
		set(&cfg)
	}
	tn := &tnode{cfg: cfg, ip: ip, root: t}
	tn.start(t)
	c.nodes = append(c.nodes, tn)
	return tn
}

func (tn *tnode) start(t testing.TB) {
	t.Helper()
	root := t
	if tn.root != nil {
		root = tn.root
	}
	n, err := New(tn.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(testutil.Context(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	tn.Node = n
	root.Cleanup(func() { n.Close() })
}

// restart closes the node and starts a new one from the same config.
func (tn *tnode) restart(t testing.TB) {
	t.Helper()
	tn.Close()
	tn.start(t)
}

func (c *tcluster) names(nodes ...*tnode) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.self)
	}
	return out
}

func (c *tcluster) ips(nodes ...*tnode) []netip.Addr {
	var out []netip.Addr
	for _, n := range nodes {
		out = append(out, n.ip)
	}
	return out
}

// regular starts k regular nodes and initialises a cluster of them.
func (c *tcluster) regular(k int) []*tnode { return c.regularWith(k, nil) }

// regularWith is regular with set, when not nil, changing each node's
// config.
func (c *tcluster) regularWith(k int, set func(*Config)) []*tnode {
	var ns []*tnode
	for i := range k {
		ns = append(ns, c.addWith("n"+strconv.Itoa(i+1), false, set))
	}
	ctx := testutil.Context(c.t, 20*time.Second)
	if _, err := ns[0].InitCluster(ctx, c.names(ns...)); err != nil {
		c.t.Fatalf("init: %v", err)
	}
	for _, n := range ns {
		c.waitMajority(n, true, 10*time.Second)
	}
	return ns
}

func (c *tcluster) waitMajority(n *tnode, want bool, timeout time.Duration) {
	c.t.Helper()
	testutil.Eventually(c.t, func() bool { return n.Snapshot().InMajority == want }, timeout,
		"%s InMajority=%v", n.self, want)
}

// connected reports whether from sees node name connected.
func connected(from *tnode, name string) bool {
	v := from.Snapshot()
	i := v.NodeIndex(name)
	return i >= 0 && v.Nodes[i].Connected
}

func listed(from *tnode, name string) bool {
	v := from.Snapshot()
	return v.NodeIndex(name) >= 0
}

func ctxT(t testing.TB) context.Context { return testutil.Context(t, 15*time.Second) }

// benchCluster starts a 3-node fast cluster for a benchmark.
func benchCluster(b *testing.B, c *tcluster) []*tnode {
	c.t = b
	return c.regular(3)
}
