package cluster

import (
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/hashicorp/serf/serf"

	"github.com/shoal-sfu/shoal/internal/testutil"
)

// never fails the test if cond holds at any poll during d.
func never(t *testing.T, d time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if cond() {
			t.Fatalf(msg, args...)
		}
	}
}

// A fresh node naming the nodes of a running cluster plus itself is
// refused, and does not count itself in a majority.
func TestInitClusterNamingAnotherClustersNodes(t *testing.T) {
	c, ns, ctx := runCluster(t, 3)
	fresh := c.add("n4", false)
	_, err := fresh.InitCluster(ctx, c.names(append(slices.Clone(ns), fresh)...))
	var already *AlreadyInitializedError
	if !errors.As(err, &already) || !errors.Is(err, ErrAlreadyInitialized) || !slices.Equal(already.Nodes, c.names(ns...)) {
		t.Fatalf("init naming initialised nodes: %v; want an *AlreadyInitializedError naming %v", err, c.names(ns...))
	}
	// The admin API answers 409 with the message, which names them.
	var hs interface{ HTTPStatus() int }
	if !errors.As(err, &hs) || hs.HTTPStatus() != 409 || !strings.Contains(err.Error(), ns[2].self) {
		t.Fatalf("init naming initialised nodes: %v: no status 409 naming the nodes", err)
	}
	never(t, 2*time.Second, func() bool { return fresh.Snapshot().InMajority }, "%s counts itself in the majority", fresh.self)
	for _, n := range ns {
		if !n.Snapshot().InMajority || listed(n, fresh.self) || voterCount(n) != 3 {
			t.Fatalf("%s: InMajority %v, lists the newcomer %v, %d voters", n.self, n.Snapshot().InMajority, listed(n, fresh.self), voterCount(n))
		}
	}
}

// A node whose Raft configuration names a running cluster's nodes and
// itself (as InitCluster did before it checked) hears from no leader: it
// never counts itself in the majority, whatever gossip says.
func TestBootstrappedBesideAClusterNeverServes(t *testing.T) {
	c, ns, ctx := runCluster(t, 3)
	fresh := c.add("n4", false)
	conf := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(fresh.self), Address: raft.ServerAddress(fresh.addr)}}}
	for _, n := range ns {
		m, err := fresh.joinNode(ctx, n.name)
		if err != nil {
			t.Fatal(err)
		}
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(n.self), Address: raft.ServerAddress(memberRPCAddr(m))})
	}
	if err := fresh.rft().BootstrapCluster(conf).Error(); err != nil {
		t.Fatal(err)
	}
	fresh.markDirty()
	never(t, 3*time.Second, func() bool { return fresh.Snapshot().InMajority }, "%s counts itself in the majority of a configuration no leader serves", fresh.self)
	if _, err := fresh.ClaimChannel(ctx, "x"); err == nil {
		t.Fatal("a claim succeeded")
	}
	// Asking the others, it learns that it is not a member.
	testutil.Eventually(t, func() bool { st := fresh.snap.Load(); return st.excluded && !st.initialised }, 5*time.Second, "%s learns it is not a member", fresh.self)
}

