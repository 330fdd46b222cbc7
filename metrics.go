package shoal

import (
	"net/http"
	"reflect"
	"strings"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/shoal-sfu/shoal/affinity"
	"github.com/shoal-sfu/shoal/cluster"
	"github.com/shoal-sfu/shoal/relay"
	"github.com/shoal-sfu/shoal/sfu"
	"github.com/shoal-sfu/shoal/signaling"
)

// Prometheus metrics, at the edge: the packages expose plain snapshots
// (sfu.SFU.Stats and Drops, relay.Relay.Stats, cluster.Node.RaftStats and
// Snapshot, signaling.Server.Counters, signaling.EventWebhook.Stats) and
// this file turns one of each into metrics at every scrape. No global
// registry is touched. docs/operations.md lists the metrics.

// metricsSnapshot is what one scrape reads.
type metricsSnapshot struct {
	node    string
	conns   signaling.ConnectionCounts
	media   mediaSums
	drops   sfu.Drops
	view    affinity.View
	raft    cluster.RaftStats
	links   []relay.LinkStats
	relay   *relay.Stats // nil without a relay
	sig     signaling.ServerCounters
	webhook *signaling.WebhookStats
}

func (n *Node) metricsSnapshot() metricsSnapshot {
	s := metricsSnapshot{node: n.cfg.NodeName, conns: n.sig.ConnectionCounts(), media: n.media.observe(n.sfu.Stats()),
		drops: n.sfu.Drops(), view: n.member.Snapshot(), raft: n.member.RaftStats(), sig: n.sig.Counters()}
	if n.relay != nil {
		rs := n.relay.Stats()
		s.links, s.relay = rs.Links, &rs
	}
	if w, ok := n.cfg.Signaling.Events.(interface{ Stats() signaling.WebhookStats }); ok {
		ws := w.Stats()
		s.webhook = &ws
	}
	return s
}

// metricsCollector is a prometheus.Collector over a snapshot function.
type metricsCollector struct {
	snap func() metricsSnapshot
}

// MetricsCollector returns a prometheus.Collector of the node's metrics,
// to register in a registry of your own. Each scrape reads the parts'
// snapshots once.
func (n *Node) MetricsCollector() prometheus.Collector {
	return &metricsCollector{snap: n.metricsSnapshot}
}

// MetricsHandler returns an http.Handler serving the node's metrics and
// Go's runtime metrics in Prometheus's text format, from a registry of its
// own: mount it at /metrics.
func (n *Node) MetricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(n.MetricsCollector(), collectors.NewGoCollector())
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("shoal_"+name, help, labels, nil)
}

