package shoal

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"

	"github.com/shoal-sfu/shoal/affinity"
)

// What the relay should have open, as pure functions of the cluster view
// and of what is open now. Node.reconcile resolves the peers' addresses
// (DNS, outside any lock), then applies planPeers and, once the peers are
// set, planChannels.

// peerPlan is how the relay's peers change to match a view.
type peerPlan struct {
	set    []peerAddr // new peers, and peers whose address changed
	remove []string   // peers no longer in the view
}

type peerAddr struct {
	name string
	addr netip.AddrPort
}

// channelPlan is how the relayed channels change to match a view.
type channelPlan struct {
	open  []channelPeer // channel to relay with peer
	close []string      // channels whose session ended
}

type channelPeer struct {
	channel, peer string
}

// otherNodes returns the names of the view's nodes other than self: the
// relay's peers, whose addresses reconcile resolves before planning.
func otherNodes(v *affinity.View, self string) []string {
	var names []string
	for _, nd := range v.Nodes {
		if nd.Name != self {
			names = append(names, nd.Name)
		}
	}
	return names
}

// planPeers: every node of the view other than self is a peer, at its
// address in addrs. A node missing from addrs (its address could not be
// resolved) keeps the address it has in peers, if any. A peer not in the
// view is removed. peers is what the relay has now; it is not changed.
func planPeers(v *affinity.View, self string, addrs, peers map[string]netip.AddrPort) peerPlan {
	var p peerPlan
	for _, nd := range v.Nodes {
		if nd.Name == self {
			continue
		}
		ap, ok := addrs[nd.Name]
		if !ok {
			continue
		}
		if cur, ok := peers[nd.Name]; !ok || cur != ap {
			p.set = append(p.set, peerAddr{nd.Name, ap})
		}
	}
	for name := range peers {
		if v.NodeIndex(name) < 0 {
			p.remove = append(p.remove, name)
		}
	}
	slices.Sort(p.remove)
	return p
}

// planChannels: while self owns part of a channel's session, the channel is
// relayed with each other owner that is a peer (in peers) and not relayed
// with already (in relayed: channel → peer → true). A relayed channel whose
// session ended is closed. peers and relayed are what the relay has now,
// after the peer plan was applied; they are not changed.
func planChannels(v *affinity.View, self string, peers map[string]netip.AddrPort, relayed map[string]map[string]bool) channelPlan {
	var p channelPlan
	me := v.NodeIndex(self)
	for ch, s := range v.Sessions {
		if !slices.ContainsFunc(s.Owners, func(o affinity.Owner) bool { return o.Node == me }) {
			continue
		}
		for _, o := range s.Owners {
			if o.Node == me || o.Node < 0 || o.Node >= len(v.Nodes) {
				continue
			}
			peer := v.Nodes[o.Node].Name
			if _, ok := peers[peer]; !ok || relayed[ch][peer] {
				continue
			}
			p.open = append(p.open, channelPeer{ch, peer})
		}
	}
	for ch := range relayed {
		if _, ok := v.Sessions[ch]; !ok {
			p.close = append(p.close, ch)
		}
	}
	slices.SortFunc(p.open, func(a, b channelPeer) int {
		return cmp.Or(strings.Compare(a.channel, b.channel), strings.Compare(a.peer, b.peer))
	})
	p.open = slices.Compact(p.open) // a node listed twice among the owners is opened once
	slices.Sort(p.close)
	return p
}