// A node purged while cut off stays out after the partition heals: the
// others never list it as a connected regular node, the leader refuses its
// writes, and it stops serving and logs why.
func TestPurgedNodeStaysPurged(t *testing.T) {
	testutil.CheckLeaks(t)
	c := newTestCluster(t)
	var logs *testutil.LogBuffer
	ns := c.regularWith(3, func(cfg *Config) {
		if strings.HasPrefix(cfg.NodeName, "n3@") {
			cfg.Logger, logs = testutil.BufferLogger(slog.LevelInfo)
		}
	})
	ctx := ctxT(t)
	victim, rest := ns[2], ns[:2]
	defer func() {
		if t.Failed() {
			t.Logf("victim's log:\n%s", logs)
		}
	}()

	c.net.Partition(c.ips(victim), c.ips(rest...))
	c.waitMajority(victim, false, 10*time.Second)
	for _, n := range rest {
		testutil.Eventually(t, func() bool { return !connected(n, victim.self) }, 10*time.Second, "%s sees %s down", n.self, victim.self)
	}
	testutil.Eventually(t, func() bool { return rest[0].PurgeClusterNode(ctx, victim.self) == nil }, 10*time.Second, "purge %s", victim.self)
	for _, n := range rest {
		testutil.Eventually(t, func() bool { return !listed(n, victim.self) }, 5*time.Second, "%s forgot %s", n.self, victim.self)
	}
	c.net.Heal()
	testutil.Eventually(t, func() bool { // by gossip: once it knows, its view lists itself alone
		m, ok := victim.members()[rest[0].self]
		return ok && m.Status == serf.StatusAlive
	}, 10*time.Second, "gossip healed")

	phantom := func() bool {
		if victim.Snapshot().InMajority {
			return true
		}
		for _, n := range rest {
			v := n.Snapshot()
			if i := v.NodeIndex(victim.self); i >= 0 && v.Nodes[i].Connected && !v.Nodes[i].Temporary {
				return true
			}
			l, _ := n.ListClusterNodes(ctx)
			for _, s := range l {
				if s.Name == victim.self {
					return true
				}
			}
		}
		return false
	}
	never(t, 4*time.Second, phantom, "the purged node came back: serving %v, listed by %s %v, by %s %v",
		victim.Snapshot().InMajority, rest[0].self, listed(rest[0], victim.self), rest[1].self, listed(rest[1], victim.self))
	// The leader refuses what the purged node would write.
	info := victim.selfInfo()
	for _, cmd := range []command{
		{Op: opSetInfo, Info: &info},
		{Op: opClaim, Channel: "phantom", Node: victim.self, Relay: true},
	} {
		if _, err := rest[0].applyCmd(ctx, cmd); !errors.Is(err, errNotMember) {
			t.Errorf("%s for the purged node: %v, want %v", cmd.Op, err, errNotMember)
		}
	}
	if err := rest[1].checkLoadFrom(victim.self); !errors.Is(err, errNotMember) {
		t.Errorf("load of the purged node: %v, want %v", err, errNotMember)
	}

	// It knows, says so in its listing, and logged it once.
	l, _ := victim.ListClusterNodes(ctx)
	if len(l) != 1 || l[0].Name != victim.self || l[0].Mode != "block_new_connection" || l[0].ModeReason != excludedReason {
		t.Fatalf("the purged node lists %+v", l)
	}
	if got := strings.Count(logs.String(), "level=ERROR msg=\"cluster: this node is no longer a member"); got != 1 {
		t.Fatalf("the purged node logged why %d times, want once", got)
	}
}

// A register that fails between its steps leaves nothing behind: the node
// is not listed, not a voter, and does not serve; registering again works.
func TestRegisterFailingHalfwayLeavesNothing(t *testing.T) {
	c, ns, ctx := runCluster(t, 3)
	fault := errors.New("injected fault between the register's steps")
	for _, n := range ns {
		n.mem.registerFault.Store(&fault)
	}
	late := c.add("n4", false)
	if _, err := late.RegisterClusterNode(ctx, ns[1].self); err == nil {
		t.Fatal("register with a fault succeeded")
	}
	never(t, 2*time.Second, func() bool {
		for _, n := range ns {
			if listed(n, late.self) || voterCount(n) != 3 {
				return true
			}
		}
		return late.Snapshot().InMajority
	}, "a failed register left %s behind: listed %v, voters %d, serving %v",
		late.self, listed(ns[0], late.self), voterCount(ns[0]), late.Snapshot().InMajority)

	for _, n := range ns {
		n.mem.registerFault.Store(nil)
	}
	if _, err := late.RegisterClusterNode(ctx, ns[1].self); err != nil {
		t.Fatalf("register after the fault: %v", err)
	}
	for _, n := range ns {
		testutil.Eventually(t, func() bool { return connected(n, late.self) }, 5*time.Second, "%s lists %s", n.self, late.self)
	}
}
