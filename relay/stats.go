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
	// Drops counts what the link dropped on purpose: the sum of Dropped.
	Drops uint64
	// Dropped says why, reason by reason.
	Dropped Drops
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
	// ControlCoalesced counts control frames absorbed by one of their
	// kind already waiting (heartbeats, keyframe requests, a track's
	// demand); control frames are never dropped.
	ControlCoalesced uint64
	// ControlOverflows counts sessions closed because their control queue
	// held its most (65,536 frames: the peer stopped reading); the next
	// session announced the current state again.
	ControlOverflows uint64
	RTT              time.Duration // last measured round trip; 0 before the first
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
	// Drops sums every link's Dropped, plus what no link was involved in
	// (TooLarge).
	Drops Drops
}

// Drops counts what the relay dropped, by reason. Control frames (channel
// and track announcements, demand, keyframe requests, heartbeats) are never
// dropped: they have their own queue, ahead of messages.
type Drops struct {
	// LinkDown: media for a link with no session (it is down, or coming
	// back).
	LinkDown uint64
	// SendQueueFull: datagrams the link's send queue had no room for (the
	// socket or the peer is slower than the tracks).
	SendQueueFull uint64
	// SendFailed: datagrams the socket refused.
	SendFailed uint64
	// MessageQueueFull: messages the link's message queue (Config.QueueLen)
	// had no room for.
	MessageQueueFull uint64
	// NoSession: datagrams that arrived while the link had no session.
	NoSession uint64
	// BadFrame: datagrams whose frame did not decode, or of an unknown kind.
	BadFrame uint64
	// UnknownTrack: media for a track this node does not have.
	UnknownTrack uint64
	// TrackNotReady: media that arrived before the sink's AddRemoteTrack
	// returned.
	TrackNotReady uint64
	// TrackQueueFull: media a remote track's queue (Config.TrackQueueLen)
	// had no room for: its fan-out on this node is slower than its packets.
	TrackQueueFull uint64
	// WriteFailed: media the remote track's TrackWriter refused.
	WriteFailed uint64
	// NoChannel: messages for a channel not relayed with the peer.
	NoChannel uint64
	// TooLarge: packets over the largest the relay carries (1,500 bytes).
	TooLarge uint64
}

// Total is the sum of every reason.
func (d Drops) Total() uint64 {
	return d.LinkDown + d.SendQueueFull + d.SendFailed + d.MessageQueueFull + d.NoSession + d.BadFrame +
		d.UnknownTrack + d.TrackNotReady + d.TrackQueueFull + d.WriteFailed + d.NoChannel + d.TooLarge
}

func (d *Drops) add(o Drops) {
	d.LinkDown += o.LinkDown
	d.SendQueueFull += o.SendQueueFull
	d.SendFailed += o.SendFailed
	d.MessageQueueFull += o.MessageQueueFull
	d.NoSession += o.NoSession
	d.BadFrame += o.BadFrame
	d.UnknownTrack += o.UnknownTrack
	d.TrackNotReady += o.TrackNotReady
	d.TrackQueueFull += o.TrackQueueFull
	d.WriteFailed += o.WriteFailed
	d.NoChannel += o.NoChannel
	d.TooLarge += o.TooLarge
}

// dropCounters are the atomic counters behind Drops.
type dropCounters struct {
	linkDown, sendQueueFull, sendFailed, messageQueueFull atomic.Uint64
	noSession, badFrame, unknownTrack, trackNotReady      atomic.Uint64
	trackQueueFull, writeFailed, noChannel, tooLarge      atomic.Uint64
}

func (c *dropCounters) load() Drops {
	return Drops{
		LinkDown: c.linkDown.Load(), SendQueueFull: c.sendQueueFull.Load(), SendFailed: c.sendFailed.Load(),
		MessageQueueFull: c.messageQueueFull.Load(), NoSession: c.noSession.Load(), BadFrame: c.badFrame.Load(),
		UnknownTrack: c.unknownTrack.Load(), TrackNotReady: c.trackNotReady.Load(),
		TrackQueueFull: c.trackQueueFull.Load(), WriteFailed: c.writeFailed.Load(),
		NoChannel: c.noChannel.Load(), TooLarge: c.tooLarge.Load(),
	}
}

type linkCounters struct {
	packetsOut, packetsIn, bytesOut, bytesIn      atomic.Uint64
	authFailures, retransmits                     atomic.Uint64
	drops                                         dropCounters
	nacksOut, nacksIn                             atomic.Uint64
	keyframesOut, keyframesIn, keyframesCoalesced atomic.Uint64
	sessions, reconnects                          atomic.Uint64
	controlCoalesced, controlOverflows            atomic.Uint64
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
	st.Drops = r.drops.load()
	for _, l := range links {
		c := &l.stats
		dr := c.drops.load()
		st.Drops.add(dr)
		st.Links = append(st.Links, LinkStats{
			Peer: l.peer, Connected: l.sess.Load() != nil,
			PacketsOut: c.packetsOut.Load(), PacketsIn: c.packetsIn.Load(),
			BytesOut: c.bytesOut.Load(), BytesIn: c.bytesIn.Load(),
			Drops: dr.Total(), Dropped: dr, AuthFailures: c.authFailures.Load(), Retransmits: c.retransmits.Load(),
			NACKsOut: c.nacksOut.Load(), NACKsIn: c.nacksIn.Load(),
			KeyframesOut: c.keyframesOut.Load(), KeyframesIn: c.keyframesIn.Load(),
			KeyframesCoalesced: c.keyframesCoalesced.Load(),
			Reconnects:         c.reconnects.Load(), RTT: time.Duration(c.rtt.Load()),
			ControlCoalesced: c.controlCoalesced.Load(),
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
