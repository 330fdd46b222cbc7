package cluster

import (
	"maps"
	"net"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/hashicorp/serf/serf"

	"github.com/shoal-sfu/shoal/affinity"
)

const (
	vA = "a@10.0.0.1"
	vB = "b@10.0.0.2"
	vC = "c@10.0.0.3"
	vT = "t@10.0.0.4"
)

func member(name string, status serf.MemberStatus, tags map[string]string) serf.Member {
	return serf.Member{Name: name, Addr: net.ParseIP("10.9.9.9"), Status: status, Tags: tags}
}

// clusterInputs is node a's inputs in a cluster of voters a, b, c and the
// temporary node t: b and t alive, c failed; b's facts replicated, c's and
// t's only gossiped.
func clusterInputs() viewInputs {
	return viewInputs{
		self: vA, boot: "boot-a", cluster: true, settings: affinity.DefaultSettings(),
		selfInfo: NodeInfo{Name: vA, MaxConnections: 10, APIURL: "https://a/api"},
		selfLoad: loadReport{Node: vA, Total: 1, Channels: map[string]int{"x": 1}},
		servers: []raft.Server{
			{ID: vA, Suffrage: raft.Voter}, {ID: vB, Suffrage: raft.Voter},
			{ID: vC, Suffrage: raft.Voter}, {ID: vT, Suffrage: raft.Nonvoter},
		},
		leader: vB, lastIndex: 7, leaderAge: 50 * time.Millisecond, outAge: time.Minute, contactBound: 3 * time.Second,
		fsm: fsmState{
			Channels: map[string][]string{"x": {vB, vA}, "gone": {"z@10.0.0.26"}},
			Infos:    map[string]NodeInfo{vB: {Name: vB, MaxConnections: 20, APIURL: "https://b/api", Version: "v1"}},
		},
		members: map[string]serf.Member{
			vB: member(vB, serf.StatusAlive, map[string]string{tagMode: "1", tagReason: "maintenance"}),
			vC: member(vC, serf.StatusFailed, map[string]string{tagMax: "30", tagAPI: "https://c/api", tagRPC: "49011"}),
			vT: member(vT, serf.StatusAlive, map[string]string{tagRole: "temporary", tagMode: "9"}),
		},
		loads: map[string]loadReport{
			vB: {Node: vB, Total: 5, Channels: map[string]int{"x": 4}},
			vC: {Node: vC, Total: 7},
		},
		now: time.Unix(1700000000, 0),
	}
}

func TestComputeViewCluster(t *testing.T) {
	in := clusterInputs()
	st := computeView(in)
	if !st.initialised || !st.view.InMajority || st.leader != vB {
		t.Fatalf("initialised %v, InMajority %v, leader %q; want true, true, %q", st.initialised, st.view.InMajority, st.leader, vB)
	}
	if !slices.Equal(st.voters, []string{vA, vB, vC}) {
		t.Fatalf("voters %v", st.voters)
	}
	if st.view.Settings != in.settings || !st.view.Now.Equal(in.now) {
		t.Fatalf("settings %+v, now %v", st.view.Settings, st.view.Now)
	}
	want := []affinity.Node{
		{Name: vA, Connected: true, Capacity: 10, Connections: 1, APIURL: "https://a/api"},
		{Name: vB, Connected: true, Capacity: 20, Connections: 5, APIURL: "https://b/api", Mode: affinity.ModeBlockNewSession},
		{Name: vC, Capacity: 30, APIURL: "https://c/api"}, // failed: no connections counted
		{Name: vT, Temporary: true, Connected: true},      // unknown mode tag: normal
	}
	if !reflect.DeepEqual(st.view.Nodes, want) {
		t.Fatalf("nodes\n got %+v\nwant %+v", st.view.Nodes, want)
	}
	if s := st.nodes[1]; s.ModeReason != "maintenance" || s.Mode != "block_new_session" || s.Version != "v1" {
		t.Fatalf("b listed as %+v", s)
	}
	if s := st.nodes[2]; s.Connected || s.MaxConnections != 30 {
		t.Fatalf("c listed as %+v", s)
	}
	// The session of a node that is not listed is not shown.
	wantSess := map[string]affinity.Session{"x": {Owners: []affinity.Owner{{Node: 1, Connections: 4}, {Node: 0, Connections: 1}}}}
	if !reflect.DeepEqual(st.view.Sessions, wantSess) {
		t.Fatalf("sessions %+v", st.view.Sessions)
	}
	wantCh := []ChannelStatus{{ChannelID: "x", Owners: []ChannelOwner{{vB, true}, {vA, true}}}}
	if !reflect.DeepEqual(st.channels, wantCh) {
		t.Fatalf("channels %+v", st.channels)
	}
	if _, ok := in.loads[vA]; ok {
		t.Fatal("computeView wrote into its inputs")
	}
}

