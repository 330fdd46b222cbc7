package affinity

import (
	"errors"
	"fmt"
	"math/bits"
)

// Action is what placement decided for one connect.
type Action uint8

const (
	// ActionServe: the contacted node serves the connection.
	ActionServe Action = iota + 1
	// ActionRedirect: the client is sent to another node (a signaling
	// "redirect" to its SignalingURL, or a 307 to its APIURL).
	ActionRedirect
	// ActionRefuse: no node takes the connection; Decision.Reason says why.
	ActionRefuse
)

var actionNames = [...]string{ActionServe: "serve", ActionRedirect: "redirect", ActionRefuse: "refuse"}

// String returns "serve", "redirect" or "refuse".
func (a Action) String() string {
	if int(a) < len(actionNames) && actionNames[a] != "" {
		return actionNames[a]
	}
	return fmt.Sprintf("Action(%d)", uint8(a))
}

// Reasons for a refusal. Decision.Reason is exactly one of these, so callers
// compare with == or errors.Is; Decision.Err wraps it with the node and
// channel in a *RefusedError.
var (
	// ErrNotInMajority: clustering is on and the contacted node is not in a
	// group holding more than half of the regular nodes.
	ErrNotInMajority = errors.New("affinity: node is not in the majority group")
	// ErrUnknownNode: the contacted node is not in the view.
	ErrUnknownNode = errors.New("affinity: contacted node is not in the view")
	// ErrNoCapacity: every node that could take the connection is full
	// (with clustering off: the contacted node is full).
	ErrNoCapacity = errors.New("affinity: no node has capacity")
	// ErrNoUsableNode: no node could take the connection even with room:
	// every node is disconnected, blocked by its mode, or has no capacity.
	ErrNoUsableNode = errors.New("affinity: cluster has no usable node")
	// ErrSessionNodeFull: relay is off and the node holding the channel's
	// session is full; the session cannot grow onto another node.
	ErrSessionNodeFull = errors.New("affinity: the node holding the session is full and relay is off")
	// ErrSessionNodeUnavailable: relay is off and the node holding the
	// channel's session is not connected (or not in the view).
	ErrSessionNodeUnavailable = errors.New("affinity: the node holding the session is not connected and relay is off")
	// ErrNodeBlocked: the only node that may take the connection refuses it
	// by its mode: the node holding the session with relay off, or the node
	// itself with clustering off.
	ErrNodeBlocked = errors.New("affinity: node is blocked by its mode")
)

// Decision is the result of placing one connect.
type Decision struct {
	Action Action
	// Index is the index in View.Nodes of the node that serves (ActionServe:
	// the contacted node; ActionRedirect: the target). On ActionRefuse it is
	// the node the refusal is about (the contacted node, or the node holding
	// the session), or -1 if none.
	Index int
	// Node is the name of the node at Index ("" if Index is -1; on
	// ErrUnknownNode, the contacted name as requested).
	Node string
	// SignalingURL and APIURL are that node's URLs: the "location" of a
	// signaling redirect and the Location of an HTTP 307.
	SignalingURL string
	APIURL       string
	// Reason is nil unless Action is ActionRefuse; then it is one of the
	// package's Err* sentinels.
	Reason error
}

// Err returns nil unless the decision is a refusal; then a *RefusedError
// carrying the reason and the node. It allocates, so callers on a hot path
// test Action or Reason first.
func (d Decision) Err() error {
	if d.Action != ActionRefuse {
		return nil
	}
	return &RefusedError{Reason: d.Reason, Node: d.Node}
}

// RefusedError is a refusal with the data a caller shows or logs.
type RefusedError struct {
	// Reason is one of the package's Err* sentinels.
	Reason error
	// Node is the node the refusal is about, or "".
	Node string
}

func (e *RefusedError) Error() string {
	if e.Node == "" {
		return e.Reason.Error()
	}
	return fmt.Sprintf("%v: %s", e.Reason, e.Node)
}

// Unwrap returns Reason, so errors.Is(err, ErrNoCapacity) works.
func (e *RefusedError) Unwrap() error { return e.Reason }

