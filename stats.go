package shoal

import (
	"cmp"
	"runtime/debug"
	"sync"
	"time"

	"github.com/shoal-sfu/shoal/sfu"
	"github.com/shoal-sfu/shoal/signaling"
)

// The stats the admin API answers (signaling.StatsProvider) and the
// metrics read: the SFU's per-connection and per-track figures, the relay's
// per-link counters and the signaling server's totals, joined here.

// mediaSums are RTP totals of connections.
type mediaSums struct {
	PacketsIn, BytesIn, PacketsOut, BytesOut uint64
	NACKs, Retransmits, KeyframeRequests     uint64
	RetransmitsLimited, NackMissing          uint64
}

func (m *mediaSums) add(o mediaSums) {
	m.PacketsIn += o.PacketsIn
	m.BytesIn += o.BytesIn
	m.PacketsOut += o.PacketsOut
	m.BytesOut += o.BytesOut
	m.NACKs += o.NACKs
	m.Retransmits += o.Retransmits
	m.KeyframeRequests += o.KeyframeRequests
	m.RetransmitsLimited += o.RetransmitsLimited
	m.NackMissing += o.NackMissing
}

func sumsOf(c *sfu.ConnectionStats) mediaSums {
	s := mediaSums{PacketsIn: c.PacketsReceived, BytesIn: c.BytesReceived, PacketsOut: c.PacketsSent, BytesOut: c.BytesSent}
	for _, t := range c.Outbound {
		s.NACKs += t.NACKs
		s.Retransmits += t.Retransmitted
		s.KeyframeRequests += t.KeyframeRequests
		s.RetransmitsLimited += t.RetransmitsLimited
		s.NackMissing += t.NackMissing
	}
	return s
}

// mediaTotals makes the SFU's per-connection counters, which go away with
// their connection, into totals that only grow: each read remembers every
// connection's figures, and a connection gone since the previous read adds
// its last figures to the retired sum. The traffic of a connection between
// the last read and its end is not counted. One map lives across reads
// (an entry per connection, marked with the read that last saw it), so
// that a read allocates nothing for the connections it already knows.
type mediaTotals struct {
	mu      sync.Mutex
	last    map[string]*seenSums
	read    uint64 // the number of the current read
	retired mediaSums
}

// seenSums are a connection's figures at read number read.
type seenSums struct {
	sums mediaSums
	read uint64
}

// observe returns the totals given the current connections' stats.
func (m *mediaTotals) observe(conns []sfu.ConnectionStats) mediaSums {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.last == nil {
		m.last = make(map[string]*seenSums, len(conns))
	}
	m.read++
	var total mediaSums
	for i := range conns {
		s := sumsOf(&conns[i])
		e := m.last[conns[i].ConnectionID]
		if e == nil {
			e = &seenSums{}
			m.last[conns[i].ConnectionID] = e
		}
		e.sums, e.read = s, m.read
		total.add(s)
	}
	for id, e := range m.last {
		if e.read != m.read {
			m.retired.add(e.sums)
			delete(m.last, id)
		}
	}
	total.add(m.retired)
	return total
}

// moduleVersion is Shoal's module version as built into the program
// ("(devel)" in a build of this repository), the report's version when
// Config.Version is empty: tools read Sora's version from it.
var moduleVersion = sync.OnceValue(func() string {
	const path = "github.com/shoal-sfu/shoal"
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Path == path && bi.Main.Version != "" {
			return bi.Main.Version
		}
		for _, d := range bi.Deps {
			if d.Path == path {
				return d.Version
			}
		}
	}
	return "(devel)"
})

// nodeStats is the Node's signaling.StatsProvider.
type nodeStats struct{ n *Node }

var _ signaling.StatsProvider = nodeStats{}