func TestComputeViewMajority(t *testing.T) {
	in := clusterInputs()
	in.members[vB] = member(vB, serf.StatusLeft, nil)
	if st := computeView(in); st.view.InMajority || !st.initialised {
		t.Fatalf("a alone of 3 voters: InMajority %v, initialised %v", st.view.InMajority, st.initialised)
	}
	// A temporary node alive beside this one does not make a majority.
	in.members[vT] = member(vT, serf.StatusAlive, map[string]string{tagRole: "temporary"})
	if computeView(in).view.InMajority {
		t.Fatal("a temporary node counted for the majority")
	}
}

func TestComputeViewNotMember(t *testing.T) {
	in := clusterInputs()
	in.servers = in.servers[1:] // a is not in the configuration
	st := computeView(in)
	if st.initialised || st.view.InMajority {
		t.Fatalf("initialised %v, InMajority %v; want false, false", st.initialised, st.view.InMajority)
	}
	if len(st.view.Nodes) != 1 || st.view.Nodes[0].Name != vA || len(st.view.Sessions) != 0 || st.channels != nil {
		t.Fatalf("a non-member sees %+v, sessions %v, channels %v; want itself alone", st.view.Nodes, st.view.Sessions, st.channels)
	}

	in = clusterInputs()
	in.servers = nil // before Start
	if st := computeView(in); st.initialised || st.view.InMajority || len(st.view.Nodes) != 1 {
		t.Fatalf("no Raft configuration: %+v", st)
	}
}

func TestComputeViewTemporarySelf(t *testing.T) {
	in := clusterInputs()
	in.self, in.boot, in.temporary = vT, "run-2", true
	in.selfInfo = NodeInfo{Name: vT, Temporary: true, Boot: "run-2"}
	in.members = map[string]serf.Member{vA: member(vA, serf.StatusAlive, nil), vB: member(vB, serf.StatusAlive, nil)}
	// In the configuration, but the registered run is an earlier one.
	in.fsm.Infos = map[string]NodeInfo{vT: {Name: vT, Temporary: true, Boot: "run-1"}}
	if st := computeView(in); st.initialised || st.view.InMajority {
		t.Fatalf("another run of a temporary node: initialised %v, InMajority %v", st.initialised, st.view.InMajority)
	}
	in.fsm.Infos[vT] = NodeInfo{Name: vT, Temporary: true, Boot: "run-2"}
	st := computeView(in)
	if !st.initialised || !st.view.InMajority {
		t.Fatalf("the registered run: initialised %v, InMajority %v", st.initialised, st.view.InMajority)
	}
	if i := st.view.NodeIndex(vT); i < 0 || !st.view.Nodes[i].Temporary {
		t.Fatalf("the temporary node itself: %+v", st.view.Nodes)
	}
}

func TestComputeViewClusterOff(t *testing.T) {
	in := viewInputs{
		self: vA, settings: affinity.Settings{AffinityThreshold: 20},
		selfInfo: NodeInfo{Name: vA, MaxConnections: 10},
		selfMode: affinity.ModeBlockNewConnection, selfReason: "disk full",
		selfLoad: loadReport{Node: vA, Total: 3, Channels: map[string]int{"x": 3}},
		fsm:      fsmState{Channels: map[string][]string{"x": {vA}}, Infos: map[string]NodeInfo{}},
		loads:    map[string]loadReport{},
	}
	st := computeView(in)
	if !st.initialised || !st.view.InMajority || st.voters != nil || st.leader != "" {
		t.Fatalf("cluster off: %+v", st)
	}
	want := []NodeStatus{{Name: vA, Connected: true, Mode: "block_new_connection", ModeReason: "disk full", MaxConnections: 10, Connections: 3}}
	if !reflect.DeepEqual(st.nodes, want) {
		t.Fatalf("nodes %+v", st.nodes)
	}
	if s := st.view.Sessions["x"]; len(s.Owners) != 1 || s.Owners[0].Connections != 3 {
		t.Fatalf("sessions %+v", st.view.Sessions)
	}
}

func TestViewChanges(t *testing.T) {
	old := &state{
		view: affinity.View{InMajority: true},
		nodes: []NodeStatus{
			{Name: vA, Connected: true, Mode: "normal"},
			{Name: vB, Connected: true, Mode: "normal"},
			{Name: vC, Connected: true, Mode: "normal"},
		},
		channels: []ChannelStatus{
			{ChannelID: "same", Owners: []ChannelOwner{{vA, true}}},
			{ChannelID: "moved", Owners: []ChannelOwner{{vA, true}}},
			{ChannelID: "ended", Owners: []ChannelOwner{{vB, true}}},
		},
	}
	cur := &state{
		view: affinity.View{InMajority: false},
		nodes: []NodeStatus{
			{Name: vA, Connected: true, Mode: "normal"},
			{Name: vB, Connected: false, Mode: "normal"},
			{Name: vT, Connected: true, Mode: "normal", Temporary: true},
		},
		channels: []ChannelStatus{
			{ChannelID: "moved", Owners: []ChannelOwner{{vA, true}, {vB, false}}},
			{ChannelID: "new", Owners: []ChannelOwner{{vT, true}}},
			{ChannelID: "same", Owners: []ChannelOwner{{vA, true}}},
		},
	}
	want := []Event{
		{Kind: EventMajority, InMajority: false},
		{Kind: EventNode, Node: vB, Connected: false},
		{Kind: EventNode, Node: vT, Connected: true},
		{Kind: EventNode, Node: vC, Removed: true},
		{Kind: EventChannel, Channel: "moved"},
		{Kind: EventChannel, Channel: "new"},
		{Kind: EventChannel, Channel: "ended", Removed: true},
	}
	if got := viewChanges(old, cur); !reflect.DeepEqual(got, want) {
		t.Fatalf("events\n got %+v\nwant %+v", got, want)
	}
	if got := viewChanges(cur, cur); len(got) != 0 {
		t.Fatalf("no change gave %+v", got)
	}
}