// Placer decides where one connect goes. Implementations are pure functions
// of their arguments: the same view and request give the same decision, the
// view is never changed, and calls may run concurrently on one view.
type Placer interface {
	Place(v *View, r Request) Decision
}

// Default implements the placement rules of the package documentation.
// Its zero value is ready to use.
type Default struct{}

var _ Placer = Default{}

// Place is Default{}.Place.
func Place(v *View, r Request) Decision { return Default{}.Place(v, r) }

// Place decides where the connect r goes in the view v. It allocates nothing
// and runs in O(nodes × owners of r's session).
func (Default) Place(v *View, r Request) Decision {
	c := v.NodeIndex(r.Contacted)
	if c < 0 {
		return Decision{Action: ActionRefuse, Index: -1, Node: r.Contacted, Reason: ErrUnknownNode}
	}
	p := placement{v: v, c: c}
	if s, ok := v.Sessions[r.ChannelID]; ok {
		p.owners = s.Owners
	}

	if !v.Settings.Cluster {
		// A plain SFU: the contacted node serves or the connect fails.
		switch {
		case !p.admits(c):
			return p.refuse(c, ErrNodeBlocked)
		case p.full(c):
			return p.refuse(c, ErrNoCapacity)
		}
		return p.to(c)
	}
	if !v.InMajority {
		return p.refuse(-1, ErrNotInMajority)
	}
	p.share = v.ExtraCapacity()

	// A connect that follows a redirect is served here whenever this node
	// may serve it: views of two nodes can differ for a moment, and the
	// client SDK follows redirects without a hop limit, so this is what
	// stops ping-pong.
	if r.Redirected && p.usable(c) && (v.Settings.Relay || len(p.owners) == 0 || p.owners[0].Node == c) {
		return p.to(c)
	}

	if !v.Settings.Relay {
		if len(p.owners) == 0 {
			return p.toOrRefuse(p.mostFree(false, 0))
		}
		// One node holds the session; it serves or the connect fails.
		h := p.owners[0].Node
		switch {
		case h < 0 || h >= len(v.Nodes):
			return p.refuse(-1, ErrSessionNodeUnavailable)
		case !v.Nodes[h].Connected:
			return p.refuse(h, ErrSessionNodeUnavailable)
		case !p.admits(h):
			return p.refuse(h, ErrNodeBlocked)
		case p.full(h):
			return p.refuse(h, ErrSessionNodeFull)
		}
		return p.to(h)
	}

	affinity := v.Settings.DefaultAffinity
	switch r.Affinity {
	case AffinityOn:
		affinity = true
	case AffinityOff:
		affinity = false
	}
	if !affinity {
		// Served where it landed, unless that node cannot take it.
		if p.usable(c) {
			return p.to(c)
		}
		return p.toOrRefuse(p.mostFree(false, 0))
	}
	if len(p.owners) == 0 {
		return p.toOrRefuse(p.mostFree(false, 0))
	}
	// Gather on the session's nodes, the gathering node first, as long as
	// one of them has room and is at or under the threshold.
	thr := v.Settings.AffinityThreshold
	for _, o := range p.owners {
		if o.Node >= 0 && o.Node < len(v.Nodes) && (thr <= 0 || o.Connections <= thr) && p.usable(o.Node) {
			return p.to(o.Node)
		}
	}
	if thr <= 0 {
		// No threshold: the session's nodes are all full or unusable.
		return p.toOrRefuse(p.mostFree(false, 0))
	}
	// Another node, at or under the threshold, the most free of them.
	if i := p.mostFree(true, thr); i >= 0 {
		return p.to(i)
	}
	// Every usable node is over the threshold: the one with the fewest
	// connections overall.
	return p.toOrRefuse(p.fewest())
}

// placement is the state of one Place call; it lives on the stack.
type placement struct {
	v      *View
	c      int     // contacted node
	owners []Owner // the channel's session; nil for a new session
	share  int     // ExtraCapacity, computed once
}

