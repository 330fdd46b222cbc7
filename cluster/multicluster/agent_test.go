package multicluster

import (
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoal-sfu/shoal/internal/testutil"
)

var testKey = []byte("multicluster-key-0123456789abcde")

var fastTune = FastTune

type agentOpt func(*AgentConfig)

func startAgent(t *testing.T, cid, name string, opts ...agentOpt) *Agent {
	t.Helper()
	ip := testutil.LoopbackIP(t)
	cfg := AgentConfig{Service: "svc", ClusterID: cid, NodeName: name + "@" + ip.String(), Key: testKey,
		BindAddr: netip.AddrPortFrom(ip, 0), SyncInterval: time.Hour, Tune: fastTune,
		Logger: testutil.Logger(t)}
	for _, o := range opts {
		o(&cfg)
	}
	a, err := NewAgent(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(testutil.Context(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func seeds(as ...*Agent) agentOpt {
	return func(c *AgentConfig) {
		for _, a := range as {
			c.Seeds = append(c.Seeds, a.Addr())
		}
	}
}

func hasGateway(a *Agent, addr string, v uint64) bool {
	g, ok := a.Data().Gateways[addr]
	return ok && g.Version >= v
}

// TestAgentPush: a change reaches every member at once by the push (the
// background exchange is an hour away).
func TestAgentPush(t *testing.T) {
	testutil.CheckLeaks(t)
	a := startAgent(t, "jp", "a")
	b := startAgent(t, "jp", "b", seeds(a))
	c := startAgent(t, "eu", "c", seeds(a))
	testutil.Eventually(t, func() bool { return len(c.Members()) == 3 && len(b.Members()) == 3 }, 10*time.Second, "pool of 3")
	start := time.Now()
	a.SetSelf(true, "10.0.0.1:49030", []string{"room"})
	if _, err := c.SetConfiguration([]string{"jp", "eu"}, "two regions"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, func() bool {
		return hasGateway(b, a.Addr(), 1) && hasGateway(c, a.Addr(), 1) && a.Data().Config.Has("eu") && b.Data().Config.Has("jp")
	}, 5*time.Second, "the gateway entry and the configuration reach every agent")
	t.Logf("propagation by push: %v", time.Since(start))
	if got := b.Data().Gateways[a.Addr()]; got.Relay != "10.0.0.1:49030" || len(got.Channels) != 1 {
		t.Fatalf("b has %+v", got)
	}
	// Zones and clusters of members come from memberlist's metadata.
	for _, m := range a.Members() {
		if m.Name == c.cfg.NodeName && m.ClusterID != "eu" {
			t.Fatalf("member %+v: want cluster eu", m)
		}
	}
	// Marked inactive by its cluster, the entry follows everywhere.
	b.MarkInactive(a.Addr())
	testutil.Eventually(t, func() bool { return c.Data().Gateways[a.Addr()].Status == Inactive }, 5*time.Second, "inactive everywhere")
}

// TestAgentRepairsLostPush: with every push dropped, a change still
// reaches the other agents by the background exchange. Without it (an
// interval of an hour) the change never arrives.
func TestAgentRepairsLostPush(t *testing.T) {
	testutil.CheckLeaks(t)
	var drop atomic.Bool
	drop.Store(true)
	opt := func(c *AgentConfig) {
		c.SyncInterval = 300 * time.Millisecond
		c.DropPush = func(string) bool { return drop.Load() }
	}
	a := startAgent(t, "jp", "a", opt)
	b := startAgent(t, "jp", "b", opt, seeds(a))
	c := startAgent(t, "eu", "c", opt, seeds(a))
	testutil.Eventually(t, func() bool { return len(c.Members()) == 3 }, 10*time.Second, "pool of 3")
	start := time.Now()
	a.SetSelf(true, "10.0.0.1:49030", nil)
	testutil.Eventually(t, func() bool { return hasGateway(b, a.Addr(), 1) && hasGateway(c, a.Addr(), 1) },
		15*time.Second, "the change dropped on push is repaired by the background exchange")
	t.Logf("repaired by the background exchange in %v (interval 300 ms)", time.Since(start))
}

// TestAgentBootstrapFromChannel: a node that knows no other node finds the
// community through a gossip channel, even when every gateway it knew has
// changed: the channel lists the current ones. One channel down does not
// stop it.
func TestAgentBootstrapFromChannel(t *testing.T) {
	testutil.CheckLeaks(t)
	ch, down := NewMemoryChannel("mem1"), NewMemoryChannel("mem2")
	down.SetDown(true)
	withCh := func(c *AgentConfig) { c.Channels = []GossipChannel{down, ch} }
	a := startAgent(t, "eu", "a", withCh)
	a.SetSelf(true, "10.0.1.1:49030", nil)
	testutil.Eventually(t, func() bool { return len(ch.Read().Gateways) == 1 }, 5*time.Second, "the gateway entry is pushed to the channel")
	// A new node of another cluster, no seeds.
	b := startAgent(t, "jp", "b", withCh)
	if !hasGateway(b, a.Addr(), 1) {
		t.Fatalf("b did not read a's entry from the channel at start: %+v", b.Data())
	}
	testutil.Eventually(t, func() bool { return len(b.Members()) == 2 }, 10*time.Second, "b joined a through the channel's entry")
}

// TestAgentOtherServiceApart: an agent of another service with the same
// key and a seed pointing at this one never joins.
func TestAgentOtherServiceApart(t *testing.T) {
	testutil.CheckLeaks(t)
	a := startAgent(t, "jp", "a")
	o := startAgent(t, "jp", "o", seeds(a), func(c *AgentConfig) { c.Service = "other" })
	time.Sleep(500 * time.Millisecond)
	if len(a.Members()) != 1 || len(o.Members()) != 1 {
		t.Fatalf("agents of two services see each other: %v / %v", a.Members(), o.Members())
	}
}

func TestAgentConfigErrors(t *testing.T) {
	for _, cfg := range []AgentConfig{
		{ClusterID: "a,b", NodeName: "x", Key: testKey, BindAddr: netip.MustParseAddrPort("127.0.0.1:0")},
		{ClusterID: "a", NodeName: "x", Key: []byte("short"), BindAddr: netip.MustParseAddrPort("127.0.0.1:0")},
		{ClusterID: "a", NodeName: "", Key: testKey, BindAddr: netip.MustParseAddrPort("127.0.0.1:0")},
		{ClusterID: "a", NodeName: "x", Key: testKey},
	} {
		if _, err := NewAgent(cfg); err == nil {
			t.Errorf("NewAgent(%+v) accepted", cfg)
		}
	}
}

// TestAgentRejoinsMissingGateway: a node that has other live members but
// knows an active gateway that is not one (the far side of a partition,
// which memberlist dropped) joins it at the next exchange. Joining only
// when alone would never reach it.
func TestAgentRejoinsMissingGateway(t *testing.T) {
	testutil.CheckLeaks(t)
	a := startAgent(t, "jp", "a")
	a.SetSelf(true, "10.0.0.1:49030", nil)
	d := startAgent(t, "eu", "d")
	c := startAgent(t, "eu", "c", seeds(d))
	testutil.Eventually(t, func() bool { return len(c.Members()) == 2 }, 10*time.Second, "c and d")
	c.merge(a.Data()) // as if learnt before a partition
	c.SyncOnce()
	testutil.Eventually(t, func() bool { return len(c.Members()) == 3 }, 10*time.Second, "c joined the missing gateway a")
}
