package cluster

import (
	"errors"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/shoal-sfu/shoal/affinity"
	"github.com/shoal-sfu/shoal/internal/testutil"
)

func TestFiveNodesPartitionRegisterPurgeRestart(t *testing.T) {
	c, ns, ctx := runCluster(t, 5)
	var minorityEvents atomic.Int32
	cancel := ns[0].Subscribe(func(e Event) {
		if e.Kind == EventMajority && !e.InMajority {
			minorityEvents.Add(1)
		}
	})
	defer cancel()

	t.Run("2|3 partition", func(t *testing.T) {
		two, three := ns[:2], ns[2:]
		c.net.Partition(c.ips(two...), c.ips(three...))
		for _, n := range two {
			c.waitMajority(n, false, 10*time.Second)
		}
		for _, n := range three {
			if !n.Snapshot().InMajority {
				t.Fatalf("%s on the three-node side lost the majority", n.self)
			}
		}
		testutil.Eventually(t, func() bool { return minorityEvents.Load() > 0 }, 2*time.Second, "minority event")
		// The three-node side serves.
		testutil.Eventually(t, func() bool {
			_, err := three[0].ClaimChannel(ctx, "p")
			return err == nil
		}, 10*time.Second, "claim on the majority side")
		three[0].ReleaseChannel(ctx, "p")

		// Register through a minority contact is refused.
		newcomer := c.add("late", false)
		_, err := newcomer.RegisterClusterNode(ctx, two[0].self)
		if !errors.Is(err, ErrNoMajority) {
			t.Fatalf("register via minority: %v", err)
		}
		newcomer.Close()

		c.net.Heal()
		for _, n := range ns {
			c.waitMajority(n, true, 10*time.Second)
		}
	})

	t.Run("purge", func(t *testing.T) {
		victim := ns[4]
		if err := ns[0].PurgeClusterNode(ctx, victim.self); !errors.Is(err, ErrNodeAlive) {
			t.Fatalf("purge of a live node: %v", err)
		}
		if err := ns[0].PurgeClusterNode(ctx, "nobody@10.9.9.9"); !errors.Is(err, ErrUnknownNode) {
			t.Fatalf("purge of an unknown node: %v", err)
		}
		victim.Close()
		for _, n := range ns[:4] {
			testutil.Eventually(t, func() bool { return !connected(n, victim.self) }, 10*time.Second, "%s sees %s down", n.self, victim.self)
		}
		if !listed(ns[1], victim.self) {
			t.Fatal("a stopped node must stay listed")
		}
		if err := ns[1].PurgeClusterNode(ctx, victim.self); err != nil {
			t.Fatal(err)
		}
		for _, n := range ns[:4] {
			testutil.Eventually(t, func() bool { return !listed(n, victim.self) }, 5*time.Second, "%s forgot %s", n.self, victim.self)
			c.waitMajority(n, true, time.Second)
		}
	})

	t.Run("restart rejoins", func(t *testing.T) {
		n := ns[3]
		n.Close()
		testutil.Eventually(t, func() bool { return !connected(ns[0], n.self) }, 10*time.Second, "down")
		n.start(t)
		c.waitMajority(n, true, 15*time.Second)
		testutil.Eventually(t, func() bool { return connected(ns[0], n.self) }, 10*time.Second, "back")
	})

	t.Run("register", func(t *testing.T) {
		// The restart above may have moved the leadership: registering is
		// the step under test, so start it once the contact knows a leader.
		testutil.Eventually(t, func() bool { addr, _ := ns[2].rft().LeaderWithID(); return addr != "" }, 15*time.Second, "%s knows a Raft leader", ns[2].self)
		late := c.add("n6", false)
		nodes, err := late.RegisterClusterNode(ctx, ns[2].self)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(nodes, late.self) || len(nodes) != 5 {
			t.Fatalf("register answered %v", nodes)
		}
		for _, n := range ns[:4] {
			testutil.Eventually(t, func() bool { return connected(n, late.self) }, 5*time.Second, "%s sees the newcomer", n.self)
		}
		if _, err := late.RegisterClusterNode(ctx, ns[2].self); !errors.Is(err, ErrAlreadyInitialized) {
			t.Fatalf("second register: %v", err)
		}
	})
}