var (
	mConnections = desc("connections", "Connections this node serves, by role.", "role")
	mChannels    = desc("channels", "Channels with at least one connection on this node.")
	mSessions    = desc("cluster_sessions", "Sessions (channels in use) in the whole cluster, as this node's view shows them.")
	mMode        = desc("node_mode", "1 for this node's admission mode, 0 for the others.", "mode")
	mMajority    = desc("node_in_majority", "1 while this node is in the cluster's majority (always 1 with clustering off).")
	mCapacity    = desc("node_capacity_connections", "This node's max_connections, with what it took over from failed nodes.")
	mTemporary   = desc("node_temporary", "1 for a temporary node.")
	mNodes       = desc("cluster_nodes", "Nodes known to the cluster (gossip members), by state and type.", "state", "type")

	mRaftState   = desc("raft_state", "1 for this node's Raft state.", "state")
	mRaftTerm    = desc("raft_term", "Raft's current term.")
	mRaftCommit  = desc("raft_commit_index", "Raft's commit index.")
	mRaftLeaders = desc("raft_leader_changes_total", "Changes of Raft leader this node saw.")
	mRaftLatency = desc("raft_commit_duration_seconds", "Time from apply to commit of the commands this node committed as the leader.")
	mRaftErrors  = desc("raft_commit_errors_total", "Commands this node failed to commit as the leader.")

	mRelayLinks     = desc("relay_links", "Relay links to other nodes, by state.", "state")
	mRelayPktsOut   = desc("relay_sent_packets_total", "Datagrams sent on the relay link to a peer.", "peer")
	mRelayPktsIn    = desc("relay_received_packets_total", "Datagrams received on the relay link from a peer.", "peer")
	mRelayBytesOut  = desc("relay_sent_bytes_total", "Bytes sent on the relay link to a peer.", "peer")
	mRelayBytesIn   = desc("relay_received_bytes_total", "Bytes received on the relay link from a peer.", "peer")
	mRelayDrops     = desc("relay_dropped_packets_total", "Packets the relay link to a peer dropped on purpose (down link, full queues, unknown tracks, bad frames).", "peer")
	mRelayReconnect = desc("relay_reconnects_total", "Reconnections of the relay link to a peer.", "peer")
	mRelayNACKs     = desc("relay_nacks_total", "NACKs on the relay link to a peer, by direction.", "peer", "direction")
	mRelayRTT       = desc("relay_rtt_seconds", "Last measured round trip of the relay link to a peer.", "peer")
	mRelayDropped   = desc("relay_dropped_total", "What the relay dropped, all links, by reason.", "reason")
	mRelayHandshake = desc("relay_handshake_failures_total", "Relay control connections that failed TLS (most often a process without the cluster key).")
	mRelayUnknown   = desc("relay_unknown_source_packets_total", "Datagrams from addresses of no live relay link.")

	mMediaPktsIn   = desc("media_received_packets_total", "RTP packets received from clients.")
	mMediaBytesIn  = desc("media_received_bytes_total", "RTP payload bytes received from clients.")
	mMediaPktsOut  = desc("media_sent_packets_total", "RTP packets forwarded to clients (retransmissions not included).")
	mMediaBytesOut = desc("media_sent_bytes_total", "RTP payload bytes forwarded to clients.")
	mNACKs         = desc("media_nacks_total", "NACK packets clients sent.")
	mRetransmits   = desc("media_retransmitted_packets_total", "Packets resent to clients in answer to their NACKs.")
	mKeyframeReqs  = desc("media_keyframe_requests_total", "Keyframe requests (PLI and FIR) clients sent.")
	mDrops         = desc("media_dropped_total", "What the SFU dropped, by reason.", "reason")

	mPlacement    = desc("placement_decisions_total", "Placement's decisions on connects, by outcome.", "outcome")
	mConnEvents   = desc("connection_events_total", "Connections created (answered), destroyed, and failed (ended before an answer).", "event")
	mSessionEvent = desc("session_events_total", "Session events this node sent (one node per session).", "event")
	mWebhook      = desc("webhook_events_total", "Event webhook events, by result: delivered, abandoned after the retries, dropped (queue full).", "result")
	mWebhookFail  = desc("webhook_failed_attempts_total", "Event webhook attempts that failed (error, timeout, non-2xx).")
	mWebhookQueue = desc("webhook_queue_length", "Event webhook events waiting.")
)

var allDescs = []*prometheus.Desc{mConnections, mChannels, mSessions, mMode, mMajority, mCapacity, mTemporary, mNodes,
	mRaftState, mRaftTerm, mRaftCommit, mRaftLeaders, mRaftLatency, mRaftErrors,
	mRelayLinks, mRelayPktsOut, mRelayPktsIn, mRelayBytesOut, mRelayBytesIn, mRelayDrops, mRelayReconnect, mRelayNACKs, mRelayRTT,
	mRelayDropped, mRelayHandshake, mRelayUnknown,
	mMediaPktsIn, mMediaBytesIn, mMediaPktsOut, mMediaBytesOut, mNACKs, mRetransmits, mKeyframeReqs, mDrops,
	mPlacement, mConnEvents, mSessionEvent, mWebhook, mWebhookFail, mWebhookQueue}

