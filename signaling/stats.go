package signaling

import (
	"sync/atomic"
	"time"

	"github.com/shoal-sfu/shoal/affinity"
	"github.com/shoal-sfu/shoal/signaling/wire"
)

// serverCounters are the server's totals since New, for GetStatsReport
// and the metrics.
type serverCounters struct {
	connCreated, connDestroyed, connFailed atomic.Uint64
	durationNs, setupNs                    atomic.Int64
	sessionCreated, sessionDestroyed       atomic.Uint64
	placeServe, placeRedirect, placeRefuse atomic.Uint64
}

// countPlacement counts one of placement's final decisions on a connect.
func (s *Server) countPlacement(a affinity.Action) {
	switch a {
	case affinity.ActionServe:
		s.counters.placeServe.Add(1)
	case affinity.ActionRedirect:
		s.counters.placeRedirect.Add(1)
	case affinity.ActionRefuse:
		s.counters.placeRefuse.Add(1)
	}
}

// ServerCounters are the signaling server's totals since New.
type ServerCounters struct {
	// ConnectionsCreated counts connection.created (a client answered its
	// offer), ConnectionsDestroyed their ends, ConnectionsFailed the served
	// connections that ended before an answer.
	ConnectionsCreated, ConnectionsDestroyed, ConnectionsFailed uint64
	// Ongoing is the number of served connections now.
	Ongoing int
	// TotalDuration sums the lifetimes of the destroyed connections;
	// TotalSetup the times from offer to answer of the created ones.
	TotalDuration, TotalSetup time.Duration
	// SessionsCreated and SessionsDestroyed count the session events this
	// node sent (one node per session in a cluster).
	SessionsCreated, SessionsDestroyed uint64
	// PlacedServe, PlacedRedirect and PlacedRefuse count placement's
	// decisions on connects (with a Cluster): served here, redirected,
	// refused.
	PlacedServe, PlacedRedirect, PlacedRefuse uint64
}

// Counters returns the server's totals.
func (s *Server) Counters() ServerCounters {
	c := &s.counters
	s.mu.Lock()
	ongoing := s.total
	s.mu.Unlock()
	return ServerCounters{ConnectionsCreated: c.connCreated.Load(), ConnectionsDestroyed: c.connDestroyed.Load(),
		ConnectionsFailed: c.connFailed.Load(), Ongoing: ongoing,
		TotalDuration: time.Duration(c.durationNs.Load()), TotalSetup: time.Duration(c.setupNs.Load()),
		SessionsCreated: c.sessionCreated.Load(), SessionsDestroyed: c.sessionDestroyed.Load(),
		PlacedServe: c.placeServe.Load(), PlacedRedirect: c.placeRedirect.Load(), PlacedRefuse: c.placeRefuse.Load()}
}

func (s *Server) countCreated(info ConnectionInfo) {
	s.counters.connCreated.Add(1)
	s.counters.setupNs.Add(int64(time.Since(info.CreatedTime)))
}

func (s *Server) countEnded(info ConnectionInfo, created bool) {
	if !created {
		s.counters.connFailed.Add(1)
		return
	}
	s.counters.connDestroyed.Add(1)
	s.counters.durationNs.Add(int64(time.Since(info.CreatedTime)))
}

// sessionBegan counts and sends session.created.
func (s *Server) sessionBegan(channelID string) {
	s.counters.sessionCreated.Add(1)
	now := time.Now()
	s.emit(Event{Type: EventSessionCreated, ChannelID: channelID, Time: now, Created: now})
}

// sessionEnded counts and sends session.destroyed.
func (s *Server) sessionEnded(channelID string) {
	s.counters.sessionDestroyed.Add(1)
	s.emit(Event{Type: EventSessionDestroyed, ChannelID: channelID})
}

