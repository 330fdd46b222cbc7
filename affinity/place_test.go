package affinity

import (
	"errors"
	"strings"
	"testing"
)

// Settings of the table's four columns.
var (
	relayAffinity   = Settings{Cluster: true, Relay: true, DefaultAffinity: true, AffinityThreshold: 20}
	relayNoAffinity = Settings{Cluster: true, Relay: true, DefaultAffinity: false, AffinityThreshold: 20}
	noRelay         = Settings{Cluster: true, Relay: false, DefaultAffinity: true, AffinityThreshold: 20}
	noCluster       = Settings{}
)

func withThreshold(s Settings, thr int) Settings { s.AffinityThreshold = thr; return s }

// nd is a connected normal node; options change it.
func nd(name string, capacity, conns int, opts ...func(*Node)) Node {
	n := Node{Name: name, Connected: true, Capacity: capacity, Connections: conns,
		SignalingURL: "wss://" + name + "/signaling", APIURL: "https://" + name + "/api"}
	for _, o := range opts {
		o(&n)
	}
	return n
}

func down(n *Node)                     { n.Connected = false }
func temporary(n *Node)                { n.Temporary = true }
func mode(m Mode) func(*Node)          { return func(n *Node) { n.Mode = m } }
func owners(o ...Owner) []Owner        { return o }
func own(node, conns int) Owner        { return Owner{Node: node, Connections: conns} }
func req(ch, contacted string) Request { return Request{ChannelID: ch, Contacted: contacted} }

type placeCase struct {
	name     string
	settings Settings
	nodes    []Node
	session  []Owner // session of channel "ch"; nil: none
	minority bool
	req      Request
	// want: "serve x", "redirect x" or the refusal reason.
	want   string
	reason error
	node   string // for refusals: the node named
}

// Three nodes a, b, c; b is the most free, c holds "ch" unless said.
var abc = []Node{nd("a", 100, 50), nd("b", 100, 10), nd("c", 100, 30)}

func abcWith(i int, f func(*Node)) []Node {
	ns := append([]Node(nil), abc...)
	f(&ns[i])
	return ns
}

func full(n *Node) { n.Connections = n.Capacity }

