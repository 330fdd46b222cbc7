package cluster

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/shoal-sfu/shoal/internal/testutil"
)

func voterCount(n *tnode) int {
	k := 0
	for _, s := range n.raftServers() {
		if s.Suffrage == raft.Voter {
			k++
		}
	}
	return k
}

func channelOwners(t *testing.T, n *tnode, ch string) []string {
	t.Helper()
	chs, err := n.ListClusterChannels(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range chs {
		if c.ChannelID == ch {
			var out []string
			for _, o := range c.Owners {
				out = append(out, o.NodeName)
			}
			return out
		}
	}
	return nil
}

// TestInitClusterAfterBreakdown: 5 regular nodes, 3 stop for good; the 2
// survivors lose the majority, and InitCluster of the two rebuilds a
// cluster of exactly them that keeps the committed channel state.
func TestInitClusterAfterBreakdown(t *testing.T) {
	c, ns, ctx := runCluster(t, 5)
	survivors, dead := ns[:2], ns[2:]

	if _, err := ns[0].ClaimChannel(ctx, "kept"); err != nil {
		t.Fatal(err)
	}
	if _, err := ns[4].ClaimChannel(ctx, "lost"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, func() bool {
		return len(channelOwners(t, ns[1], "kept")) == 1 && len(channelOwners(t, ns[1], "lost")) == 1
	}, 5*time.Second, "claims replicated")

	// A running majority cannot be split.
	if _, err := ns[0].InitCluster(ctx, c.names(survivors...)); !errors.Is(err, ErrAlreadyInitialized) {
		t.Fatalf("init with the majority running: %v", err)
	}
	for _, n := range ns {
		if voterCount(n) != 5 {
			t.Fatalf("%s: %d voters after a refused init", n.self, voterCount(n))
		}
	}

	for _, n := range dead {
		n.Close()
	}
	for _, n := range survivors {
		c.waitMajority(n, false, 15*time.Second)
	}

	// A listed node that cannot be reached: refused, nothing changed.
	_, err := ns[0].InitCluster(ctx, c.names(ns[0], ns[1], ns[2]))
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), ns[2].self) {
		t.Fatalf("init naming a stopped node: %v", err)
	}
	for _, n := range survivors {
		if voterCount(n) != 5 || n.Snapshot().InMajority {
			t.Fatalf("%s changed by a refused init: %d voters, in majority %v", n.self, voterCount(n), n.Snapshot().InMajority)
		}
	}

	got, err := ns[1].InitCluster(ctx, c.names(survivors...))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, c.names(survivors...)) {
		t.Fatalf("init answered %v", got)
	}
	// The committed channel of a survivor is still there, on both.
	for _, n := range survivors {
		if o := channelOwners(t, n, "kept"); !slices.Equal(o, []string{ns[0].self}) {
			t.Fatalf("%s: owners of kept: %v", n.self, o)
		}
	}
	for _, n := range survivors {
		c.waitMajority(n, true, 10*time.Second)
		if voterCount(n) != 2 {
			t.Fatalf("%s: %d voters after the rebuild", n.self, voterCount(n))
		}
		testutil.Eventually(t, func() bool {
			nodes, err := n.ListClusterNodes(ctx)
			if err != nil || len(nodes) != 2 {
				return false
			}
			return nodes[0].Name == ns[0].self && nodes[1].Name == ns[1].self && nodes[0].Connected && nodes[1].Connected
		}, 5*time.Second, "%s lists exactly the survivors", n.self)
		// The channel held by a dropped node was released.
		testutil.Eventually(t, func() bool { return channelOwners(t, n, "lost") == nil }, 5*time.Second, "%s: lost released", n.self)
	}
	// The rebuilt cluster serves: new claims, on both nodes.
	if _, err := ns[0].ClaimChannel(ctx, "after-a"); err != nil {
		t.Fatal(err)
	}
	owners, err := ns[1].ClaimChannel(ctx, "after-b")
	if err != nil || !slices.Equal(owners, []string{ns[1].self}) {
		t.Fatalf("claim after rebuild: %v %v", owners, err)
	}
	// Relay is on (the default): the other node joins the kept session,
	// behind its creator.
	if owners, err := ns[1].ClaimChannel(ctx, "kept"); err != nil || !slices.Equal(owners, c.names(survivors...)) {
		t.Fatalf("claim of kept on the other node: %v %v", owners, err)
	}
	// And now that it runs, it cannot be re-initialised.
	if _, err := ns[0].InitCluster(ctx, c.names(ns[0])); !errors.Is(err, ErrAlreadyInitialized) {
		t.Fatalf("init of the rebuilt cluster: %v", err)
	}
	// A survivor restarted from its data directory comes back in the
	// rebuilt cluster.
	ns[0].restart(t)
	for _, n := range survivors {
		c.waitMajority(n, true, 15*time.Second)
		if voterCount(n) != 2 {
			t.Fatalf("%s: %d voters after a restart", n.self, voterCount(n))
		}
	}
}