// sessionConns returns the session's connections on node i and whether i
// holds part of the session.
func (p *placement) sessionConns(i int) (int, bool) {
	for _, o := range p.owners {
		if o.Node == i {
			return o.Connections, true
		}
	}
	return 0, false
}

// admits reports whether node i's mode lets it take this connection.
func (p *placement) admits(i int) bool {
	switch p.v.Nodes[i].Mode {
	case ModeNormal:
		return true
	case ModeBlockNewSession:
		_, holds := p.sessionConns(i)
		return holds
	default: // ModeBlockNewConnection and unknown modes admit nothing
		return false
	}
}

func (p *placement) full(i int) bool {
	return p.v.Nodes[i].Connections >= p.v.effectiveCapacity(i, p.share)
}

// usable reports whether node i may take this connection now.
func (p *placement) usable(i int) bool {
	return p.v.Nodes[i].Connected && p.admits(i) && !p.full(i)
}

// mostFree returns the usable node with the lowest connections/effective
// capacity (restricted, if underThr, to nodes holding at most thr of the
// session's connections), or -1. It is only called with clustering on.
func (p *placement) mostFree(underThr bool, thr int) int {
	best, bestConns, bestCap := -1, uint64(0), uint64(1)
	nodes := p.v.Nodes
	for i := range nodes {
		// usable(i), inlined: this loop is most of Place's time.
		n := &nodes[i]
		if !n.Connected || n.Capacity <= 0 || n.Mode != ModeNormal && !p.admits(i) {
			continue
		}
		capa := n.Capacity + p.share
		if n.Connections >= capa {
			continue
		}
		conns := clamp(n.Connections)
		if best >= 0 {
			// conns/capa vs bestConns/bestCap, exactly, in 128 bits.
			h1, l1 := bits.Mul64(conns, bestCap)
			h2, l2 := bits.Mul64(bestConns, uint64(capa))
			if h1 > h2 || h1 == h2 && (l1 > l2 || l1 == l2 && !p.before(i, best)) {
				continue
			}
		}
		// Checked last, only for a node that would become the best: the
		// owners' scan is the costly test.
		if underThr {
			if sc, _ := p.sessionConns(i); sc > thr {
				continue
			}
		}
		best, bestConns, bestCap = i, conns, uint64(capa)
	}
	return best
}

// fewest returns the usable node with the fewest connections, or -1.
func (p *placement) fewest() int {
	best := -1
	for i := range p.v.Nodes {
		if !p.usable(i) {
			continue
		}
		if best >= 0 {
			a, b := clamp(p.v.Nodes[i].Connections), clamp(p.v.Nodes[best].Connections)
			if a > b || a == b && !p.before(i, best) {
				continue
			}
		}
		best = i
	}
	return best
}

// before is the tie-break: the contacted node first, then by name.
func (p *placement) before(i, j int) bool {
	if i == p.c || j == p.c {
		return i == p.c
	}
	return p.v.Nodes[i].Name < p.v.Nodes[j].Name
}

func clamp(n int) uint64 {
	if n < 0 {
		return 0
	}
	return uint64(n)
}

func (p *placement) to(i int) Decision {
	n := &p.v.Nodes[i]
	d := Decision{Action: ActionRedirect, Index: i, Node: n.Name, SignalingURL: n.SignalingURL, APIURL: n.APIURL}
	if i == p.c {
		d.Action = ActionServe
	}
	return d
}

// toOrRefuse goes to node i, or, with i == -1, refuses saying whether nodes
// were only full or not usable at all.
func (p *placement) toOrRefuse(i int) Decision {
	if i >= 0 {
		return p.to(i)
	}
	for j := range p.v.Nodes {
		if p.v.Nodes[j].Connected && p.admits(j) && p.v.effectiveCapacity(j, p.share) > 0 {
			return p.refuse(-1, ErrNoCapacity)
		}
	}
	return p.refuse(-1, ErrNoUsableNode)
}

func (p *placement) refuse(i int, reason error) Decision {
	d := Decision{Action: ActionRefuse, Index: i, Reason: reason}
	if i >= 0 {
		d.Node = p.v.Nodes[i].Name
	}
	return d
}