var tableCases = []placeCase{
	// relay + affinity
	{name: "relay+affinity/new session/most free", settings: relayAffinity, nodes: abc, req: req("new", "a"), want: "redirect b"},
	{name: "relay+affinity/new session/tie serves contacted", settings: relayAffinity,
		nodes: []Node{nd("a", 100, 10), nd("b", 100, 10), nd("c", 200, 20)}, req: req("new", "b"), want: "serve b"},
	{name: "relay+affinity/new session/tie without contacted goes by name", settings: relayAffinity,
		nodes: []Node{nd("a", 100, 100), nd("b", 100, 10), nd("c", 200, 20)}, req: req("new", "a"), want: "redirect b"},
	{name: "relay+affinity/existing session/its node", settings: relayAffinity, nodes: abc, session: owners(own(2, 5)), req: req("ch", "a"), want: "redirect c"},
	{name: "relay+affinity/existing session/held here", settings: relayAffinity, nodes: abc, session: owners(own(0, 5)), req: req("ch", "a"), want: "serve a"},
	{name: "relay+affinity/new session/contacted full", settings: relayAffinity, nodes: abcWith(0, full), req: req("new", "a"), want: "redirect b"},
	{name: "relay+affinity/existing session/contacted full holding it", settings: relayAffinity, nodes: abcWith(0, full), session: owners(own(0, 5)), req: req("ch", "a"), want: "redirect b"},
	{name: "relay+affinity/existing session/contacted full, its node has room", settings: relayAffinity, nodes: abcWith(0, full), session: owners(own(2, 5)), req: req("ch", "a"), want: "redirect c"},

	// relay, no affinity
	{name: "relay-affinity/new session/contacted", settings: relayNoAffinity, nodes: abc, req: req("new", "a"), want: "serve a"},
	{name: "relay-affinity/existing session/contacted", settings: relayNoAffinity, nodes: abc, session: owners(own(2, 5)), req: req("ch", "a"), want: "serve a"},
	{name: "relay-affinity/new session/contacted full", settings: relayNoAffinity, nodes: abcWith(0, full), req: req("new", "a"), want: "redirect b"},
	{name: "relay-affinity/existing session/contacted full", settings: relayNoAffinity, nodes: abcWith(0, full), session: owners(own(2, 5)), req: req("ch", "a"), want: "redirect b"},

	// no relay
	{name: "no relay/new session/most free", settings: noRelay, nodes: abc, req: req("new", "a"), want: "redirect b"},
	{name: "no relay/existing session/its node", settings: noRelay, nodes: abc, session: owners(own(2, 5)), req: req("ch", "a"), want: "redirect c"},
	{name: "no relay/existing session/its node full", settings: noRelay, nodes: abcWith(2, full), session: owners(own(2, 5)), req: req("ch", "a"), reason: ErrSessionNodeFull, node: "c"},
	{name: "no relay/new session/contacted full", settings: noRelay, nodes: abcWith(0, full), req: req("new", "a"), want: "redirect b"},
	{name: "no relay/existing session/contacted full", settings: noRelay, nodes: abcWith(0, full), session: owners(own(2, 5)), req: req("ch", "a"), want: "redirect c"},
	{name: "no relay/existing session/contacted full holding it", settings: noRelay, nodes: abcWith(0, full), session: owners(own(0, 5)), req: req("ch", "a"), reason: ErrSessionNodeFull, node: "a"},
	{name: "no relay/existing session/contacted full, its node full", settings: noRelay,
		nodes: []Node{nd("a", 100, 100), nd("b", 100, 10), nd("c", 100, 100)}, session: owners(own(2, 5)), req: req("ch", "a"), reason: ErrSessionNodeFull, node: "c"},
	{name: "no relay/affinity override ignored", settings: noRelay, nodes: abc, session: owners(own(2, 5)),
		req: Request{ChannelID: "ch", Contacted: "a", Affinity: AffinityOff}, want: "redirect c"},

	// no cluster
	{name: "no cluster/new session/contacted", settings: noCluster, nodes: abc, req: req("new", "a"), want: "serve a"},
	{name: "no cluster/existing session/contacted", settings: noCluster, nodes: abc, session: owners(own(2, 5)), req: req("ch", "a"), want: "serve a"},
	{name: "no cluster/new session/contacted full", settings: noCluster, nodes: abcWith(0, full), req: req("new", "a"), reason: ErrNoCapacity, node: "a"},
	{name: "no cluster/existing session/contacted full", settings: noCluster, nodes: abcWith(0, full), session: owners(own(0, 5)), req: req("ch", "a"), reason: ErrNoCapacity, node: "a"},
	{name: "no cluster/ignores majority and failures", settings: noCluster, minority: true,
		nodes: []Node{nd("a", 100, 99, down), nd("b", 100, 0, down)}, req: req("new", "a"), want: "serve a"},
	{name: "no cluster/failed node gives no share", settings: noCluster,
		nodes: []Node{nd("a", 100, 100), nd("b", 100, 0, down)}, req: req("new", "a"), reason: ErrNoCapacity, node: "a"},
}

var thresholdCases = []placeCase{
	{name: "at threshold stays", settings: withThreshold(relayAffinity, 5), nodes: abc, session: owners(own(2, 5)), req: req("ch", "a"), want: "redirect c"},
	{name: "over threshold, another owner under it", settings: withThreshold(relayAffinity, 5),
		nodes: []Node{nd("a", 100, 10), nd("b", 100, 40), nd("c", 100, 30)}, session: owners(own(2, 6), own(1, 2)), req: req("ch", "a"), want: "redirect b"},
	{name: "over threshold, other owners over too: most free", settings: withThreshold(relayAffinity, 5),
		nodes: []Node{nd("a", 100, 50), nd("b", 100, 5), nd("c", 100, 6), nd("d", 100, 20)}, session: owners(own(2, 6), own(1, 7)), req: req("ch", "a"), want: "redirect d"},
	{name: "over threshold, most free is contacted", settings: withThreshold(relayAffinity, 5),
		nodes: []Node{nd("a", 100, 10), nd("b", 100, 20), nd("c", 100, 6)}, session: owners(own(2, 6)), req: req("ch", "a"), want: "serve a"},
	{name: "every usable node over threshold: fewest connections", settings: withThreshold(relayAffinity, 5),
		nodes: []Node{nd("a", 100, 60), nd("b", 300, 40), nd("c", 100, 100)}, session: owners(own(0, 6), own(1, 7)), req: req("ch", "a"), want: "redirect b"},
	{name: "fewest connections counts nodes, not ratio", settings: withThreshold(relayAffinity, 5),
		nodes: []Node{nd("a", 1000, 50), nd("b", 100, 40)}, session: owners(own(0, 6), own(1, 7)), req: req("ch", "a"), want: "redirect b"},
	{name: "fewest connections tie serves contacted", settings: withThreshold(relayAffinity, 5),
		nodes: []Node{nd("a", 100, 40), nd("b", 100, 40)}, session: owners(own(1, 6), own(0, 7)), req: req("ch", "a"), want: "serve a"},
	{name: "chosen node full: most free", settings: withThreshold(relayAffinity, 5), nodes: abcWith(2, full), session: owners(own(2, 3)), req: req("ch", "a"), want: "redirect b"},
	{name: "threshold 0 means none", settings: withThreshold(relayAffinity, 0), nodes: abc, session: owners(own(2, 100)), req: req("ch", "a"), want: "redirect c"},
	{name: "threshold 0, its node full: most free", settings: withThreshold(relayAffinity, 0), nodes: abcWith(2, full), session: owners(own(2, 100)), req: req("ch", "a"), want: "redirect b"},
	{name: "override on with default off gathers", settings: relayNoAffinity, nodes: abc, session: owners(own(2, 5)),
		req: Request{ChannelID: "ch", Contacted: "a", Affinity: AffinityOn}, want: "redirect c"},
	{name: "override off with default on stays", settings: relayAffinity, nodes: abc, session: owners(own(2, 5)),
		req: Request{ChannelID: "ch", Contacted: "a", Affinity: AffinityOff}, want: "serve a"},
	{name: "override off, contacted full", settings: relayAffinity, nodes: abcWith(0, full), session: owners(own(2, 5)),
		req: Request{ChannelID: "ch", Contacted: "a", Affinity: AffinityOff}, want: "redirect b"},
	{name: "unknown override follows default", settings: relayAffinity, nodes: abc, session: owners(own(2, 5)),
		req: Request{ChannelID: "ch", Contacted: "a", Affinity: Affinity(9)}, want: "redirect c"},
}

