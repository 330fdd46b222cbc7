package shoal

import (
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/shoal-sfu/shoal/affinity"
	"github.com/shoal-sfu/shoal/relay"
	"github.com/shoal-sfu/shoal/sfu"
	"github.com/shoal-sfu/shoal/signaling"
)

// BenchmarkMetricsScrape1000 is one /metrics scrape of a node with 1,000
// connections (snapshot level: signaling's counts of 1,000 connections and
// 1,000 SFU connection stats with an inbound and two outbound tracks each,
// made up, folded into the media totals at each scrape as a real scrape
// does; 20 channels, 3 nodes, 2 relay links), through promhttp's handler,
// text format. The SFU's and signaling's own walks over their live
// connections (sfu.SFU.Stats, Server.ConnectionCounts: see signaling's
// BenchmarkConnectionCounts1000) are not included.
func BenchmarkMetricsScrape1000(b *testing.B) {
	const n = 1000
	conns := signaling.ConnectionCounts{Sendrecv: n / 3, Recvonly: n / 3, Sendonly: n - 2*(n/3), Channels: 20}
	stats := make([]sfu.ConnectionStats, n)
	for i := range stats {
		id := fmt.Sprintf("C%025d", i)
		ch := fmt.Sprintf("room-%d", i%20)
		tr := sfu.TrackStats{Packets: uint64(i) * 100, Bytes: uint64(i) * 100000, NACKs: 3, Retransmitted: 2}
		stats[i] = sfu.ConnectionStats{ConnectionID: id, ChannelID: ch, PacketsReceived: 100, BytesReceived: 1e5,
			PacketsSent: 200, BytesSent: 2e5, Inbound: []sfu.TrackStats{tr}, Outbound: []sfu.TrackStats{tr, tr}}
	}
	view := affinity.View{Settings: affinity.DefaultSettings(), InMajority: true, Sessions: map[string]affinity.Session{},
		Nodes: []affinity.Node{{Name: "a@10.0.0.1", Connected: true, Capacity: 2000, Connections: n},
			{Name: "b@10.0.0.2", Connected: true, Capacity: 2000}, {Name: "c@10.0.0.3", Connected: true, Capacity: 2000}}}
	for i := range 20 {
		view.Sessions[fmt.Sprintf("room-%d", i)] = affinity.Session{Owners: []affinity.Owner{{Node: 0, Connections: n / 20}}}
	}
	links := []relay.LinkStats{{Peer: "b@10.0.0.2", Connected: true, PacketsOut: 1e6}, {Peer: "c@10.0.0.3", Connected: true, PacketsOut: 1e6}}
	var totals mediaTotals
	c := &metricsCollector{snap: func() metricsSnapshot {
		return metricsSnapshot{node: "a@10.0.0.1", conns: conns, media: totals.observe(stats), view: view, links: links,
			relay: &relay.Stats{Links: links}, webhook: &signaling.WebhookStats{}}
	}}
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	req := httptest.NewRequest("GET", "/metrics", nil)
	b.ReportAllocs()
	var worst time.Duration
	for b.Loop() {
		start := time.Now()
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatal(w.Code)
		}
		worst = max(worst, time.Since(start))
	}
	b.ReportMetric(float64(worst.Microseconds())/1000, "worst-ms")
}
