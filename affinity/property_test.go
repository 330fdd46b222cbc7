package affinity

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
)

// The property tests check Place against an oracle written from the rules
// (docs/placement.md) separately from the implementation, over many seeded
// random views.

const propertyViews = 20000

func randomView(rng *rand.Rand) *View {
	v := &View{
		Settings: Settings{
			Cluster:           rng.IntN(10) != 0,
			Relay:             rng.IntN(2) == 0,
			DefaultAffinity:   rng.IntN(2) == 0,
			AffinityThreshold: []int{-1, 0, 1, 2, 3, 5, 20}[rng.IntN(7)],
		},
		InMajority: rng.IntN(10) != 0,
		Sessions:   map[string]Session{},
	}
	n := 1 + rng.IntN(7)
	for i := range n {
		capa := 1 + rng.IntN(10)
		if rng.IntN(10) == 0 {
			capa = 0
		}
		m := ModeNormal
		switch rng.IntN(7) {
		case 0:
			m = ModeBlockNewSession
		case 1:
			m = ModeBlockNewConnection
		}
		name := fmt.Sprintf("n%d", i)
		v.Nodes = append(v.Nodes, Node{
			Name: name, Temporary: rng.IntN(4) == 0, Connected: rng.IntN(7) != 0, Mode: m,
			Capacity: capa, Connections: rng.IntN(capa + 4),
			SignalingURL: "wss://" + name + "/signaling", APIURL: "https://" + name + "/api",
		})
	}
	for ch := range 4 {
		if rng.IntN(5) < 2 {
			continue
		}
		k := 1
		if v.Settings.Relay {
			k = 1 + rng.IntN(min(3, n))
		}
		var os []Owner
		for _, node := range rng.Perm(n)[:k] {
			os = append(os, Owner{Node: node, Connections: rng.IntN(7)})
		}
		v.Sessions[fmt.Sprintf("c%d", ch)] = Session{Owners: os}
	}
	return v
}

func randomRequest(rng *rand.Rand, v *View) Request {
	r := Request{
		ChannelID:  fmt.Sprintf("c%d", rng.IntN(5)), // c4 never has a session
		Contacted:  "zz",
		Affinity:   Affinity(rng.IntN(3)),
		Redirected: rng.IntN(3) == 0,
	}
	if rng.IntN(20) != 0 {
		r.Contacted = v.Nodes[rng.IntN(len(v.Nodes))].Name
	}
	return r
}

// oracle holds what the rules say about one node for one request.
type oracle struct {
	v      *View
	owners []Owner
	eff    []int
}

func newOracle(v *View, r Request) *oracle {
	o := &oracle{v: v, owners: v.Sessions[r.ChannelID].Owners}
	failed, remaining := 0, 0
	for _, n := range v.Nodes {
		if n.Capacity > 0 && n.Connected {
			remaining++
		}
		if n.Capacity > 0 && !n.Connected && !n.Temporary {
			failed += n.Capacity
		}
	}
	share := 0
	if v.Settings.Cluster && remaining > 0 {
		share = failed / remaining
		if share*remaining < failed {
			share++
		}
	}
	for _, n := range v.Nodes {
		e := 0
		if n.Capacity > 0 && (n.Connected || !v.Settings.Cluster) {
			e = n.Capacity + share
		}
		o.eff = append(o.eff, e)
	}
	return o
}

func (o *oracle) holds(i int) bool {
	for _, w := range o.owners {
		if w.Node == i {
			return true
		}
	}
	return false
}

func (o *oracle) admits(i int) bool {
	m := o.v.Nodes[i].Mode
	return m == ModeNormal || m == ModeBlockNewSession && o.holds(i)
}

func (o *oracle) full(i int) bool { return o.v.Nodes[i].Connections >= o.eff[i] }

func (o *oracle) usable(i int) bool {
	return o.v.Nodes[i].Connected && o.admits(i) && !o.full(i)
}

func (o *oracle) anyUsable() bool {
	for i := range o.v.Nodes {
		if o.usable(i) {
			return true
		}
	}
	return false
}

// freer reports whether node i is strictly less loaded than node j.
func (o *oracle) freer(i, j int) bool {
	return o.v.Nodes[i].Connections*o.eff[j] < o.v.Nodes[j].Connections*o.eff[i]
}

func TestPlaceProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(20261123, 3))
	counts := map[string]int{}
	for range propertyViews {
		v := randomView(rng)
		if err := v.Validate(); err != nil {
			t.Fatalf("random view invalid: %v", err)
		}
		for range 4 {
			r := randomRequest(rng, v)
			d := Place(v, r)
			counts[d.Action.String()]++
			if err := checkProperties(v, r, d); err != nil {
				t.Fatalf("%v\nrequest %+v\ndecision %+v\nview %+v", err, r, d, *v)
			}
		}
	}
	// The generator must reach every outcome, or the test proves little.
	for _, a := range []string{"serve", "redirect", "refuse"} {
		if counts[a] < propertyViews/20 {
			t.Errorf("only %d decisions %s out of %d", counts[a], a, 4*propertyViews)
		}
	}
	t.Logf("decisions: %v", counts)
}