func TestTemporaryNodes(t *testing.T) {
	c, ns, ctx := runCluster(t, 3)
	tmp := c.add("tmp", true)

	if _, err := tmp.InitCluster(ctx, []string{tmp.self}); !errors.Is(err, ErrTemporaryNode) {
		t.Fatalf("init on a temporary node: %v", err)
	}
	if tmp.Snapshot().InMajority {
		t.Fatal("an unregistered node must not serve")
	}
	if _, err := tmp.RegisterClusterNode(ctx, ns[1].self); err != nil {
		t.Fatal(err)
	}
	c.waitMajority(tmp, true, 5*time.Second)
	for _, n := range ns {
		testutil.Eventually(t, func() bool {
			v := n.Snapshot()
			i := v.NodeIndex(tmp.self)
			return i >= 0 && v.Nodes[i].Temporary && v.Nodes[i].Connected
		}, 5*time.Second, "%s sees the temporary node", n.self)
	}
	if err := ns[0].PurgeClusterNode(ctx, tmp.self); !errors.Is(err, ErrTemporaryNode) {
		t.Fatalf("purge of a temporary node: %v", err)
	}
	// Temporary nodes do not count: still 3 voters.
	if got := len(ns[0].snap.Load().voters); got != 3 {
		t.Fatalf("%d voters, want 3", got)
	}
	if _, err := tmp.ClaimChannel(ctx, "t"); err != nil {
		t.Fatalf("claim on a temporary node: %v", err)
	}
	testutil.Eventually(t, func() bool { _, ok := ns[0].Snapshot().Sessions["t"]; return ok }, 5*time.Second, "claim seen")

	t.Run("network cut comes back", func(t *testing.T) {
		c.net.Partition(c.ips(tmp), c.ips(ns...))
		c.waitMajority(tmp, false, 10*time.Second)
		testutil.Eventually(t, func() bool { return !connected(ns[0], tmp.self) }, 10*time.Second, "cut seen")
		c.net.Heal()
		c.waitMajority(tmp, true, 15*time.Second)
		testutil.Eventually(t, func() bool { return connected(ns[0], tmp.self) }, 10*time.Second, "back")
	})

	t.Run("temporary with its side of a partition", func(t *testing.T) {
		c.net.Partition(c.ips(ns[0], tmp), c.ips(ns[1], ns[2]))
		c.waitMajority(tmp, false, 10*time.Second)
		c.net.Heal()
		c.waitMajority(tmp, true, 15*time.Second)
	})

	t.Run("restart must register again", func(t *testing.T) {
		tmp.restart(t)
		time.Sleep(time.Second) // let reconnects happen, if they would
		if tmp.Snapshot().InMajority {
			t.Fatal("a restarted temporary node rejoined by itself")
		}
		testutil.Eventually(t, func() bool { return !connected(ns[0], tmp.self) || !listed(ns[0], tmp.self) }, 10*time.Second, "old run not connected")
		if _, err := tmp.RegisterClusterNode(ctx, ns[0].self); err != nil {
			t.Fatal(err)
		}
		c.waitMajority(tmp, true, 5*time.Second)
	})

	t.Run("only the registered run deregisters", func(t *testing.T) {
		for _, info := range []NodeInfo{
			{Name: tmp.self, Boot: "an-older-run", Temporary: true},
			{Name: ns[2].self, Boot: ns[2].boot, Temporary: true}, // a regular node, whatever it claims
		} {
			if _, err := ns[0].leaderDo(ctx, rpcRequest{Op: rpcDeregister, Info: &info}); err == nil {
				t.Errorf("deregister %s run %q: accepted", info.Name, info.Boot)
			}
		}
		if !listed(ns[0], tmp.self) || !listed(ns[0], ns[2].self) {
			t.Fatal("a refused deregister erased a node")
		}
	})

	t.Run("stop erases", func(t *testing.T) {
		// The stopping node asks the leader to erase it; its gossip leave
		// is the fallback (the leader erases a node seen left, but only
		// after a grace period, so the check right after Close tells which).
		tmp.Close()
		for _, n := range ns {
			if n.rft().State() == raft.Leader {
				if _, known := n.fsm.info(tmp.self); known {
					t.Errorf("leader %s still has the stopped temporary node's facts right after Close", n.self)
				}
			}
		}
		for _, n := range ns {
			testutil.Eventually(t, func() bool { return !listed(n, tmp.self) }, 10*time.Second, "%s erased the temporary node", n.self)
		}
	})
}