var modeCases = []placeCase{
	{name: "block_new_session not a target of a new session", settings: relayAffinity, nodes: abcWith(1, mode(ModeBlockNewSession)), req: req("new", "a"), want: "redirect c"},
	{name: "block_new_session takes its own session", settings: relayAffinity, nodes: abcWith(2, mode(ModeBlockNewSession)), session: owners(own(2, 5)), req: req("ch", "a"), want: "redirect c"},
	{name: "block_new_session contacted, relay without affinity, held elsewhere", settings: relayNoAffinity,
		nodes: abcWith(0, mode(ModeBlockNewSession)), session: owners(own(2, 5)), req: req("ch", "a"), want: "redirect b"},
	{name: "block_new_session contacted, relay without affinity, held here", settings: relayNoAffinity,
		nodes: abcWith(0, mode(ModeBlockNewSession)), session: owners(own(0, 5), own(2, 1)), req: req("ch", "a"), want: "serve a"},
	{name: "block_new_connection holder, relay: elsewhere", settings: relayAffinity, nodes: abcWith(2, mode(ModeBlockNewConnection)), session: owners(own(2, 5)), req: req("ch", "a"), want: "redirect b"},
	{name: "block_new_connection not a target", settings: relayAffinity, nodes: abcWith(1, mode(ModeBlockNewConnection)), req: req("new", "a"), want: "redirect c"},
	{name: "block_new_connection contacted", settings: relayNoAffinity, nodes: abcWith(0, mode(ModeBlockNewConnection)), req: req("new", "a"), want: "redirect b"},
	{name: "block_new_connection holder, no relay", settings: noRelay, nodes: abcWith(2, mode(ModeBlockNewConnection)), session: owners(own(2, 5)), req: req("ch", "a"), reason: ErrNodeBlocked, node: "c"},
	{name: "block_new_session holder, no relay", settings: noRelay, nodes: abcWith(2, mode(ModeBlockNewSession)), session: owners(own(2, 5)), req: req("ch", "a"), want: "redirect c"},
	{name: "no cluster, block_new_connection", settings: noCluster, nodes: abcWith(0, mode(ModeBlockNewConnection)), req: req("ch", "a"), reason: ErrNodeBlocked, node: "a"},
	{name: "no cluster, block_new_session, new session", settings: noCluster, nodes: abcWith(0, mode(ModeBlockNewSession)), req: req("new", "a"), reason: ErrNodeBlocked, node: "a"},
	{name: "no cluster, block_new_session, its session", settings: noCluster, nodes: abcWith(0, mode(ModeBlockNewSession)), session: owners(own(0, 3)), req: req("ch", "a"), want: "serve a"},
	{name: "unknown mode admits nothing", settings: relayNoAffinity, nodes: abcWith(0, mode(Mode(7))), req: req("new", "a"), want: "redirect b"},
	{name: "every node blocked", settings: relayAffinity,
		nodes: []Node{nd("a", 100, 0, mode(ModeBlockNewConnection)), nd("b", 100, 0, mode(ModeBlockNewSession))}, req: req("new", "a"), reason: ErrNoUsableNode},
	{name: "every node full", settings: relayAffinity,
		nodes: []Node{nd("a", 100, 100), nd("b", 100, 120, mode(ModeBlockNewSession)), nd("c", 50, 50)}, req: req("new", "a"), reason: ErrNoCapacity},
	{name: "every usable node full, no relay", settings: noRelay,
		nodes: []Node{nd("a", 100, 100), nd("b", 100, 0, mode(ModeBlockNewConnection))}, req: req("new", "a"), reason: ErrNoCapacity},
}