func checkProperties(v *View, r Request, d Decision) error {
	if d2 := Place(v, r); d2 != d {
		return fmt.Errorf("not deterministic: then %+v", d2)
	}
	c := v.NodeIndex(r.Contacted)
	o := newOracle(v, r)
	s := v.Settings
	existing := len(o.owners) > 0
	affinity := r.Affinity == AffinityOn || r.Affinity == AffinityUnset && s.DefaultAffinity

	switch d.Action {
	case ActionRedirect:
		if !s.Cluster {
			return errors.New("redirect with clustering off")
		}
		if d.Index == c || d.Index < 0 || d.Index >= len(v.Nodes) {
			return errors.New("redirect to itself or out of range")
		}
		if !o.usable(d.Index) {
			return errors.New("redirect to a disconnected, blocked or full node")
		}
		n := v.Nodes[d.Index]
		if d.Node != n.Name || d.SignalingURL != n.SignalingURL || d.APIURL != n.APIURL || d.Reason != nil {
			return errors.New("redirect does not carry the target's name and URLs")
		}
		// No ping-pong: the target serves, whether or not the client says
		// it was redirected.
		for _, redirected := range []bool{true, false} {
			r2 := r
			r2.Contacted, r2.Redirected = n.Name, redirected
			if d2 := Place(v, r2); d2.Action != ActionServe || d2.Index != d.Index {
				return fmt.Errorf("ping-pong: the target (redirected=%v) answers %+v", redirected, d2)
			}
		}
	case ActionServe:
		if d.Index != c || c < 0 || d.Node != r.Contacted || d.Reason != nil {
			return errors.New("serve on another node than the contacted one")
		}
		if !s.Cluster {
			if !o.admits(c) || o.full(c) {
				return errors.New("plain SFU serves while blocked or full")
			}
			break
		}
		if !v.InMajority {
			return errors.New("served outside the majority")
		}
		if !o.usable(c) {
			return errors.New("served on a disconnected, blocked or full node")
		}
		if !s.Relay && existing && o.owners[0].Node != c {
			return errors.New("relay off: served a session held by another node")
		}
	case ActionRefuse:
		if d.Reason == nil || d.Err() == nil {
			return errors.New("refusal without reason")
		}
		switch {
		case c < 0:
			if d.Reason != ErrUnknownNode {
				return errors.New("unknown contacted node: wrong reason")
			}
		case !s.Cluster:
			if o.admits(c) && !o.full(c) {
				return errors.New("plain SFU refuses though it could serve")
			}
		case !v.InMajority:
			if d.Reason != ErrNotInMajority {
				return errors.New("minority: wrong reason")
			}
		case !s.Relay && existing:
			if h := o.owners[0].Node; o.usable(h) {
				return errors.New("relay off: refused though the session's node can take it")
			}
		default:
			if o.anyUsable() {
				return errors.New("refused though a node can take the connection")
			}
		}
	default:
		return fmt.Errorf("unknown action %v", d.Action)
	}

	// A redirected connect stays where it landed whenever it may.
	if s.Cluster && v.InMajority && c >= 0 && r.Redirected && o.usable(c) && (s.Relay || !existing || o.owners[0].Node == c) && d.Action != ActionServe {
		return errors.New("redirected connect not served though the node can serve it")
	}
	// Where the table says "contacted node", it serves if it can.
	if s.Cluster && v.InMajority && c >= 0 && s.Relay && !affinity && o.usable(c) && d.Action != ActionServe {
		return errors.New("relay without affinity: contacted node can serve but did not")
	}
	// Where the table says "most free", no usable node is freer, and a tie
	// keeps the connection on the contacted node.
	mostFree := s.Cluster && v.InMajority && c >= 0 && !r.Redirected && !existing && (!s.Relay || affinity)
	if mostFree && d.Action != ActionRefuse {
		for i := range v.Nodes {
			if o.usable(i) && o.freer(i, d.Index) {
				return fmt.Errorf("node %s is freer than the chosen one", v.Nodes[i].Name)
			}
		}
		if o.usable(c) && !o.freer(d.Index, c) && d.Index != c {
			return errors.New("tie did not go to the contacted node")
		}
	}
	// With affinity, an owner with room at or under the threshold gathers.
	if s.Cluster && v.InMajority && c >= 0 && s.Relay && affinity && existing && !(r.Redirected && o.usable(c)) {
		for _, w := range o.owners {
			thr := s.AffinityThreshold
			if o.usable(w.Node) && (thr <= 0 || w.Connections <= thr) {
				if d.Index != w.Node {
					return fmt.Errorf("affinity: owner %s can take it, chose %s", v.Nodes[w.Node].Name, d.Node)
				}
				break
			}
		}
	}
	return nil
}

// TestPlaceDoesNotChangeView: Place reads the view and nothing else.
func TestPlaceDoesNotChangeView(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for range 200 {
		v := randomView(rng)
		before := fmt.Sprintf("%+v", *v)
		for range 10 {
			Place(v, randomRequest(rng, v))
		}
		if after := fmt.Sprintf("%+v", *v); after != before {
			t.Fatalf("view changed:\n%s\n%s", before, after)
		}
	}
}