func TestRefusals(t *testing.T) {
	testutil.CheckLeaks(t)
	c := newTestCluster(t)
	a, b, tmp := c.add("a", false), c.add("b", false), c.add("t", true)
	ctx := ctxT(t)
	if _, err := b.RegisterClusterNode(ctx, a.self); !errors.Is(err, ErrNotInitialized) {
		t.Fatalf("register to an uninitialised cluster: %v", err)
	}
	if _, err := a.InitCluster(ctx, []string{b.self}); !errors.Is(err, ErrNotInList) {
		t.Fatalf("init without self: %v", err)
	}
	if _, err := a.InitCluster(ctx, []string{a.self, tmp.self}); !errors.Is(err, ErrTemporaryNode) {
		t.Fatalf("init naming a temporary node: %v", err)
	}
	if _, err := a.InitCluster(ctx, []string{a.self, "bad@localhost"}); err == nil || !strings.Contains(err.Error(), "dot") {
		t.Fatalf("init with a bad name: %v", err)
	}
	if _, err := a.ClaimChannel(ctx, "x"); !errors.Is(err, ErrNotInitialized) {
		t.Fatalf("claim before init: %v", err)
	}
	a.Close()
	a.cfg.MaxNodes = 1
	a.start(t)
	if _, err := a.InitCluster(ctx, []string{a.self, b.self}); !errors.Is(err, ErrTooManyNodes) {
		t.Fatalf("init over max_nodes: %v", err)
	}
	if _, err := a.InitCluster(ctx, []string{a.self}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.InitCluster(ctx, []string{a.self}); !errors.Is(err, ErrAlreadyInitialized) {
		t.Fatalf("second init: %v", err)
	}
	if _, err := b.RegisterClusterNode(ctx, a.self); !errors.Is(err, ErrTooManyNodes) {
		t.Fatalf("register over max_nodes: %v", err)
	}
	a.Close()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.ClaimChannel(ctx, "x"); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("claim after close: %v", err)
	}
	if _, err := a.ListClusterNodes(ctx); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("list after close: %v", err)
	}
}

func TestWrongKeyCannotJoin(t *testing.T) {
	c, ns, ctx := runCluster(t, 1)
	intruder := c.addWith("x", false, func(cfg *Config) { cfg.ClusterKey = []byte("another key of thirty-two bytes!") })
	if _, err := intruder.RegisterClusterNode(ctx, ns[0].self); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("register with the wrong key: %v", err)
	}
	if listed(ns[0], intruder.self) {
		t.Fatal("intruder listed")
	}
}

func TestSingleNodeWithoutCluster(t *testing.T) {
	testutil.CheckLeaks(t)
	n, err := New(Config{NodeName: "solo@10.0.0.1", MaxConnections: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	ctx := ctxT(t)
	if _, err := n.ClaimChannel(ctx, "x"); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("claim before start: %v", err)
	}
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	v := n.Snapshot()
	if !v.InMajority || len(v.Nodes) != 1 || !v.Nodes[0].Connected || v.Settings.Cluster {
		t.Fatalf("view %+v", v)
	}
	if _, err := n.InitCluster(ctx, []string{n.self}); !errors.Is(err, ErrClusterDisabled) {
		t.Fatalf("init with cluster off: %v", err)
	}
	owners, err := n.ClaimChannel(ctx, "x")
	if err != nil || len(owners) != 1 {
		t.Fatal(owners, err)
	}
	n.PublishLoad(3, map[string]int{"x": 3})
	testutil.Eventually(t, func() bool {
		s, ok := n.Snapshot().Sessions["x"]
		return ok && s.Owners[0].Connections == 3 && n.Snapshot().Nodes[0].Connections == 3
	}, time.Second, "load in view")
	if err := n.SetMode(ctx, affinity.ModeBlockNewConnection, "disk full"); err != nil {
		t.Fatal(err)
	}
	if l, _ := n.ListClusterNodes(ctx); l[0].Mode != "block_new_connection" || l[0].ModeReason != "disk full" {
		t.Fatalf("list %+v", l)
	}
	if err := n.ReleaseChannel(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	if _, ok := n.Snapshot().Sessions["x"]; ok {
		t.Fatal("session survived its release")
	}
}

func TestSubscriberNeverBlocks(t *testing.T) {
	testutil.CheckLeaks(t)
	n, err := New(Config{NodeName: "solo@10.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
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
