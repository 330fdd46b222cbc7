package shoal_test

import (
	"fmt"
	"testing"
	"time"

	shoal "github.com/shoal-sfu/shoal"
	"github.com/shoal-sfu/shoal/cluster"
	"github.com/shoal-sfu/shoal/cluster/multicluster"
	"github.com/shoal-sfu/shoal/internal/testutil"
)

// mcRegion is a mutation of e2eCluster's configs making its nodes a
// region of a multi-cluster configuration: cluster id, a cluster key of
// its own, the shared multi-cluster key and gossip channel.
func mcRegion(t *testing.T, id string, ch multicluster.GossipChannel) func(*shoal.Config) {
	return func(cfg *shoal.Config) {
		nn, err := cluster.ParseNodeName(cfg.NodeName)
		if err != nil {
			t.Fatal(err)
		}
		cfg.ClusterID = id
		cfg.ClusterKey = []byte(fmt.Sprintf("e2e-cluster-key-of-region-%-6s", id))
		cfg.MultiCluster = shoal.MultiClusterConfig{Key: []byte("e2e-multi-cluster-key-32-bytes!!"),
			GossipPort: testutil.FreePort(t, nn.Addr), RelayPort: testutil.FreePort(t, nn.Addr),
			Channels: []multicluster.GossipChannel{ch}, SyncInterval: time.Second, Tick: 100 * time.Millisecond,
			Agent: func(c *multicluster.AgentConfig) { c.Tune = multicluster.FastTune }}
	}
}

// TestE2ETwoRegions: two clusters of three nodes joined in one
// multi-cluster configuration, one Chromium page (the example's) in each,
// in one channel: each decodes the other's video and gets its messages,
// each connected to its own region (no redirect), the media crossing the
// inter-cluster relay.
func TestE2ETwoRegions(t *testing.T) {
	requireBrowser(t)
	mem := multicluster.NewMemoryChannel("mem")
	a := e2eCluster(t, false, mcRegion(t, "a", mem))
	b := e2eCluster(t, false, mcRegion(t, "b", mem))
	if _, err := a[0].SetMultiClusterConfiguration([]string{"a", "b"}, "e2e"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, func() bool {
		gws, _ := b[2].ListGateways()
		return len(gws) == 6
	}, 20*time.Second, "six gateways known in b")
	r := newReports(t)
	names := []string{"tokyo", "frankfurt"}
	r.open(r.examplePage(a[1], names[0], "two-regions"), r.examplePage(b[2], names[1], "two-regions"))
	waitMediaAndMessages(t, r, names)
	for i, want := range []*e2eNode{a[1], b[2]} {
		if st := r.state(names[i]); st.URL != want.signaling || st.Redirects != 0 {
			t.Errorf("page %s connected to %s after %d redirects; want its own region's %s", names[i], st.URL, st.Redirects, want.signaling)
		}
	}
	var crossed uint64
	for _, n := range a {
		for _, c := range n.InterClusterRelay().Stats().Channels {
			if c.Channel == "two-regions" {
				crossed += c.PacketsOut + c.PacketsIn
			}
		}
	}
	cc, _ := a[0].ListChannelClusters("two-regions")
	t.Logf("packets across the inter-cluster relays of a: %d; channel's clusters: %v", crossed, cc)
	if crossed == 0 || len(cc) != 2 {
		t.Fatalf("nothing crossed between the regions (%d) or the channel is not listed in both (%v)", crossed, cc)
	}
}