var clusterCases = []placeCase{
	{name: "minority refuses", settings: relayAffinity, minority: true, nodes: abc, req: req("new", "b"), reason: ErrNotInMajority},
	{name: "minority refuses without relay", settings: noRelay, minority: true, nodes: abc, session: owners(own(1, 1)), req: req("ch", "b"), reason: ErrNotInMajority},
	{name: "unknown contacted node", settings: relayAffinity, nodes: abc, req: req("new", "zz"), reason: ErrUnknownNode, node: "zz"},
	{name: "disconnected most free skipped", settings: relayAffinity, nodes: abcWith(1, down), req: req("new", "a"), want: "redirect c"},
	{name: "disconnected holder, relay: elsewhere", settings: relayAffinity, nodes: abcWith(2, down), session: owners(own(2, 5)), req: req("ch", "a"), want: "redirect b"},
	{name: "disconnected holder, no relay", settings: noRelay, nodes: abcWith(2, down), session: owners(own(2, 5)), req: req("ch", "a"), reason: ErrSessionNodeUnavailable, node: "c"},
	{name: "holder index out of range, no relay", settings: noRelay, nodes: abc, session: owners(own(7, 5)), req: req("ch", "a"), reason: ErrSessionNodeUnavailable},
	{name: "owner index out of range skipped, relay", settings: relayAffinity, nodes: abc, session: owners(own(-1, 5), own(2, 1)), req: req("ch", "a"), want: "redirect c"},
	{name: "contacted not connected is not served", settings: relayNoAffinity, nodes: abcWith(0, down), req: req("new", "a"), want: "redirect b"},
	{name: "session with no owners is new", settings: noRelay, nodes: abc, session: []Owner{}, req: req("ch", "a"), want: "redirect b"},
	{name: "zero capacity node takes nothing", settings: relayAffinity,
		nodes: []Node{nd("a", 100, 50), nd("b", 0, 0), nd("c", -5, 0)}, req: req("new", "a"), want: "serve a"},
	{name: "negative connections count as zero", settings: relayAffinity,
		nodes: []Node{nd("a", 100, 0), nd("b", 100, -5)}, req: req("new", "a"), want: "serve a"},
	{name: "temporary node is a target", settings: relayAffinity,
		nodes: []Node{nd("a", 100, 50), nd("b", 100, 40), nd("t", 100, 0, temporary)}, req: req("new", "a"), want: "redirect t"},
	{name: "ratio, not free count", settings: relayAffinity,
		nodes: []Node{nd("a", 100, 50), nd("b", 1000, 600)}, req: req("new", "b"), want: "redirect a"},
	{name: "over the limit after recovery is full", settings: relayNoAffinity,
		nodes: []Node{nd("a", 100, 140), nd("b", 100, 60), nd("c", 100, 100)}, req: req("new", "a"), want: "redirect b"},

	// capacity kept through failures, as placement sees it
	{name: "failure share lets a busy node serve", settings: relayNoAffinity,
		nodes: []Node{nd("a", 100, 140), nd("b", 100, 60), nd("c", 100, 0, down)}, req: req("new", "a"), want: "serve a"},
	{name: "failure share reaches its limit", settings: relayNoAffinity,
		nodes: []Node{nd("a", 100, 150), nd("b", 100, 60), nd("c", 100, 0, down)}, req: req("new", "a"), want: "redirect b"},
	{name: "failure share counts in most free", settings: relayAffinity,
		nodes: []Node{nd("a", 100, 75), nd("b", 100, 0, down), nd("t", 200, 140, temporary)}, req: req("new", "t"), want: "redirect a"},
	{name: "temporary failure moves nothing", settings: relayNoAffinity,
		nodes: []Node{nd("a", 100, 100), nd("b", 100, 60), nd("t", 100, 0, down, temporary)}, req: req("new", "a"), want: "redirect b"},

	// redirected connects
	{name: "redirected served here with relay", settings: relayAffinity, nodes: abc, session: owners(own(2, 5)),
		req: Request{ChannelID: "ch", Contacted: "a", Redirected: true}, want: "serve a"},
	{name: "redirected, here full: placed again", settings: relayAffinity, nodes: abcWith(0, full), session: owners(own(2, 5)),
		req: Request{ChannelID: "ch", Contacted: "a", Redirected: true}, want: "redirect c"},
	{name: "redirected, no relay, held elsewhere", settings: noRelay, nodes: abc, session: owners(own(2, 5)),
		req: Request{ChannelID: "ch", Contacted: "a", Redirected: true}, want: "redirect c"},
	{name: "redirected, no relay, new session", settings: noRelay, nodes: abc,
		req: Request{ChannelID: "new", Contacted: "a", Redirected: true}, want: "serve a"},
	{name: "redirected, minority", settings: relayAffinity, minority: true, nodes: abc,
		req: Request{ChannelID: "new", Contacted: "a", Redirected: true}, reason: ErrNotInMajority},
}