// Describe implements prometheus.Collector.
func (c *metricsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *metricsCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.snap()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}

	gauge(mConnections, float64(s.conns.Sendrecv), "sendrecv")
	gauge(mConnections, float64(s.conns.Sendonly), "sendonly")
	gauge(mConnections, float64(s.conns.Recvonly), "recvonly")
	gauge(mChannels, float64(s.conns.Channels))
	gauge(mSessions, float64(len(s.view.Sessions)))
	gauge(mMajority, b2f(s.view.InMajority || !s.view.Settings.Cluster))
	if i := s.view.NodeIndex(s.node); i >= 0 {
		self := s.view.Nodes[i]
		for _, m := range []affinity.Mode{affinity.ModeNormal, affinity.ModeBlockNewSession, affinity.ModeBlockNewConnection} {
			gauge(mMode, b2f(self.Mode == m), m.String())
		}
		gauge(mCapacity, float64(self.Capacity))
		gauge(mTemporary, b2f(self.Temporary))
	}
	var nodes [2][2]int // [connected][temporary]
	for _, nd := range s.view.Nodes {
		nodes[int(b2f(nd.Connected))][int(b2f(nd.Temporary))]++
	}
	for ci, state := range []string{"disconnected", "connected"} {
		for ti, typ := range []string{"regular", "temporary"} {
			gauge(mNodes, float64(nodes[ci][ti]), state, typ)
		}
	}

	if s.raft.State != "" {
		for _, st := range []string{"Leader", "Follower", "Candidate", "Shutdown"} {
			gauge(mRaftState, b2f(s.raft.State == st), st)
		}
		gauge(mRaftTerm, float64(s.raft.Term))
		gauge(mRaftCommit, float64(s.raft.CommitIndex))
	}
	counter(mRaftLeaders, s.raft.LeaderChanges)
	buckets := make(map[float64]uint64, len(cluster.CommitBuckets))
	var cum uint64
	for i, b := range cluster.CommitBuckets {
		cum += s.raft.CommitCounts[i]
		buckets[b.Seconds()] = cum
	}
	ch <- prometheus.MustNewConstHistogram(mRaftLatency, s.raft.Commits, s.raft.CommitTime.Seconds(), buckets)
	counter(mRaftErrors, s.raft.CommitErrors)

	up := 0
	for _, l := range s.links {
		if l.Connected {
			up++
		}
		counter(mRelayPktsOut, l.PacketsOut, l.Peer)
		counter(mRelayPktsIn, l.PacketsIn, l.Peer)
		counter(mRelayBytesOut, l.BytesOut, l.Peer)
		counter(mRelayBytesIn, l.BytesIn, l.Peer)
		counter(mRelayDrops, l.Drops, l.Peer)
		counter(mRelayReconnect, l.Reconnects, l.Peer)
		counter(mRelayNACKs, l.NACKsOut, l.Peer, "sent")
		counter(mRelayNACKs, l.NACKsIn, l.Peer, "received")
		gauge(mRelayRTT, l.RTT.Seconds(), l.Peer)
	}
	gauge(mRelayLinks, float64(up), "up")
	gauge(mRelayLinks, float64(len(s.links)-up), "down")
	if s.relay != nil {
		for _, r := range dropReasons(s.relay.Drops) {
			counter(mRelayDropped, r.v, r.reason)
		}
		counter(mRelayHandshake, s.relay.HandshakeFailures)
		counter(mRelayUnknown, s.relay.UnknownSource)
	}

	counter(mMediaPktsIn, s.media.PacketsIn)
	counter(mMediaBytesIn, s.media.BytesIn)
	counter(mMediaPktsOut, s.media.PacketsOut)
	counter(mMediaBytesOut, s.media.BytesOut)
	counter(mNACKs, s.media.NACKs)
	counter(mRetransmits, s.media.Retransmits)
	counter(mKeyframeReqs, s.media.KeyframeRequests)
	// Every uint64 field of sfu.Drops is a reason (snake_case of its name),
	// so a reason the SFU adds is exported without a change here.
	for _, r := range dropReasons(s.drops) {
		counter(mDrops, r.v, r.reason)
	}
	counter(mDrops, s.media.RetransmitsLimited, "retransmit_over_budget")
	counter(mDrops, s.media.NackMissing, "nack_not_in_buffer")

	counter(mPlacement, s.sig.PlacedServe, "serve")
	counter(mPlacement, s.sig.PlacedRedirect, "redirect")
	counter(mPlacement, s.sig.PlacedRefuse, "refuse")
	counter(mConnEvents, s.sig.ConnectionsCreated, "created")
	counter(mConnEvents, s.sig.ConnectionsDestroyed, "destroyed")
	counter(mConnEvents, s.sig.ConnectionsFailed, "failed")
	counter(mSessionEvent, s.sig.SessionsCreated, "created")
	counter(mSessionEvent, s.sig.SessionsDestroyed, "destroyed")
	if w := s.webhook; w != nil {
		counter(mWebhook, w.Delivered, "delivered")
		counter(mWebhook, w.Abandoned, "abandoned")
		counter(mWebhook, w.Dropped, "dropped")
		counter(mWebhookFail, w.FailedAttempts)
		gauge(mWebhookQueue, float64(w.Queued))
	}
}

type dropReason struct {
	reason string
	v      uint64
}

// dropReasons returns the uint64 fields of a drop-counter struct (sfu.Drops,
// relay.Drops) as reasons named in snake_case.
func dropReasons(d any) []dropReason {
	v := reflect.ValueOf(d)
	t := v.Type()
	out := make([]dropReason, 0, t.NumField())
	for i := range t.NumField() {
		if f := t.Field(i); f.IsExported() && f.Type.Kind() == reflect.Uint64 {
			out = append(out, dropReason{snake(f.Name), v.Field(i).Uint()})
		}
	}
	return out
}

// snake turns MessageQueueFull into message_queue_full.
func snake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}
