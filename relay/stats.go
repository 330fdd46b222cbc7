package relay

import (
	"sort"
	"sync/atomic"
	"time"
)

// LinkStats counts one link's traffic since the relay started, across
// reconnections.
type LinkStats struct {
	Peer      string
	Connected bool
	// Datagrams sent and received (media, NACKs, pings), with their bytes
	// on the wire.
	PacketsOut, PacketsIn uint64
	BytesOut, BytesIn     uint64
	// Drops counts what was lost on purpose: packets for a down link, for
	// an unknown track or one whose AddRemoteTrack has not returned yet,
	// full control queues, undecodable frames.
	Drops uint64
	// AuthFailures counts datagrams from the peer's address that failed
	// SRTP authentication (forged, replayed or stale).
	AuthFailures uint64
	// Retransmits counts packets resent in answer to the peer's NACKs.
	Retransmits        uint64
	NACKsOut, NACKsIn  uint64
	KeyframesOut       uint64 // keyframe requests sent to the peer
	KeyframesIn        uint64 // keyframe requests the peer sent
	KeyframesCoalesced uint64 // requests absorbed by the rate limit
	Reconnects         uint64
	RTT                time.Duration // last measured round trip; 0 before the first
}

// ChannelStats counts one relayed channel's media and messages, over all
// its links.
type ChannelStats struct {
	Channel               string
	Peers                 []string
	LocalTracks           int
	PacketsOut, PacketsIn uint64 // RTP packets
	BytesOut, BytesIn     uint64 // RTP bytes
	Drops                 uint64
	Retransmits           uint64 // packets resent to peers
	RetransmitsIn         uint64 // resent packets received
	MessagesOut           uint64
	MessagesIn            uint64
}

// Stats is a snapshot of a relay's counters, as plain values.
type Stats struct {
	Links    []LinkStats
	Channels []ChannelStats
	// HandshakeFailures counts control connections that failed TLS: most
	// often a process without the cluster key.
	HandshakeFailures uint64
	// UnknownSource counts datagrams from addresses of no live link.
	UnknownSource uint64
}

type linkCounters struct {
	packetsOut, packetsIn, bytesOut, bytesIn      atomic.Uint64
	drops, authFailures, retransmits              atomic.Uint64
	nacksOut, nacksIn                             atomic.Uint64
	keyframesOut, keyframesIn, keyframesCoalesced atomic.Uint64
	sessions, reconnects                          atomic.Uint64
	dials                                         atomic.Uint64 // dial attempts (the dialling side); tests read it
	rtt                                           atomic.Int64
}

type channelCounters struct {
	packetsOut, packetsIn, bytesOut, bytesIn atomic.Uint64
	drops, retransmits, retransmitsIn        atomic.Uint64
	messagesOut, messagesIn                  atomic.Uint64
}

// Stats returns the relay's counters, links and channels sorted by name.
func (r *Relay) Stats() Stats {
	r.mu.Lock()
	links := make([]*link, 0, len(r.peers))
	for _, l := range r.peers {
		links = append(links, l)
	}
	chans := make([]*channel, 0, len(r.channels))
	for _, ch := range r.channels {
		chans = append(chans, ch)
	}
	r.mu.Unlock()
	st := Stats{HandshakeFailures: r.handshakeFailures.Load(), UnknownSource: r.unknownSource.Load()}
	for _, l := range links {
		c := &l.stats
		st.Links = append(st.Links, LinkStats{
			Peer: l.peer, Connected: l.sess.Load() != nil,
			PacketsOut: c.packetsOut.Load(), PacketsIn: c.packetsIn.Load(),
			BytesOut: c.bytesOut.Load(), BytesIn: c.bytesIn.Load(),
			Drops: c.drops.Load(), AuthFailures: c.authFailures.Load(), Retransmits: c.retransmits.Load(),
			NACKsOut: c.nacksOut.Load(), NACKsIn: c.nacksIn.Load(),
			KeyframesOut: c.keyframesOut.Load(), KeyframesIn: c.keyframesIn.Load(),
			KeyframesCoalesced: c.keyframesCoalesced.Load(),
			Reconnects:         c.reconnects.Load(), RTT: time.Duration(c.rtt.Load()),
		})
	}
	for _, ch := range chans {
		c := &ch.stats
		cs := ChannelStats{
			Channel: ch.name, LocalTracks: len(ch.localTracks()),
			PacketsOut: c.packetsOut.Load(), PacketsIn: c.packetsIn.Load(),
			BytesOut: c.bytesOut.Load(), BytesIn: c.bytesIn.Load(),
			Drops: c.drops.Load(), Retransmits: c.retransmits.Load(), RetransmitsIn: c.retransmitsIn.Load(),
			MessagesOut: c.messagesOut.Load(), MessagesIn: c.messagesIn.Load(),
		}
		for _, l := range ch.linkList() {
			cs.Peers = append(cs.Peers, l.peer)
		}
		sort.Strings(cs.Peers)
		st.Channels = append(st.Channels, cs)
	}
	sort.Slice(st.Links, func(i, j int) bool { return st.Links[i].Peer < st.Links[j].Peer })
	sort.Slice(st.Channels, func(i, j int) bool { return st.Channels[i].Channel < st.Channels[j].Channel })
	return st
}
