package multiclustertest

import (
	"slices"
	"testing"
	"time"

	shoal "github.com/shoal-sfu/shoal"
	"github.com/shoal-sfu/shoal/cluster/multicluster"
	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/relay"
)

// TestRegionsPartitioned: the inter-cluster links cut (every datagram and
// connection between the regions' addresses vanishes, as a pulled cable),
// each region keeps serving its own clients, and the relay between them
// resumes by itself when the cut heals. The gossip between the regions is
// not cut here (memberlist runs on the host's network).
func TestRegionsPartitioned(t *testing.T) {
	if testing.Short() {
		t.Skip("two clusters of three nodes")
	}
	testutil.CheckLeaks(t)
	fault := relay.NewFaultNet()
	onFault := func(c *shoal.Config) { c.RelayLink.Net = fault }
	mem := multicluster.NewMemoryChannel("mem")
	a := startRegion(t, "a", mem, nil, onFault)
	b := startRegion(t, "b", mem, []string{a.nodes[0].GossipAddr()}, onFault)
	if _, err := a.nodes[0].SetMultiClusterConfiguration([]string{"a", "b"}, ""); err != nil {
		t.Fatal(err)
	}
	channel := channelAvoiding(a, a.names[1])
	publish(t, a.nodes[1].url, channel)
	local := subscribe(t, a.nodes[2].url, channel)
	var far []*subscriber
	for i := range 3 {
		far = append(far, subscribe(t, b.nodes[i].url, channel))
	}
	all := append(slices.Clone(far), local)
	testutil.Eventually(t, func() bool {
		for _, s := range all {
			if s.packets.Load() < 30 {
				return false
			}
		}
		return true
	}, 30*time.Second, "every subscriber receives media")

	for _, x := range a.ips {
		for _, y := range b.ips {
			fault.Block(x, y)
		}
	}
	cut := time.Now()
	time.Sleep(2 * time.Second) // what was in flight arrives (the links are found down after linkTimeout, not awaited)
	counts := func(ss []*subscriber) []uint64 {
		var out []uint64
		for _, s := range ss {
			out = append(out, s.packets.Load())
		}
		return out
	}
	farBefore, localBefore := counts(far), local.packets.Load()
	time.Sleep(2 * time.Second)
	for i, c := range counts(far) {
		if c > farBefore[i]+5 {
			t.Fatalf("subscriber %d in b received %d packets while the regions were cut", i, c-farBefore[i])
		}
	}
	if local.packets.Load() < localBefore+10 {
		t.Fatalf("a's own subscriber got %d packets in 2 s of the cut: a must keep serving", local.packets.Load()-localBefore)
	}
	// b keeps serving its own clients: a new one connects.
	late := subscribe(t, b.nodes[0].url, channel)
	_ = late

	fault.Heal()
	healed := time.Now()
	testutil.Eventually(t, func() bool {
		for i, c := range counts(far) {
			if c < farBefore[i]+30 {
				return false
			}
		}
		return late.packets.Load() > 30
	}, 30*time.Second, "media crosses again after the cut healed")
	t.Logf("cut for %v; media back at every subscriber of b %v after the heal", healed.Sub(cut).Round(time.Millisecond),
		time.Since(healed).Round(time.Millisecond))
}
