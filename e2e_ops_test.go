package shoal_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/shoal-sfu/shoal/signaling"
)

// adminPost posts target and body to node's admin API (/api) and returns
// the status and body.
func adminPost(t *testing.T, node *e2eNode, target, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, node.base+"/api", bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("x-sora-target", target)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", target, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// inTolerance reports whether v lies between lo and hi widened by a tenth and
// slack: the page's figures are read a second apart, the server's between.
func inTolerance(v, lo, hi, slack float64) bool {
	return v >= lo*0.9-slack && v <= hi*1.1+slack
}

// Two browsers on two nodes of a three-node cluster, in one channel: the
// stats API of the third node, asked for the whole cluster, answers each
// connection's RTP as the browsers count it (within a tenth, the pages
// reporting once a second), and the relay links between the two nodes
// carry traffic. The pages label each other's video with the name given.
func TestE2EStatsAPI(t *testing.T) {
	requireBrowser(t)
	nodes := e2eCluster(t, false)
	r := newReports(t)
	names := []string{"alice", "bob"}
	r.open(r.examplePage(nodes[0], "alice", "stats", nodes[0].signaling), r.examplePage(nodes[1], "bob", "stats", nodes[1].signaling))
	waitMediaAndMessages(t, r, names)
	r.waitAll(20*time.Second, "each page names the other", names, func(st pageState) bool {
		other := "bob"
		if st.Name == "bob" {
			other = "alice"
		}
		return st.Names[r.state(other).ConnectionID] == other
	})
	time.Sleep(3 * time.Second) // media flowing a while

	before := map[string]pageState{}
	for _, n := range names {
		before[n] = r.state(n)
	}
	status, body := adminPost(t, nodes[2], signaling.TargetGetStatsAllConnections, `{"cluster":true}`)
	time.Sleep(1500 * time.Millisecond) // the pages' next reports
	if status != 200 {
		t.Fatalf("GetStatsAllConnections: %d %s", status, body)
	}
	var list []signaling.ConnectionStatsReport
	if err := json.Unmarshal(body, &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 {
		t.Fatalf("%d connections, want 2: %s", len(list), body)
	}
	for _, n := range names {
		b, a := before[n], r.state(n)
		var c *signaling.ConnectionStatsReport
		for i := range list {
			if list[i].ConnectionID == a.ConnectionID {
				c = &list[i]
			}
		}
		if c == nil {
			t.Fatalf("%s's connection %s not listed", n, a.ConnectionID)
		}
		t.Logf("%s on %s: server received %d packets %d bytes (page sent %.0f-%.0f, %.0f-%.0f); sent %d packets %d bytes (page received %.0f-%.0f, %.0f-%.0f); rtt %.1f ms, %d tracks",
			n, c.NodeName, c.TotalReceivedRTP, c.TotalReceivedRTPByteSize, b.RTP.PacketsSent, a.RTP.PacketsSent, b.RTP.BytesSent, a.RTP.BytesSent,
			c.TotalSentRTP, c.TotalSentRTPByteSize, b.RTP.PacketsReceived, a.RTP.PacketsReceived, b.RTP.BytesReceived, a.RTP.BytesReceived, c.RTTMs, len(c.Tracks))
		if c.ClientID != n || c.TotalReceivedRTP == 0 || c.TotalSentRTP == 0 {
			t.Errorf("%s: %+v", n, c)
		}
		if !inTolerance(float64(c.TotalReceivedRTP), b.RTP.PacketsSent, a.RTP.PacketsSent, 50) ||
			!inTolerance(float64(c.TotalReceivedRTPByteSize), b.RTP.BytesSent, a.RTP.BytesSent, 50e3) {
			t.Errorf("%s: the server received %d packets / %d bytes, the page sent %.0f..%.0f / %.0f..%.0f",
				n, c.TotalReceivedRTP, c.TotalReceivedRTPByteSize, b.RTP.PacketsSent, a.RTP.PacketsSent, b.RTP.BytesSent, a.RTP.BytesSent)
		}
		if !inTolerance(float64(c.TotalSentRTP), b.RTP.PacketsReceived, a.RTP.PacketsReceived, 50) ||
			!inTolerance(float64(c.TotalSentRTPByteSize), b.RTP.BytesReceived, a.RTP.BytesReceived, 50e3) {
			t.Errorf("%s: the server sent %d packets / %d bytes, the page received %.0f..%.0f / %.0f..%.0f",
				n, c.TotalSentRTP, c.TotalSentRTPByteSize, b.RTP.PacketsReceived, a.RTP.PacketsReceived, b.RTP.BytesReceived, a.RTP.BytesReceived)
		}
	}

	// The node reports, cluster-wide: node 1's relay link to node 2
	// carries what crossed.
	status, body = adminPost(t, nodes[0], signaling.TargetGetStatsReport, `{"cluster":true}`)
	var reports []signaling.StatsReport
	if status != 200 || json.Unmarshal(body, &reports) != nil || len(reports) != 3 {
		t.Fatalf("GetStatsReport cluster: %d %s", status, body)
	}
	for _, rep := range reports {
		if rep.NodeName != nodes[0].Name() {
			continue
		}
		if rep.TotalOngoingConnections != 1 || rep.TotalConnectionCreated != 1 || rep.TotalReceivedSrtp == 0 {
			t.Errorf("node 1's report: %+v", rep)
		}
		found := false
		for _, l := range rep.ClusterRelay {
			if l.NodeName == nodes[1].Name() {
				found = true
				if l.TotalSent == 0 || l.TotalReceived == 0 || !l.Connected {
					t.Errorf("relay link to node 2: %+v", l)
				}
			}
		}
		if !found {
			t.Errorf("node 1's report has no relay link to node 2: %+v", rep.ClusterRelay)
		}
	}

	// Node 1's /metrics say the same.
	ms := httptest.NewServer(nodes[0].MetricsHandler())
	defer ms.Close()
	fams := scrape(t, ms.URL)
	var alice *signaling.ConnectionStatsReport
	for i := range list {
		if list[i].ClientID == "alice" {
			alice = &list[i]
		}
	}
	if v, _ := metricValue(fams, "shoal_media_received_packets_total"); v < float64(alice.TotalReceivedRTP) {
		t.Errorf("shoal_media_received_packets_total %v, below the %d alice had sent before", v, alice.TotalReceivedRTP)
	}
	if v, _ := metricValue(fams, "shoal_relay_sent_packets_total", "peer", nodes[1].Name()); v == 0 {
		t.Errorf("shoal_relay_sent_packets_total to node 2: %v", v)
	}
	if _, ok := metricValue(fams, "shoal_relay_dropped_total", "reason", "link_down"); !ok {
		t.Errorf("no shoal_relay_dropped_total{reason=link_down}")
	}
	if v, _ := metricValue(fams, "shoal_connections", "role", "sendrecv"); v != 1 {
		t.Errorf("shoal_connections{role=sendrecv} %v, want 1", v)
	}
	if v, _ := metricValue(fams, "shoal_cluster_nodes", "state", "connected", "type", "regular"); v != 3 {
		t.Errorf("shoal_cluster_nodes connected regular %v, want 3", v)
	}
	if v, ok := metricValue(fams, "shoal_raft_commit_duration_seconds"); !ok {
		t.Errorf("no raft commit histogram")
	} else {
		t.Logf("node 1 committed %v commands", v)
	}
}

// The example's cluster page, in Chromium, shows the three nodes, and a
// channel with the node holding it once a client joins.
func TestE2EClusterPage(t *testing.T) {
	requireBrowser(t)
	nodes := e2eCluster(t, true)
	r := newReports(t)
	r.open(nodes[0].base + "/cluster.html?" + url.Values{"report": {r.base + "/report"}, "name": {"cluster"}}.Encode())
	r.waitAll(30*time.Second, "the cluster page shows three nodes", []string{"cluster"}, func(st pageState) bool {
		return len(st.ClusterNodes) == 3 && st.ClusterNodes[0] == nodes[0].Name() && len(st.ClusterChannels) == 0
	})
	r.open(r.examplePage(nodes[1], "carol", "lobby", nodes[1].signaling))
	r.waitAll(30*time.Second, "carol connected", []string{"carol"}, func(st pageState) bool { return st.State == "connected" })
	r.waitAll(20*time.Second, "the cluster page shows the channel on node 2", []string{"cluster"}, func(st pageState) bool {
		return len(st.ClusterChannels) == 1 && strings.HasPrefix(st.ClusterChannels[0], "lobby") &&
			strings.Contains(st.ClusterChannels[0], nodes[1].Name()+" (1)")
	})
}