func runPlaceCases(t *testing.T, cases []placeCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := &View{Settings: tc.settings, Nodes: tc.nodes, InMajority: !tc.minority,
				Sessions: map[string]Session{"other": {Owners: owners(own(1, 1))}}}
			if tc.session != nil {
				v.Sessions["ch"] = Session{Owners: tc.session}
			}
			d := Place(v, tc.req)
			if d2 := (Default{}).Place(v, tc.req); d2 != d {
				t.Fatalf("not deterministic: %+v then %+v", d, d2)
			}
			checkDecision(t, v, tc.req, d, tc.want, tc.reason, tc.node)
		})
	}
}

func checkDecision(t *testing.T, v *View, r Request, d Decision, want string, reason error, node string) {
	t.Helper()
	if reason != nil {
		if d.Action != ActionRefuse || d.Reason != reason || d.Node != node {
			t.Fatalf("got %+v, want refusal %v about %q", d, reason, node)
		}
		err := d.Err()
		var re *RefusedError
		if !errors.Is(err, reason) || !errors.As(err, &re) || re.Node != node || !strings.HasPrefix(err.Error(), "affinity: ") {
			t.Fatalf("Err() = %v", err)
		}
		return
	}
	got := d.Action.String() + " " + d.Node
	if got != want || d.Reason != nil || d.Err() != nil {
		t.Fatalf("got %q (%+v), want %q", got, d, want)
	}
	n := v.Nodes[d.Index]
	if n.Name != d.Node || n.SignalingURL != d.SignalingURL || n.APIURL != d.APIURL {
		t.Fatalf("decision %+v does not match node %+v", d, n)
	}
	if (d.Action == ActionServe) != (d.Node == r.Contacted) {
		t.Fatalf("serve must be the contacted node: %+v, contacted %q", d, r.Contacted)
	}
}

// TestPlaceTable has one case for each cell of the placement table (at
// least), plus the choices the table leaves open.
func TestPlaceTable(t *testing.T)     { runPlaceCases(t, tableCases) }
func TestPlaceThreshold(t *testing.T) { runPlaceCases(t, thresholdCases) }
func TestPlaceModes(t *testing.T)     { runPlaceCases(t, modeCases) }
func TestPlaceCluster(t *testing.T)   { runPlaceCases(t, clusterCases) }

func TestActionString(t *testing.T) {
	for a, want := range map[Action]string{ActionServe: "serve", ActionRedirect: "redirect", ActionRefuse: "refuse", 0: "Action(0)", 9: "Action(9)"} {
		if got := a.String(); got != want {
			t.Errorf("Action(%d).String() = %q, want %q", a, got, want)
		}
	}
}

func TestRefusedErrorWithoutNode(t *testing.T) {
	d := Place(&View{Settings: relayAffinity, Nodes: abc}, req("x", "a"))
	if err := d.Err(); err == nil || err.Error() != ErrNotInMajority.Error() {
		t.Fatalf("Err() = %v", err)
	}
}

func TestPlaceAllocatesNothing(t *testing.T) {
	v := &View{Settings: withThreshold(relayAffinity, 5), InMajority: true,
		Nodes:    []Node{nd("a", 100, 50), nd("b", 100, 10), nd("c", 100, 30), nd("d", 100, 0, down)},
		Sessions: map[string]Session{"ch": {Owners: owners(own(2, 6), own(1, 7))}}}
	reqs := []Request{req("ch", "a"), req("new", "a"), req("ch", "zz"), {ChannelID: "ch", Contacted: "b", Redirected: true}}
	var sink Decision
	if n := testing.AllocsPerRun(100, func() {
		for _, r := range reqs {
			sink = Place(v, r)
		}
	}); n != 0 {
		t.Fatalf("Place allocates %v times per run", n)
	}
	_ = sink
}
