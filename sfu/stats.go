package sfu

// Statistics of connections and tracks, for monitoring and metrics.

import (
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// TrackStats describes one track of a connection: one it publishes
// (inbound, from the client) or one it receives (outbound, to the client).
type TrackStats struct {
	// TrackID and StreamID are the track's TrackInfo.ID and StreamID (the
	// publishing connection's id).
	TrackID, StreamID string
	Kind              webrtc.RTPCodecType
	// MimeType is the codec, "video/VP9".
	MimeType string
	// SSRC is the stream's SSRC on this connection: the client's for an
	// inbound track, the server's for an outbound one.
	SSRC uint32

	// Packets and Bytes count the RTP packets and their payload bytes
	// received (inbound) or forwarded (outbound), retransmissions not
	// included.
	Packets, Bytes uint64
	// PacketsLost is, inbound, the packets missing from the sequence so
	// far (RFC 3550's cumulative loss: late and repaired packets count as
	// received); outbound, the cumulative loss the client last reported.
	PacketsLost int64
	// FractionLost is the loss over the last report interval, 0 to 1:
	// inbound, what the server measured since the previous call of Stats
	// on this connection; outbound, the client's last receiver report.
	FractionLost float64
	// Jitter is the interarrival jitter (RFC 3550): measured by the server
	// (inbound) or reported by the client (outbound).
	Jitter time.Duration
	// RTT is the round-trip time to the client from its receiver reports
	// (outbound tracks only); 0 when not known yet.
	RTT time.Duration

	// NACKs counts the NACK packets the client sent about the track
	// (outbound), NackedPackets the packets they asked for.
	NACKs, NackedPackets uint64
	// Retransmitted and RetransmittedBytes count the packets resent to the
	// client from the source's shared buffer (outbound), as RTX when
	// negotiated; NackMissing the ones asked for that the buffer no longer
	// (or never) had; NackForwarded those of them asked of a relayed
	// track's origin (RetransmitRequester).
	Retransmitted, RetransmittedBytes, NackMissing, NackForwarded uint64
	// RetransmitsLimited counts the resends skipped because the
	// subscriber's retransmission budget (a tenth of what it was
	// forwarded, plus two packets, per 500 ms) was spent (outbound).
	RetransmitsLimited uint64
	// KeyframeRequests counts the PLI and FIR packets the client sent
	// (outbound).
	KeyframeRequests uint64
	// RTX is true when retransmissions go as RTX (outbound).
	RTX bool
	// Undecodable is true when the client's answer left out the track's
	// codec: nothing is forwarded (outbound).
	Undecodable bool

	// Layer is the simulcast layer forwarded ("r0", "r1", "r2"), empty for
	// a track without layers or none forwarded (outbound).
	Layer string
}

// ConnectionStats describes one connection: its transport and its tracks.
type ConnectionStats struct {
	ConnectionID, ChannelID string
	// RTT is the round-trip time of the connection's ICE candidate pair
	// (STUN checks); 0 before it is connected.
	RTT time.Duration
	// PacketsReceived, BytesReceived, PacketsSent and BytesSent sum the
	// tracks': media received from the client and forwarded to it.
	PacketsReceived, BytesReceived, PacketsSent, BytesSent uint64
	// EstimatedBandwidth is the downlink bandwidth estimate toward the
	// client, in bits per second; 0 when no estimate is made.
	EstimatedBandwidth uint64
	// PacerQueued counts the video packets of keyframe bursts the pacer
	// held back, PacerDropped those it dropped, its queue full.
	PacerQueued, PacerDropped uint64
	// Inbound are the tracks the connection publishes, Outbound the tracks
	// it receives.
	Inbound, Outbound []TrackStats
}

// downStats are the counters of one down track. The fan-out adds to
// packets and bytes under source.mu, or its spread worker's lock
// (downTrack.lockSent; plain adds cost it less than atomic ones); the rest
// is written by the track's RTCP reader.
type downStats struct {
	packets, bytes             uint64 // under source.mu
	nacks, nacked, nackMissing atomic.Uint64
	nackForwarded, rtxLimited  atomic.Uint64
	resent, resentBytes        atomic.Uint64
	keyframeRequests           atomic.Uint64
	fractionLost               atomic.Uint32 // in 1/256
	jitter                     atomic.Uint32 // in RTP timestamp units
	cumulativeLost             atomic.Int64
	rtt                        atomic.Int64 // ns
}

// recvStats measures a stream as the SFU receives it (RFC 3550 A.1, A.3,
// A.8): packets, bytes, loss and jitter. Updated and read under source.mu.
type recvStats struct {
	started  bool
	ssrc     uint32
	baseSeq  uint16
	maxSeq   uint16
	cycles   uint32
	received uint64
	bytes    uint64
	transit  int64 // arrival minus RTP timestamp, in timestamp units
	jitter   float64
	// at the previous Stats call, for FractionLost
	expectedPrior, receivedPrior uint64
	fraction                     float64
}

// update counts one packet that arrived at now (mono ns).
func (r *recvStats) update(h *rtp.Header, payloadLen int, now int64, clock uint32) {
	arrival := now / int64(time.Microsecond) * int64(clock) / 1e6
	if !r.started {
		r.started = true
		r.ssrc, r.baseSeq, r.maxSeq = h.SSRC, h.SequenceNumber, h.SequenceNumber
		r.transit = arrival - int64(h.Timestamp)
	} else {
		if d := h.SequenceNumber - r.maxSeq; d != 0 && d < 1<<15 {
			if h.SequenceNumber < r.maxSeq {
				r.cycles++
			}
			r.maxSeq = h.SequenceNumber
		}
		transit := arrival - int64(h.Timestamp)
		d := float64(transit - r.transit)
		r.transit = transit
		if d < 0 {
			d = -d
		}
		r.jitter += (d - r.jitter) / 16
	}
	r.received++
	r.bytes += uint64(payloadLen)
}

// fill writes the stream's figures into ts; with interval, FractionLost
// is the loss since the previous call with interval.
func (r *recvStats) fill(ts *TrackStats, clock uint32, interval bool) {
	if !r.started {
		return
	}
	ts.SSRC = r.ssrc
	ts.Packets, ts.Bytes = r.received, r.bytes
	expected := uint64(r.cycles)<<16 + uint64(r.maxSeq) - uint64(r.baseSeq) + 1
	ts.PacketsLost = int64(expected) - int64(r.received)
	if interval {
		exp, rec := expected-r.expectedPrior, r.received-r.receivedPrior
		r.expectedPrior, r.receivedPrior = expected, r.received
		r.fraction = 0
		if exp > 0 && exp > rec {
			r.fraction = float64(exp-rec) / float64(exp)
		}
	}
	ts.FractionLost = r.fraction
	if clock > 0 {
		ts.Jitter = time.Duration(r.jitter * float64(time.Second) / float64(clock))
	}
}

// Stats returns the connection's statistics: its transport, the tracks it
// publishes (one entry per simulcast layer received) and the tracks it
// receives. The inbound FractionLost covers the time since the previous
// call.
func (c *Connection) Stats() ConnectionStats {
	cs := ConnectionStats{ConnectionID: c.id, ChannelID: c.channelID, EstimatedBandwidth: c.bwe.Load()}
	if p := c.pacer; p != nil {
		cs.PacerQueued, cs.PacerDropped = p.queued.Load(), p.dropped.Load()
	}
	c.mu.Lock()
	pc := c.pc
	downs := make([]*downTrack, 0, len(c.downs))
	for _, d := range c.downs {
		downs = append(downs, d)
	}
	c.mu.Unlock()
	if pc != nil {
		if sctp := pc.SCTP(); sctp != nil && sctp.Transport() != nil && sctp.Transport().ICETransport() != nil {
			if ps, ok := sctp.Transport().ICETransport().GetSelectedCandidatePairStats(); ok {
				cs.RTT = time.Duration(ps.CurrentRoundTripTime * float64(time.Second))
			}
		}
	}
	for _, d := range downs {
		ts := d.trackStats()
		cs.PacketsSent += ts.Packets
		cs.BytesSent += ts.Bytes
		cs.Outbound = append(cs.Outbound, ts)
	}
	if c.ch != nil {
		for _, src := range c.ch.localSources(c) {
			for _, ts := range src.inboundStats() {
				cs.PacketsReceived += ts.Packets
				cs.BytesReceived += ts.Bytes
				cs.Inbound = append(cs.Inbound, ts)
			}
		}
	}
	slices.SortFunc(cs.Outbound, func(a, b TrackStats) int { return strings.Compare(a.TrackID, b.TrackID) })
	return cs
}

// trackStats is the outbound TrackStats of a down track.
func (d *downTrack) trackStats() TrackStats {
	info := d.src.info
	st := &d.stats
	mu := d.lockSent()
	packets, bytes := st.packets, st.bytes
	mu.Unlock()
	ts := TrackStats{
		TrackID: info.ID, StreamID: info.StreamID, Kind: info.Kind, MimeType: info.Codec.MimeType,
		Packets: packets, Bytes: bytes,
		PacketsLost:   st.cumulativeLost.Load(),
		FractionLost:  float64(st.fractionLost.Load()) / 256,
		RTT:           time.Duration(st.rtt.Load()),
		NACKs:         st.nacks.Load(),
		NackedPackets: st.nacked.Load(), NackMissing: st.nackMissing.Load(),
		NackForwarded: st.nackForwarded.Load(), RetransmitsLimited: st.rtxLimited.Load(),
		Retransmitted: st.resent.Load(), RetransmittedBytes: st.resentBytes.Load(),
		KeyframeRequests: st.keyframeRequests.Load(),
		Undecodable:      d.undecodable.Load(),
	}
	if info.Codec.ClockRate > 0 {
		ts.Jitter = time.Duration(uint64(st.jitter.Load()) * uint64(time.Second) / uint64(info.Codec.ClockRate))
	}
	if b := d.binding.Load(); b != nil {
		ts.SSRC, ts.RTX = b.ssrc, b.rtxSSRC != 0
	}
	if d.sim != nil {
		if l := int8(d.sim.cur.Load()); l >= 0 {
			ts.Layer = string(ridOf(l))
		}
	}
	return ts
}

// inboundStats is the inbound TrackStats of a local source: one, or one
// per simulcast layer received.
func (s *source) inboundStats() []TrackStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []TrackStats
	for l := range s.rstats {
		r := &s.rstats[l]
		if !r.started {
			continue
		}
		ts := TrackStats{TrackID: s.info.ID, StreamID: s.info.StreamID, Kind: s.info.Kind, MimeType: s.info.Codec.MimeType}
		if s.sim != nil {
			ts.Layer = string(ridOf(int8(l)))
		}
		r.fill(&ts, s.info.Codec.ClockRate, true)
		out = append(out, ts)
	}
	return out
}

// Stats returns the statistics of every connection of the node, ordered
// by connection id.
func (s *SFU) Stats() []ConnectionStats {
	s.mu.Lock()
	conns := make([]*Connection, 0, len(s.conns))
	for _, c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	slices.SortFunc(conns, func(a, b *Connection) int { return strings.Compare(a.id, b.id) })
	out := make([]ConnectionStats, 0, len(conns))
	for _, c := range conns {
		out = append(out, c.Stats())
	}
	return out
}

// localSources returns the sources published by c.
func (ch *Channel) localSources(c *Connection) []*source {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	var out []*source
	for _, s := range ch.sources {
		if s.local == c {
			out = append(out, s)
		}
	}
	return out
}