// StatsReport is GetStatsReport's answer for one node: the keys of Sora's
// report that monitoring reads (sora_exporter's), plus node_name. The
// "srtp" totals count RTP packets and their payload bytes as the SFU
// received and forwarded them (retransmissions not included).
type StatsReport struct {
	Version                    string `json:"version"`
	NodeName                   string `json:"node_name"`
	TotalConnectionCreated     uint64 `json:"total_connection_created"`
	TotalConnectionUpdated     uint64 `json:"total_connection_updated"`
	TotalConnectionDestroyed   uint64 `json:"total_connection_destroyed"`
	TotalSuccessfulConnections uint64 `json:"total_successful_connections"`
	TotalOngoingConnections    int    `json:"total_ongoing_connections"`
	TotalFailedConnections     uint64 `json:"total_failed_connections"`
	TotalDurationSec           int64  `json:"total_duration_sec"`
	AverageDurationSec         int64  `json:"average_duration_sec"`
	AverageSetupTimeMsec       int64  `json:"average_setup_time_msec"`
	TotalSessionCreated        uint64 `json:"total_session_created"`
	TotalSessionDestroyed      uint64 `json:"total_session_destroyed"`
	TotalTurnUDPConnections    uint64 `json:"total_turn_udp_connections"`
	TotalTurnTCPConnections    uint64 `json:"total_turn_tcp_connections"`
	// TotalReceivedInvalidTurnTCPPacket is always 0: Shoal has no TURN
	// server (nor the TURN totals above); kept for the tools that read it.
	TotalReceivedInvalidTurnTCPPacket uint64 `json:"total_received_invalid_turn_tcp_packet"`

	TotalSuccessfulEventWebhook uint64 `json:"total_successful_event_webhook"`
	TotalFailedEventWebhook     uint64 `json:"total_failed_event_webhook"`
	TotalIgnoredEventWebhook    uint64 `json:"total_ignored_event_webhook"`

	TotalReceivedSrtp         uint64 `json:"total_received_srtp"`
	TotalReceivedSrtpByteSize uint64 `json:"total_received_srtp_byte_size"`
	TotalSentSrtp             uint64 `json:"total_sent_srtp"`
	TotalSentSrtpByteSize     uint64 `json:"total_sent_srtp_byte_size"`

	// Cluster is this node's Raft state (Sora's "cluster" object); nil
	// when the node runs no Raft (a temporary node, or clustering off).
	Cluster *ClusterStatsReport `json:"cluster,omitempty"`

	// ClusterRelay has one entry per relay link (the peer's node_name).
	ClusterRelay []RelayLinkReport `json:"cluster_relay"`
}

// ClusterStatsReport is a StatsReport's "cluster" object: Raft's state
// ("Leader", "Follower", "Candidate", "Shutdown"), term and commit index.
type ClusterStatsReport struct {
	RaftState       string `json:"raft_state"`
	RaftTerm        uint64 `json:"raft_term"`
	RaftCommitIndex uint64 `json:"raft_commit_index"`
}

// RelayLinkReport is one relay link in a StatsReport: Sora's
// cluster_relay keys (datagrams and their bytes on the wire) plus ours.
type RelayLinkReport struct {
	NodeName              string  `json:"node_name"`
	TotalReceivedByteSize uint64  `json:"total_received_byte_size"`
	TotalSentByteSize     uint64  `json:"total_sent_byte_size"`
	TotalReceived         uint64  `json:"total_received"`
	TotalSent             uint64  `json:"total_sent"`
	Connected             bool    `json:"connected"`
	TotalReconnects       uint64  `json:"total_reconnects"`
	TotalDropped          uint64  `json:"total_dropped"`
	TotalSentNack         uint64  `json:"total_sent_nack"`
	TotalReceivedNack     uint64  `json:"total_received_nack"`
	RTTMs                 float64 `json:"rtt_ms"`
}

// ConnectionStatsReport is one entry of GetStatsAllConnections: a
// connection's identity (from signaling) and its media figures (from the
// SFU).
type ConnectionStatsReport struct {
	Timestamp    string    `json:"timestamp"`
	ChannelID    string    `json:"channel_id"`
	ClientID     string    `json:"client_id"`
	ConnectionID string    `json:"connection_id"`
	Role         wire.Role `json:"role,omitempty"`
	NodeName     string    `json:"node_name"`
	// RTP is Sora's "rtp" object (what Sora's dashboards read): the bytes
	// and packets received from the client and forwarded to it, the same
	// figures as the totals below.
	RTP RTPStatsReport `json:"rtp"`
	// Sums of the tracks: RTP received from the client, forwarded to it.
	TotalReceivedRTP         uint64 `json:"total_received_rtp"`
	TotalReceivedRTPByteSize uint64 `json:"total_received_rtp_byte_size"`
	TotalSentRTP             uint64 `json:"total_sent_rtp"`
	TotalSentRTPByteSize     uint64 `json:"total_sent_rtp_byte_size"`
	// RTTMs is the ICE candidate pair's round trip; EstimatedBandwidth the
	// downlink estimate in bit/s (0 when none).
	RTTMs              float64            `json:"rtt_ms"`
	EstimatedBandwidth uint64             `json:"estimated_bandwidth"`
	Tracks             []TrackStatsReport `json:"tracks"`
}

// RTPStatsReport is a ConnectionStatsReport's "rtp" object.
type RTPStatsReport struct {
	TotalReceivedBytes   uint64 `json:"total_received_bytes"`
	TotalSentBytes       uint64 `json:"total_sent_bytes"`
	TotalReceivedPackets uint64 `json:"total_received_packets"`
	TotalSentPackets     uint64 `json:"total_sent_packets"`
}

