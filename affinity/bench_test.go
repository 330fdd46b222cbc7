package affinity

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// benchView is a cluster of nodes nodes of capacity 1000 (two failed: +21 each; one
// temporary in ten) and channels sessions on one to three nodes each.
func benchView(nodes, channels int) *View {
	rng := rand.New(rand.NewPCG(1, 1))
	v := &View{Settings: withThreshold(DefaultSettings(), 20), InMajority: true, Sessions: make(map[string]Session, channels)}
	for i := range nodes {
		name := fmt.Sprintf("node%03d@10.0.%d.%d", i, i/250, i%250+1)
		v.Nodes = append(v.Nodes, Node{Name: name, Temporary: i%10 == 9, Connected: i != 3 && i != 50,
			Capacity: 1000, Connections: rng.IntN(900),
			SignalingURL: "wss://" + name + "/signaling", APIURL: "https://" + name + "/api"})
	}
	for ch := range channels {
		os := []Owner{{Node: rng.IntN(nodes), Connections: rng.IntN(40)}}
		for range rng.IntN(3) {
			os = append(os, Owner{Node: rng.IntN(nodes), Connections: rng.IntN(40)})
		}
		v.Sessions[fmt.Sprintf("channel-%05d", ch)] = Session{Owners: os}
	}
	return v
}

// Run: go test -run '^$' -bench . -benchmem ./affinity/
func BenchmarkPlace(b *testing.B) {
	v := benchView(100, 10000)
	contacted := v.Nodes[17].Name
	cases := []struct {
		name     string
		settings func(*Settings)
		req      Request
	}{
		{"new-session", nil, Request{ChannelID: "channel-new", Contacted: contacted}},
		{"existing-session", nil, Request{ChannelID: "channel-04242", Contacted: contacted}},
		{"over-threshold", func(s *Settings) { s.AffinityThreshold = 1 }, Request{ChannelID: "channel-04242", Contacted: contacted}},
		{"no-affinity", func(s *Settings) { s.DefaultAffinity = false }, Request{ChannelID: "channel-04242", Contacted: contacted}},
		{"no-relay", func(s *Settings) { s.Relay = false }, Request{ChannelID: "channel-04242", Contacted: contacted}},
		{"redirected", nil, Request{ChannelID: "channel-04242", Contacted: contacted, Redirected: true}},
	}
	for _, bc := range cases {
		vv := *v
		if bc.settings != nil {
			bc.settings(&vv.Settings)
		}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			var d Decision
			for b.Loop() {
				d = Place(&vv, bc.req)
			}
			if d.Action == 0 {
				b.Fatal("no decision")
			}
		})
	}
}

func BenchmarkEffectiveCapacities(b *testing.B) {
	v := benchView(100, 0)
	dst := make([]int, 0, len(v.Nodes))
	b.ReportAllocs()
	for b.Loop() {
		dst = EffectiveCapacities(v, dst)
	}
	if len(dst) != 100 || dst[0] != 1000+21 {
		b.Fatalf("unexpected capacities %v", dst[:3])
	}
}