// The Raft part of the majority: gossip says every voter is alive, but no
// leader reached this node (a configuration no leader serves, as InitCluster
// beside a running cluster made), or none since it was cut off.
func TestComputeViewLeaderContact(t *testing.T) {
	in := clusterInputs()
	in.members[vC] = member(vC, serf.StatusAlive, nil)
	if st := computeView(in); !st.view.InMajority || !st.gossipMajority || !st.leaderHeard {
		t.Fatalf("all alive, leader heard: InMajority %v", st.view.InMajority)
	}
	for _, tc := range []struct {
		name              string
		leaderAge, outAge time.Duration
	}{
		{"never heard from a leader", -1, -1},
		{"leader contact older than the bound", in.contactBound + time.Second, -1},
		{"no leader contact since the majority came back", 2 * time.Second, time.Second},
	} {
		in := in
		in.leaderAge, in.outAge = tc.leaderAge, tc.outAge
		st := computeView(in)
		if st.view.InMajority || !st.initialised || !st.gossipMajority || st.leaderHeard {
			t.Errorf("%s: InMajority %v, initialised %v, gossip majority %v; want false, true, true", tc.name, st.view.InMajority, st.initialised, st.gossipMajority)
		}
	}
	// A regular node that is not a voter does not count itself in.
	in.servers = slices.Clone(in.servers)
	in.servers[0].Suffrage = raft.Nonvoter
	if st := computeView(in); st.view.InMajority {
		t.Error("a regular node that is a non-voter counted itself in the majority")
	}
}

// Only the nodes of the configuration are listed: the facts of a node that
// is not in it (a register that failed halfway, a purged node that wrote
// after its purge) show nothing.
func TestComputeViewListsOnlyTheConfiguration(t *testing.T) {
	const late = "late@10.0.0.9"
	in := clusterInputs()
	in.fsm.Infos = maps.Clone(in.fsm.Infos)
	in.fsm.Infos[late] = NodeInfo{Name: late, MaxConnections: 50, APIURL: "https://late/api"}
	in.members[late] = member(late, serf.StatusAlive, nil)
	in.fsm.Channels = map[string][]string{"y": {late}}
	st := computeView(in)
	if st.view.NodeIndex(late) >= 0 || len(st.nodes) != 4 {
		t.Fatalf("a node outside the configuration is listed: %+v", st.nodes)
	}
	if len(st.view.Sessions) != 0 || len(st.channels) != 0 {
		t.Fatalf("its session is listed: %+v", st.channels)
	}
}

// A purged node: its own configuration left it out, or a node of the
// majority told it that a later one does. It does not serve, lists itself
// alone, blocked, with the reason.
func TestComputeViewExcluded(t *testing.T) {
	check := func(name string, in viewInputs) {
		t.Helper()
		st := computeView(in)
		if !st.excluded || st.initialised || st.view.InMajority {
			t.Fatalf("%s: excluded %v, initialised %v, InMajority %v", name, st.excluded, st.initialised, st.view.InMajority)
		}
		want := NodeStatus{Name: vA, Connected: true, Mode: "block_new_connection", ModeReason: excludedReason, MaxConnections: 10, APIURL: "https://a/api", Connections: 1}
		if len(st.nodes) != 1 || st.nodes[0] != want {
			t.Fatalf("%s: lists %+v", name, st.nodes)
		}
	}
	in := clusterInputs()
	in.servers, in.wasMember = in.servers[1:], true
	check("its removal reached it", in)

	// Catching up after a register, it goes through configurations without
	// itself: not a member yet, not excluded.
	in.wasMember = false
	if st := computeView(in); st.excluded || st.initialised {
		t.Fatalf("catching up: excluded %v, initialised %v", st.excluded, st.initialised)
	}

	in = clusterInputs()
	in.excludedAt = in.lastIndex + 1
	check("told by the majority", in)

	// Its log went past what it was told (registered again): a member.
	in.lastIndex = in.excludedAt
	if st := computeView(in); st.excluded || !st.initialised || !st.view.InMajority {
		t.Fatalf("registered again: excluded %v, initialised %v, InMajority %v", st.excluded, st.initialised, st.view.InMajority)
	}
	// Never a member: not excluded, just not initialised.
	in = clusterInputs()
	in.servers = nil
	if st := computeView(in); st.excluded || st.initialised {
		t.Fatalf("never a member: excluded %v, initialised %v", st.excluded, st.initialised)
	}
}