// TrackStatsReport is one track of a ConnectionStatsReport: "inbound" (the
// client publishes it) or "outbound" (the client receives it).
type TrackStatsReport struct {
	Direction          string  `json:"direction"`
	TrackID            string  `json:"track_id"`
	Kind               string  `json:"kind"`
	MimeType           string  `json:"mime_type"`
	SSRC               uint32  `json:"ssrc"`
	Packets            uint64  `json:"packets"`
	Bytes              uint64  `json:"bytes"`
	PacketsLost        int64   `json:"packets_lost"`
	FractionLost       float64 `json:"fraction_lost"`
	JitterMs           float64 `json:"jitter_ms"`
	RTTMs              float64 `json:"rtt_ms,omitempty"`
	NACKs              uint64  `json:"nacks,omitempty"`
	Retransmitted      uint64  `json:"retransmitted,omitempty"`
	KeyframeRequests   uint64  `json:"keyframe_requests,omitempty"`
	Layer              string  `json:"layer,omitempty"`
	RetransmittedBytes uint64  `json:"retransmitted_bytes,omitempty"`
}

// StatsProvider answers the admin API's stats targets for this node
// (AdminConfig.Stats). The root package's Node implements it over the
// SFU, the relay and the signaling server.
type StatsProvider interface {
	StatsReport() StatsReport
	ConnectionStats() []ConnectionStatsReport
}

// webhookStatser is an EventSink with delivery counters (*EventWebhook).
type webhookStatser interface{ Stats() WebhookStats }

// FillStatsReport writes the server's part of a StatsReport: node_name,
// the connection and session totals, and the event webhook's deliveries
// when Config.Events is an *EventWebhook.
func (s *Server) FillStatsReport(r *StatsReport) {
	c := s.Counters()
	r.NodeName = s.cfg.NodeName
	r.TotalConnectionCreated = c.ConnectionsCreated
	r.TotalConnectionDestroyed = c.ConnectionsDestroyed
	r.TotalSuccessfulConnections = c.ConnectionsCreated
	r.TotalFailedConnections = c.ConnectionsFailed
	r.TotalOngoingConnections = c.Ongoing
	r.TotalDurationSec = int64(c.TotalDuration / time.Second)
	if c.ConnectionsDestroyed > 0 {
		r.AverageDurationSec = r.TotalDurationSec / int64(c.ConnectionsDestroyed)
	}
	if c.ConnectionsCreated > 0 {
		r.AverageSetupTimeMsec = int64(c.TotalSetup/time.Millisecond) / int64(c.ConnectionsCreated)
	}
	r.TotalSessionCreated, r.TotalSessionDestroyed = c.SessionsCreated, c.SessionsDestroyed
	if w, ok := s.cfg.Events.(webhookStatser); ok {
		ws := w.Stats()
		r.TotalSuccessfulEventWebhook = ws.Delivered
		r.TotalFailedEventWebhook = ws.Abandoned
		r.TotalIgnoredEventWebhook = ws.Dropped
		r.TotalConnectionUpdated = ws.Updated
	}
}

// ConnectionCounts are a server's served connections by role and the
// channels they are in: what metrics need, without copying the
// connections as AllConnections does.
type ConnectionCounts struct {
	Sendrecv, Sendonly, Recvonly int
	// Channels is the number of channels with a served connection here.
	Channels int
}

// ConnectionCounts counts the served connections by role, and their
// channels. It allocates nothing.
func (s *Server) ConnectionCounts() ConnectionCounts {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := ConnectionCounts{Channels: len(s.perChannel)}
	for se := range s.sessions {
		se.mu.Lock()
		role, served := se.infoV.Role, se.served
		se.mu.Unlock()
		if !served {
			continue
		}
		switch role {
		case wire.RoleSendrecv:
			c.Sendrecv++
		case wire.RoleSendonly:
			c.Sendonly++
		case wire.RoleRecvonly:
			c.Recvonly++
		}
	}
	return c
}

// AllConnections returns every served connection of this node, oldest
// first.
func (s *Server) AllConnections() []ConnectionInfo {
	s.mu.Lock()
	sessions := make([]*session, 0, len(s.sessions))
	for se := range s.sessions {
		sessions = append(sessions, se)
	}
	s.mu.Unlock()
	out := make([]ConnectionInfo, 0, len(sessions))
	for _, se := range sessions {
		if info, ok := se.info(); ok {
			out = append(out, info)
		}
	}
	sortConnections(out)
	return out
}
