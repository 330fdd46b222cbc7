package shoal

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/shoal-sfu/shoal/affinity"
)

// planView is a view of the nodes a, b, c and d (indices 0-3) with the
// given sessions.
func planView(sessions map[string][]int) *affinity.View {
	v := &affinity.View{Sessions: map[string]affinity.Session{}}
	for _, name := range []string{"a", "b", "c", "d"} {
		v.Nodes = append(v.Nodes, affinity.Node{Name: name})
	}
	for ch, owners := range sessions {
		var s affinity.Session
		for _, o := range owners {
			s.Owners = append(s.Owners, affinity.Owner{Node: o, Connections: 1})
		}
		v.Sessions[ch] = s
	}
	return v
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func TestOtherNodes(t *testing.T) {
	if got, want := otherNodes(planView(nil), "b"), []string{"a", "c", "d"}; !reflect.DeepEqual(got, want) {
		t.Errorf("otherNodes = %v, want %v", got, want)
	}
	if got := otherNodes(&affinity.View{Nodes: []affinity.Node{{Name: "a"}}}, "a"); got != nil {
		t.Errorf("otherNodes of a lone node = %v, want none", got)
	}
}

func TestPlanPeers(t *testing.T) {
	a1, a2 := ap("10.0.0.1:49020"), ap("10.0.0.1:49021")
	c1, d1, x1 := ap("10.0.0.3:49020"), ap("10.0.0.4:49020"), ap("10.0.0.9:49020")
	for _, tc := range []struct {
		name         string
		addrs, peers map[string]netip.AddrPort
		want         peerPlan
	}{
		{"first view: every other node is set",
			map[string]netip.AddrPort{"a": a1, "c": c1, "d": d1}, nil,
			peerPlan{set: []peerAddr{{"a", a1}, {"c", c1}, {"d", d1}}}},
		{"nothing changed",
			map[string]netip.AddrPort{"a": a1, "c": c1, "d": d1}, map[string]netip.AddrPort{"a": a1, "c": c1, "d": d1},
			peerPlan{}},
		{"an address changed",
			map[string]netip.AddrPort{"a": a2, "c": c1, "d": d1}, map[string]netip.AddrPort{"a": a1, "c": c1, "d": d1},
			peerPlan{set: []peerAddr{{"a", a2}}}},
		{"an unresolved node keeps its address, or stays out",
			map[string]netip.AddrPort{"c": c1}, map[string]netip.AddrPort{"a": a1},
			peerPlan{set: []peerAddr{{"c", c1}}}},
		{"a node gone from the view is removed",
			map[string]netip.AddrPort{"a": a1, "c": c1, "d": d1}, map[string]netip.AddrPort{"a": a1, "c": c1, "d": d1, "x": x1, "e": x1},
			peerPlan{remove: []string{"e", "x"}}},
		{"self is never a peer",
			map[string]netip.AddrPort{"a": a1, "b": x1, "c": c1, "d": d1}, map[string]netip.AddrPort{"a": a1, "c": c1, "d": d1},
			peerPlan{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := planPeers(planView(nil), "b", tc.addrs, tc.peers); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("planPeers = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestPlanChannels(t *testing.T) {
	all := map[string]netip.AddrPort{"a": ap("10.0.0.1:1"), "c": ap("10.0.0.3:1"), "d": ap("10.0.0.4:1")}
	const a, b, c, d = 0, 1, 2, 3 // node indices; this node is b
	for _, tc := range []struct {
		name     string
		sessions map[string][]int
		peers    map[string]netip.AddrPort
		relayed  map[string]map[string]bool
		want     channelPlan
	}{
		{"a session held here alone is not relayed",
			map[string][]int{"x": {b}}, all, nil, channelPlan{}},
		{"a session held elsewhere alone is not relayed",
			map[string][]int{"x": {a, c}}, all, nil, channelPlan{}},
		{"a session shared: relayed with each other owner",
			map[string][]int{"x": {c, b, a}, "y": {b, d}}, all, nil,
			channelPlan{open: []channelPeer{{"x", "a"}, {"x", "c"}, {"y", "d"}}}},
		{"already relayed: nothing to do",
			map[string][]int{"x": {a, b}}, all, map[string]map[string]bool{"x": {"a": true}}, channelPlan{}},
		{"a new owner joins a relayed session",
			map[string][]int{"x": {a, b, c}}, all, map[string]map[string]bool{"x": {"a": true}},
			channelPlan{open: []channelPeer{{"x", "c"}}}},
		{"an owner that is not a peer (unresolved) is left for later",
			map[string][]int{"x": {a, b, c}}, map[string]netip.AddrPort{"c": all["c"]}, nil,
			channelPlan{open: []channelPeer{{"x", "c"}}}},
		{"an owner index out of range is skipped",
			map[string][]int{"x": {b, 7, -1, a}}, all, nil, channelPlan{open: []channelPeer{{"x", "a"}}}},
		{"an owner listed twice is opened once",
			map[string][]int{"x": {b, a, a}}, all, nil, channelPlan{open: []channelPeer{{"x", "a"}}}},
		{"sessions that ended are closed; one this node left stays",
			map[string][]int{"x": {a, c}}, all, map[string]map[string]bool{"x": {"a": true}, "z": {"c": true}, "w": {}},
			channelPlan{close: []string{"w", "z"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := planChannels(planView(tc.sessions), "b", tc.peers, tc.relayed); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("planChannels = %+v, want %+v", got, tc.want)
			}
		})
	}
	t.Run("this node not in the view opens nothing", func(t *testing.T) {
		if got := planChannels(planView(map[string][]int{"x": {a, c}}), "q", all, nil); !reflect.DeepEqual(got, channelPlan{}) {
			t.Errorf("planChannels = %+v, want nothing", got)
		}
	})
}
