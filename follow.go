package shoal

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/shoal-sfu/shoal/cluster"
	"github.com/shoal-sfu/shoal/relay"
)

// Following the cluster: what a Node does on each membership event. The
// decisions about the relay are the pure functions of relayplan.go; this
// file holds the I/O around them.

// onEvent follows the cluster: called from the membership's subscription
// goroutine (in order, never concurrently), and once from Start. Leaving
// the majority needs nothing here: the signaling server drops its
// connections itself while the view says so (signaling's Admission).
func (n *Node) onEvent(e cluster.Event) {
	if e.Kind == cluster.EventSessionEnded {
		// A session ended that no node's ReleaseChannelEnded reported: the
		// leader released a failed node's claims, or this node's release
		// that had returned an error ended it. None sent session.destroyed.
		n.sig.SessionEndedInCluster(e.Channel)
		return
	}
	n.reconcile()
}

// reconcile makes the relay's peers and channels match the view: every other
// node is a peer; a channel is relayed with each other owner of its session
// while this node is an owner too; a session that ended closes its relay.
// The decisions are planPeers and planChannels (relayplan.go); here are the
// I/O around them: the peers' addresses are resolved before n.mu is taken,
// and the plans are applied under it.
func (n *Node) reconcile() {
	if n.relay == nil {
		return
	}
	n.reconcileMu.Lock() // one reconcile at a time, so that views apply in order
	defer n.reconcileMu.Unlock()
	v := n.member.Snapshot()
	self := n.cfg.NodeName
	addrs := n.resolvePeers(otherNodes(&v, self))
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.state.Closed() { // Close takes n.mu after marking the node closed
		return
	}
	n.applyPeers(planPeers(&v, self, addrs, n.peers))
	n.applyChannels(planChannels(&v, self, n.peers, n.relayed))
}

// resolvePeers returns the relay address of each named node that has one;
// a node whose address cannot be found is logged and left out.
func (n *Node) resolvePeers(names []string) map[string]netip.AddrPort {
	addrs := make(map[string]netip.AddrPort, len(names))
	for _, name := range names {
		ap, err := n.peerAddr(name)
		if err != nil {
			n.log.Warn("relay: cannot address peer", "peer", name, "err", err)
			continue
		}
		addrs[name] = ap
	}
	return addrs
}

// applyPeers sets and removes the relay's peers as p says; n.mu is held.
// A peer the relay refuses is left out of n.peers, so that no channel is
// opened with it.
func (n *Node) applyPeers(p peerPlan) {
	for _, pa := range p.set {
		if err := n.relay.SetPeer(pa.name, pa.addr); err != nil {
			n.log.Warn("relay: set peer", "peer", pa.name, "err", err)
			continue
		}
		n.peers[pa.name] = pa.addr
	}
	for _, name := range p.remove {
		n.relay.RemovePeer(name)
		delete(n.peers, name)
		for _, peers := range n.relayed {
			delete(peers, name) // opened again if the node comes back
		}
	}
}

// applyChannels opens and closes relayed channels as p says; n.mu is held.
func (n *Node) applyChannels(p channelPlan) {
	for _, cp := range p.open {
		if err := n.relay.OpenChannel(cp.channel, cp.peer); err != nil {
			n.log.Warn("relay: open channel", "channel", cp.channel, "peer", cp.peer, "err", err)
			continue
		}
		if n.relayed[cp.channel] == nil {
			n.relayed[cp.channel] = map[string]bool{}
		}
		n.relayed[cp.channel][cp.peer] = true
		n.log.Debug("relay: channel opened", "channel", cp.channel, "peer", cp.peer)
	}
	for _, ch := range p.close {
		if err := n.relay.CloseChannel(ch); err != nil && !errors.Is(err, relay.ErrNotRelayed) {
			n.log.Warn("relay: close channel", "channel", ch, "err", err)
		}
		delete(n.relayed, ch)
	}
}

// peerAddr is where a node's relay listens: the HOST of its node_name on the
// cluster's relay port.
func (n *Node) peerAddr(node string) (netip.AddrPort, error) {
	nn, err := cluster.ParseNodeName(node)
	if err != nil {
		return netip.AddrPort{}, err
	}
	ip := nn.Addr
	if !ip.IsValid() {
		ctx, cancel := context.WithTimeout(n.life, 2*time.Second) // Close ends it too
		defer cancel()
		ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", nn.Host)
		if err != nil || len(ips) == 0 {
			return netip.AddrPort{}, fmt.Errorf("resolve %s: %w", nn.Host, err)
		}
		ip = ips[0].Unmap()
	}
	return netip.AddrPortFrom(ip, uint16(n.relayPort())), nil
}