// StatsReport implements signaling.StatsProvider.
func (s nodeStats) StatsReport() signaling.StatsReport {
	n := s.n
	r := signaling.StatsReport{Version: cmp.Or(n.cfg.Version, moduleVersion()), ClusterRelay: []signaling.RelayLinkReport{}}
	n.sig.FillStatsReport(&r)
	m := n.media.observe(n.sfu.Stats())
	r.TotalReceivedSrtp, r.TotalReceivedSrtpByteSize = m.PacketsIn, m.BytesIn
	r.TotalSentSrtp, r.TotalSentSrtpByteSize = m.PacketsOut, m.BytesOut
	if rs := n.member.RaftStats(); rs.State != "" {
		r.Cluster = &signaling.ClusterStatsReport{RaftState: rs.State, RaftTerm: rs.Term, RaftCommitIndex: rs.CommitIndex}
	}
	if n.relay != nil {
		for _, l := range n.relay.Stats().Links {
			r.ClusterRelay = append(r.ClusterRelay, signaling.RelayLinkReport{NodeName: l.Peer,
				TotalReceivedByteSize: l.BytesIn, TotalSentByteSize: l.BytesOut, TotalReceived: l.PacketsIn, TotalSent: l.PacketsOut,
				Connected: l.Connected, TotalReconnects: l.Reconnects, TotalDropped: l.Drops,
				TotalSentNack: l.NACKsOut, TotalReceivedNack: l.NACKsIn, RTTMs: ms(l.RTT)})
		}
	}
	return r
}

// ConnectionStats implements signaling.StatsProvider: every connection of
// the SFU, with the client_id and role signaling knows (a connection that
// gave no client_id has its connection_id as client_id, as in Sora).
func (s nodeStats) ConnectionStats() []signaling.ConnectionStatsReport {
	n := s.n
	infos := map[string]signaling.ConnectionInfo{}
	for _, c := range n.sig.AllConnections() {
		infos[c.ConnectionID] = c
	}
	ts := time.Now().UTC().Format("2006-01-02T15:04:05.000000Z")
	stats := n.sfu.Stats()
	out := make([]signaling.ConnectionStatsReport, 0, len(stats))
	for i := range stats {
		c := &stats[i]
		info := infos[c.ConnectionID]
		clientID := cmp.Or(info.ClientID, c.ConnectionID)
		r := signaling.ConnectionStatsReport{Timestamp: ts, ChannelID: c.ChannelID, ClientID: clientID,
			ConnectionID: c.ConnectionID, Role: info.Role, NodeName: n.cfg.NodeName,
			RTP: signaling.RTPStatsReport{TotalReceivedBytes: c.BytesReceived, TotalSentBytes: c.BytesSent,
				TotalReceivedPackets: c.PacketsReceived, TotalSentPackets: c.PacketsSent},
			TotalReceivedRTP: c.PacketsReceived, TotalReceivedRTPByteSize: c.BytesReceived,
			TotalSentRTP: c.PacketsSent, TotalSentRTPByteSize: c.BytesSent,
			RTTMs: ms(c.RTT), EstimatedBandwidth: c.EstimatedBandwidth,
			Tracks: make([]signaling.TrackStatsReport, 0, len(c.Inbound)+len(c.Outbound))}
		for _, t := range c.Inbound {
			r.Tracks = append(r.Tracks, trackReport("inbound", &t))
		}
		for _, t := range c.Outbound {
			r.Tracks = append(r.Tracks, trackReport("outbound", &t))
		}
		out = append(out, r)
	}
	return out
}

func trackReport(dir string, t *sfu.TrackStats) signaling.TrackStatsReport {
	return signaling.TrackStatsReport{Direction: dir, TrackID: t.TrackID, Kind: t.Kind.String(), MimeType: t.MimeType,
		SSRC: t.SSRC, Packets: t.Packets, Bytes: t.Bytes, PacketsLost: t.PacketsLost, FractionLost: t.FractionLost,
		JitterMs: ms(t.Jitter), RTTMs: ms(t.RTT), NACKs: t.NACKs, Retransmitted: t.Retransmitted,
		RetransmittedBytes: t.RetransmittedBytes, KeyframeRequests: t.KeyframeRequests, Layer: t.Layer}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
