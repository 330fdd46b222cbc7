package multiclustertest

import (
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	shoal "github.com/shoal-sfu/shoal"
	"github.com/shoal-sfu/shoal/cluster/multicluster"
	"github.com/shoal-sfu/shoal/cluster/multicluster/redischannel"
	"github.com/shoal-sfu/shoal/internal/testutil"
)

func startRedis(t *testing.T) string {
	url, _ := testutil.Redis(t)
	return url
}

func redisChannel(t *testing.T, url string) *redischannel.Channel {
	t.Helper()
	c, err := redischannel.New(url, "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// activeGateways returns the nodes of cluster cid that n lists as active
// gateways, sorted.
func activeGateways(n *node, cid string) []string {
	gws, err := n.ListGateways()
	if err != nil {
		return nil
	}
	var out []string
	for _, g := range gws {
		if g.ClusterID == cid && g.Status == multicluster.Active {
			out = append(out, g.Node)
		}
	}
	slices.Sort(out)
	return out
}

// TestRestartFindsNewGateways: a node of cluster A is stopped; while it is
// down, every node of cluster B, and so every gateway, is replaced by new
// nodes at new addresses; the node restarts (same name and data dir) with
// no seed, the gossip channel (a real redis-server) its only way to the
// other clusters. It learns B's new gateways from the channel and bridges
// a channel whose publisher is on B to a subscriber on it.
func TestRestartFindsNewGateways(t *testing.T) {
	if testing.Short() {
		t.Skip("two clusters of three nodes, and three more")
	}
	testutil.CheckLeaks(t)
	url := startRedis(t)
	ch := redisChannel(t, url)

	var mu sync.Mutex
	cfgs := map[string]shoal.Config{} // the configuration each node was started with
	dataDir := t.TempDir()
	keep := func(c *shoal.Config) {
		mu.Lock()
		defer mu.Unlock()
		cfgs[c.NodeName] = *c
	}
	a := startRegion(t, "a", ch, nil, func(c *shoal.Config) {
		// A's nodes keep their Raft state, so that one restarted rejoins A.
		c.DataDir = filepath.Join(dataDir, fmt.Sprint(len(cfgs)))
		keep(c)
	})
	b := startRegion(t, "b", ch, []string{a.nodes[0].GossipAddr()}, keep)
	if _, err := a.nodes[0].SetMultiClusterConfiguration([]string{"a", "b"}, "restart"); err != nil {
		t.Fatal(err)
	}
	for _, n := range slices.Concat(a.nodes, b.nodes) {
		testutil.Eventually(t, func() bool {
			return len(activeGateways(n, "a")) == 3 && len(activeGateways(n, "b")) == 3
		}, 15*time.Second, "%s knows the six gateways", n.Name())
	}

	// The channel is bridged in A by a3, the node restarted.
	restarted := a.names[2]
	channel := ""
	for i := 0; channel == ""; i++ {
		if c := fmt.Sprintf("restart-room-%d", i); multicluster.Bridge(c, a.names) == restarted {
			channel = c
		}
	}
	a.nodes[2].stop()
	for _, n := range a.nodes[:2] {
		testutil.Eventually(t, func() bool { return !slices.Contains(activeGateways(n, "a"), restarted) }, 15*time.Second,
			"%s sees %s's gateway inactive", n.Name(), restarted)
	}

	// Every node of B replaced, one at a time: a new node at a new address
	// joins B, then an old one stops and is purged (B keeps its majority
	// throughout, with four voters at most).
	old := slices.Clone(b.names)
	mu.Lock()
	tmpl := cfgs[old[0]]
	mu.Unlock()
	var fresh []*node
	for i, ip := range testutil.LoopbackIPs(t, 3) {
		contact := b.nodes[i]
		if i > 0 {
			contact = fresh[i-1]
		}
		cfg := tmpl
		cfg.NodeName = fmt.Sprintf("b%d@%v", 4+i, ip)
		cfg.MultiCluster.Seeds = []string{contact.GossipAddr()}
		n := startNode(t, cfg)
		// A register that failed on a starved process (the contact not
		// answering in time) is tried again.
		var err error
		if !testutil.WaitFor(func() bool {
			if n.Ready() {
				return true
			}
			_, err = n.RegisterClusterNode(testutil.Context(t, 10*time.Second), contact.Name())
			return err == nil
		}, 30*time.Second) {
			t.Fatalf("register %s: %v", cfg.NodeName, err)
		}
		testutil.Eventually(t, n.Ready, 20*time.Second, "%s ready", cfg.NodeName)
		fresh = append(fresh, n)
		b.nodes[i].stop()
		testutil.Eventually(t, func() bool {
			return n.Membership().PurgeClusterNode(testutil.Context(t, 5*time.Second), old[i]) == nil
		}, 20*time.Second, "%s purged", old[i])
	}
	b.nodes, b.names = fresh, nil
	for _, n := range fresh {
		b.names = append(b.names, n.Name())
	}
	want := slices.Sorted(slices.Values(b.names))
	for _, n := range slices.Concat(a.nodes[:2], fresh) {
		testutil.Eventually(t, func() bool { return slices.Equal(activeGateways(n, "b"), want) }, 20*time.Second,
			"%s lists B's gateways as %v (has %v)", n.Name(), want, activeGateways(n, "b"))
	}

	// A publisher on B while a3 is down: nothing of the channel in A yet.
	pub := publish(t, fresh[1].url, channel)

	// a3 restarts with the same name and data dir, no seed, and the
	// gossip channel, read at start. Its background exchange is an hour
	// away: what it learns within the test comes from that read (with the
	// other nodes' 1 s exchange, it would find B without it too).
	mu.Lock()
	cfg := cfgs[restarted]
	mu.Unlock()
	cfg.MultiCluster.Seeds = nil
	cfg.MultiCluster.SyncInterval = time.Hour
	cfg.MultiCluster.Channels = []multicluster.GossipChannel{redisChannel(t, url)}
	start := time.Now()
	a3 := startNode(t, cfg)
	a.nodes[2] = a3
	testutil.Eventually(t, a3.Ready, 20*time.Second, "%s ready again", restarted)
	sub := subscribe(t, a3.url, channel)
	var knew, media time.Duration
	deadline := time.Now().Add(30 * time.Second)
	for (knew == 0 || media == 0) && time.Now().Before(deadline) {
		if knew == 0 && slices.Equal(activeGateways(a3, "b"), want) {
			knew = time.Since(start)
		}
		if media == 0 && sub.packets.Load() > 0 {
			media = time.Since(start)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if knew == 0 {
		gws, _ := a3.ListGateways()
		t.Fatalf("restarted %s did not learn B's new gateways %v within 30 s; it lists %v", restarted, want, gws)
	}
	if media == 0 {
		t.Fatalf("restarted %s knows B's gateways but its subscriber got no media within 30 s", restarted)
	}
	t.Logf("%s restarted: B's new gateways known after %v, first media packet at its subscriber after %v", restarted, knew, media)
	for _, g := range old {
		if slices.Contains(activeGateways(a3, "b"), g) {
			t.Errorf("%s lists the stopped %s as an active gateway", restarted, g)
		}
	}
	testutil.Eventually(t, func() bool { return sub.packets.Load() >= 100 }, 20*time.Second, "the subscriber on %s receives media", restarted)
	testutil.Eventually(t, func() bool {
		dc, ok := sub.c.DataChannel("#chat")
		return ok && dc.ReadyState() == webrtc.DataChannelStateOpen
	}, 10*time.Second, "subscriber's #chat open")
	pub.say(t, "hello from b")
	testutil.Eventually(t, func() bool { return sub.got("hello from b") }, 10*time.Second, "the subscriber on %s got the message", restarted)
	if cc, _ := a3.ListChannelClusters(channel); len(cc) != 2 || cc[0].Gateway != restarted {
		t.Errorf("ListChannelClusters(%s) on %s = %v, want a (bridged by %s) and b", channel, restarted, cc, restarted)
	}
}
