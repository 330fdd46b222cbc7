package cluster

import (
	"errors"
	"sync"
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
		var id raft.ServerID
		testutil.Eventually(t, func() bool { _, id = ns[0].rft().LeaderWithID(); return id != "" }, 10*time.Second, "a leader")
		var leader *tnode
		var rest []*tnode
		for _, n := range ns {
			if n.self == string(id) {
				leader = n
			} else {
				rest = append(rest, n)
			}
		}
		if leader == nil {
			t.Fatal("no leader")
		}
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
