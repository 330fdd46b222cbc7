package cluster

import (
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/shoal-sfu/shoal/affinity"
	"github.com/shoal-sfu/shoal/internal/testutil"
)

func TestThreeNodes(t *testing.T) {
	c, ns, ctx := runCluster(t, 3)

	// Everyone lists everyone, with facts.
	for _, n := range ns {
		testutil.Eventually(t, func() bool {
			l, _ := n.ListClusterNodes(ctx)
			if len(l) != 3 {
				return false
			}
			for _, s := range l {
				if !s.Connected || s.APIURL == "" || s.MaxConnections != 100 || s.Mode != "normal" {
					return false
				}
			}
			return true
		}, 5*time.Second, "%s lists 3 connected nodes with facts", n.self)
	}

	t.Run("claim", func(t *testing.T) {
		owners, err := ns[1].ClaimChannel(ctx, "room")
		if err != nil || len(owners) != 1 || owners[0] != ns[1].self {
			t.Fatalf("claim: %v %v", owners, err)
		}
		// Relay on: a second owner is added, creator first.
		owners, err = ns[2].ClaimChannel(ctx, "room")
		if err != nil || len(owners) != 2 || owners[0] != ns[1].self || owners[1] != ns[2].self {
			t.Fatalf("second claim: %v %v", owners, err)
		}
		for _, n := range ns {
			testutil.Eventually(t, func() bool {
				chs, _ := n.ListClusterChannels(ctx)
				return len(chs) == 1 && len(chs[0].Owners) == 2
			}, 5*time.Second, "%s sees two owners", n.self)
		}
		if err := ns[1].ReleaseChannel(ctx, "room"); err != nil {
			t.Fatal(err)
		}
		if err := ns[2].ReleaseChannel(ctx, "room"); err != nil {
			t.Fatal(err)
		}
		for _, n := range ns {
			testutil.Eventually(t, func() bool { return len(n.Snapshot().Sessions) == 0 }, 5*time.Second, "session ended on %s", n.self)
		}
	})

	t.Run("load", func(t *testing.T) {
		ns[0].PublishLoad(7, map[string]int{"room": 7})
		ns[0].ClaimChannel(ctx, "room")
		for _, n := range ns {
			testutil.Eventually(t, func() bool {
				v := n.Snapshot()
				i := v.NodeIndex(ns[0].self)
				s, ok := v.Sessions["room"]
				return i >= 0 && v.Nodes[i].Connections == 7 && ok && s.Owners[0].Connections == 7
			}, 3*time.Second, "%s sees load 7", n.self)
		}
		ns[0].PublishLoad(0, nil)
		ns[0].ReleaseChannel(ctx, "room")
	})

	t.Run("mode", func(t *testing.T) {
		if err := ns[2].SetMode(ctx, affinity.ModeBlockNewSession, "maintenance"); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, func() bool {
			l, _ := ns[0].ListClusterNodes(ctx)
			return l[2].Mode == "block_new_session" && l[2].ModeReason == "maintenance"
		}, 5*time.Second, "mode seen")
		ns[2].SetMode(ctx, affinity.ModeNormal, "")
	})

	t.Run("partition 1|2 and heal", func(t *testing.T) {
		c.net.Partition(c.ips(ns[0]), c.ips(ns[1], ns[2]))
		c.waitMajority(ns[0], false, 10*time.Second)
		if !ns[1].Snapshot().InMajority || !ns[2].Snapshot().InMajority {
			t.Fatal("the two-node side lost the majority")
		}
		if _, err := ns[0].ClaimChannel(ctx, "x"); !errors.Is(err, ErrNoMajority) {
			t.Fatalf("claim in minority: %v", err)
		}
		// The majority side keeps working whoever led.
		testutil.Eventually(t, func() bool {
			_, err := ns[1].ClaimChannel(ctx, "y")
			return err == nil
		}, 10*time.Second, "claim on the majority side")
		ns[1].ReleaseChannel(ctx, "y")
		c.net.Heal()
		c.waitMajority(ns[0], true, 10*time.Second)
		for _, n := range ns {
			for _, m := range ns {
				testutil.Eventually(t, func() bool { return connected(n, m.self) }, 10*time.Second, "%s sees %s", n.self, m.self)
			}
		}
	})

	t.Run("leader killed", func(t *testing.T) {
		leader, rest := leaderOf(t, ns)
		// Stop the leader abruptly: cut it off, then close.
		c.net.Partition(c.ips(leader), c.ips(rest...))
		testutil.Eventually(t, func() bool {
			_, err := rest[0].ClaimChannel(ctx, "after-leader")
			return err == nil
		}, 10*time.Second, "claim after leader loss")
		rest[1].ReleaseChannel(ctx, "after-leader")
		rest[0].ReleaseChannel(ctx, "after-leader")
		c.net.Heal()
		c.waitMajority(leader, true, 10*time.Second)
	})
}

func TestConcurrentFirstClaimRelayOff(t *testing.T) {
	testutil.CheckLeaks(t)
	c := newTestCluster(t)
	ns := c.regularWith(3, func(cfg *Config) { cfg.Relay = false })
	ctx := ctxT(t)
	for round := range 10 {
		ch := "race-" + string(rune('a'+round))
		var wg sync.WaitGroup
		errs := make([]error, 3)
		for i, n := range ns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = n.ClaimChannel(ctx, ch)
			}()
		}
		wg.Wait()
		won := 0
		for i, err := range errs {
			var owned *OwnedElsewhereError
			switch {
			case err == nil:
				won++
			case errors.As(err, &owned):
				if owned.Owner.APIURL == "" {
					t.Errorf("owner without facts: %+v", owned.Owner)
				}
			default:
				t.Fatalf("node %d: %v", i, err)
			}
		}
		if won != 1 {
			t.Fatalf("%s: %d owners, want 1", ch, won)
		}
	}
}

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
