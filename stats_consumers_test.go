package shoal_test

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"testing"
	"time"

	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/signaling"
)

// The stats answers checked against what the tools written for Sora read
// from them: shiguredo's sora_exporter (Prometheus), sorabeat (a
// metricbeat module) and shiguredo's stats viewer in Rust (its
// ConnectionStats, from GetStatsAllConnections). Each tool's reading is
// mirrored here by a struct of the fields it decodes, with the JSON type it
// decodes them as; the structs are ours, written from what the tools read.

// exporterReport is what sora_exporter decodes from GetStatsReport (its
// numbers are int64: a fraction or a string would fail its decoding).
type exporterReport struct {
	Version                           string `json:"version"`
	TotalConnectionCreated            int64  `json:"total_connection_created"`
	TotalConnectionUpdated            int64  `json:"total_connection_updated"`
	TotalConnectionDestroyed          int64  `json:"total_connection_destroyed"`
	TotalSuccessfulConnections        int64  `json:"total_successful_connections"`
	TotalOngoingConnections           int64  `json:"total_ongoing_connections"`
	TotalFailedConnections            int64  `json:"total_failed_connections"`
	TotalDurationSec                  int64  `json:"total_duration_sec"`
	TotalTurnUDPConnections           int64  `json:"total_turn_udp_connections"`
	TotalTurnTCPConnections           int64  `json:"total_turn_tcp_connections"`
	AverageDurationSec                int64  `json:"average_duration_sec"`
	AverageSetupTimeMsec              int64  `json:"average_setup_time_msec"`
	TotalSessionCreated               int64  `json:"total_session_created"`
	TotalSessionDestroyed             int64  `json:"total_session_destroyed"`
	TotalReceivedInvalidTurnTCPPacket int64  `json:"total_received_invalid_turn_tcp_packet"`
	TotalSuccessfulEventWebhook       int64  `json:"total_successful_event_webhook"`
	TotalFailedEventWebhook           int64  `json:"total_failed_event_webhook"`
	TotalIgnoredEventWebhook          int64  `json:"total_ignored_event_webhook"`
	TotalReceivedSrtp                 int64  `json:"total_received_srtp"`
	TotalReceivedSrtpByteSize         int64  `json:"total_received_srtp_byte_size"`
	TotalSentSrtp                     int64  `json:"total_sent_srtp"`
	TotalSentSrtpByteSize             int64  `json:"total_sent_srtp_byte_size"`
	Cluster                           struct {
		RaftState       string `json:"raft_state"`
		RaftTerm        int64  `json:"raft_term"`
		RaftCommitIndex int64  `json:"raft_commit_index"`
	} `json:"cluster"`
	ClusterRelay []struct {
		NodeName              string `json:"node_name"`
		TotalReceivedByteSize int64  `json:"total_received_byte_size"`
		TotalSentByteSize     int64  `json:"total_sent_byte_size"`
		TotalReceived         int64  `json:"total_received"`
		TotalSent             int64  `json:"total_sent"`
	} `json:"cluster_relay"`
}

// The JSON types of the keys each tool reads, and must find.
var (
	exporterReportKeys = map[string]string{
		"version": "string", "total_connection_created": "int", "total_connection_updated": "int",
		"total_connection_destroyed": "int", "total_successful_connections": "int", "total_ongoing_connections": "int",
		"total_failed_connections": "int", "total_duration_sec": "int", "total_turn_udp_connections": "int",
		"total_turn_tcp_connections": "int", "average_duration_sec": "int", "average_setup_time_msec": "int",
		"total_session_created": "int", "total_session_destroyed": "int", "total_received_invalid_turn_tcp_packet": "int",
		"total_successful_event_webhook": "int", "total_failed_event_webhook": "int", "total_ignored_event_webhook": "int",
		"total_received_srtp": "int", "total_received_srtp_byte_size": "int", "total_sent_srtp": "int",
		"total_sent_srtp_byte_size": "int", "cluster": "object", "cluster_relay": "array",
	}
	exporterClusterKeys = map[string]string{"raft_state": "string", "raft_term": "int", "raft_commit_index": "int"}
	exporterRelayKeys   = map[string]string{"node_name": "string", "total_received_byte_size": "int",
		"total_sent_byte_size": "int", "total_received": "int", "total_sent": "int"}
	exporterLicenseKeys = map[string]string{"expired_at": "string", "max_connections": "int", "max_nodes": "int?",
		"product_name": "string", "serial_code": "string", "type": "string"}
	exporterNodeKeys = map[string]string{"node_name": "string", "mode": "string", "connected": "bool", "temporary_node": "bool"}
	sorabeatConnKeys = map[string]string{"channel_id": "string", "client_id": "string", "rtp": "object"}
	sorabeatRTPKeys  = map[string]string{"total_received_bytes": "int", "total_sent_bytes": "int"}
	rustConnKeys     = map[string]string{"connection_id": "string", "timestamp": "string"}
)

// exporterLicense is what sora_exporter decodes from GetLicense (it needs
// the answer to call the node up; expired_at is "YYYY-MM").
type exporterLicense struct {
	ExpiredAt      string `json:"expired_at"`
	MaxConnections int64  `json:"max_connections"`
	MaxNodes       *int64 `json:"max_nodes"`
	ProductName    string `json:"product_name"`
	SerialCode     string `json:"serial_code"`
	Type           string `json:"type"`
}

// exporterNode is an entry sora_exporter decodes from ListClusterNodes
// (with its cluster metrics on).
type exporterNode struct {
	ClusterNodeName string `json:"cluster_node_name"`
	NodeName        string `json:"node_name"`
	Mode            string `json:"mode"`
	Connected       bool   `json:"connected"`
	TemporaryNode   bool   `json:"temporary_node"`
}

// jsonKind is v's JSON type: "int" (a number without fraction), "number",
// "string", "bool", "object", "array", "null".
func jsonKind(v any) string {
	switch x := v.(type) {
	case float64:
		if x == math.Trunc(x) {
			return "int"
		}
		return "number"
	case string:
		return "string"
	case bool:
		return "bool"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case nil:
		return "null"
	}
	return "?"
}

// checkKeys checks each key of want is in obj with its JSON type ("int?":
// an int or null).
func checkKeys(t *testing.T, where string, obj map[string]any, want map[string]string) {
	t.Helper()
	for k, kind := range want {
		v, ok := obj[k]
		got := jsonKind(v)
		switch {
		case !ok:
			t.Errorf("%s: no %q", where, k)
		case kind == "int?" && (got == "int" || got == "null"):
		case got != kind:
			t.Errorf("%s: %q is %s (%v), want %s", where, k, got, v, kind)
		}
	}
}

// askStats posts target with body to a node's admin API and decodes the
// 200 answer into each of into.
func askStats(t *testing.T, base, target, body string, into ...any) {
	t.Helper()
	req, err := http.NewRequestWithContext(testutil.Context(t, 10*time.Second), http.MethodPost, base+"/api", bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("x-sora-target", target)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %s %s", target, body, resp.Status, b)
	}
	for _, v := range into {
		if err := json.NewDecoder(bytes.NewReader(b)).Decode(v); err != nil {
			t.Fatalf("%s %s: decoding into %T: %v\n%s", target, body, v, err, b)
		}
	}
}

func TestStatsConsumerShapes(t *testing.T) {
	testutil.CheckLeaks(t)
	nodes := e2eCluster(t, false)
	for _, n := range nodes[:2] {
		if _, err := ntClient(t, n.signaling, "consumers"); err != nil {
			t.Fatalf("client on %s: %v", n.Name(), err)
		}
	}
	testutil.Eventually(t, func() bool {
		for _, n := range nodes {
			if len(n.Relay().Stats().Links) != 2 {
				return false
			}
		}
		return true
	}, 15*time.Second, "every node with its two relay links")

	t.Run("sora_exporter", func(t *testing.T) {
		// GetStatsReport, with an empty body as the exporter sends it.
		var rep exporterReport
		var raw map[string]any
		askStats(t, nodes[0].base, signaling.TargetGetStatsReport, "", &rep, &raw)
		checkKeys(t, "GetStatsReport", raw, exporterReportKeys)
		if c, ok := raw["cluster"].(map[string]any); ok {
			checkKeys(t, "GetStatsReport cluster", c, exporterClusterKeys)
		}
		relays, _ := raw["cluster_relay"].([]any)
		for _, l := range relays {
			m, _ := l.(map[string]any)
			checkKeys(t, "GetStatsReport cluster_relay", m, exporterRelayKeys)
		}
		if rep.TotalOngoingConnections != 1 || rep.TotalConnectionCreated != 1 || rep.Version == "" {
			t.Errorf("ongoing %d created %d version %q, want 1, 1, set", rep.TotalOngoingConnections, rep.TotalConnectionCreated, rep.Version)
		}
		if rep.Cluster.RaftState == "" || rep.Cluster.RaftTerm == 0 || rep.Cluster.RaftCommitIndex == 0 {
			t.Errorf("cluster %+v: want Raft's state, term and commit index", rep.Cluster)
		}
		if len(rep.ClusterRelay) != 2 || rep.ClusterRelay[0].NodeName == "" {
			t.Errorf("cluster_relay %+v: want the two links by node_name", rep.ClusterRelay)
		}

		// GetLicense: the exporter calls a node up only when it answers.
		var lic exporterLicense
		raw = nil
		askStats(t, nodes[0].base, signaling.TargetGetLicense, "", &lic, &raw)
		checkKeys(t, "GetLicense", raw, exporterLicenseKeys)
		if _, err := time.Parse("2006-01", lic.ExpiredAt); err != nil {
			t.Errorf("expired_at %q is not YYYY-MM: %v", lic.ExpiredAt, err)
		}
		if lic.MaxConnections != 50 {
			t.Errorf("max_connections %d, want the node's 50", lic.MaxConnections)
		}

		// ListClusterNodes, for its cluster metrics.
		var list []exporterNode
		var rawList []map[string]any
		askStats(t, nodes[0].base, signaling.TargetListClusterNodes, "", &list, &rawList)
		for _, m := range rawList {
			checkKeys(t, "ListClusterNodes", m, exporterNodeKeys)
		}
		if len(list) != 3 {
			t.Fatalf("ListClusterNodes: %d nodes, want 3", len(list))
		}
		for _, n := range list {
			if n.NodeName == "" || n.Mode != "normal" || !n.Connected || n.TemporaryNode {
				t.Errorf("node %+v: want a name, normal, connected, regular", n)
			}
		}
	})

	t.Run("sorabeat", func(t *testing.T) {
		// Its stats metricset takes GetStatsReport as one JSON object.
		var report map[string]any
		askStats(t, nodes[1].base, signaling.TargetGetStatsReport, "", &report)
		if len(report) == 0 {
			t.Fatal("GetStatsReport is not a JSON object")
		}
		// Its connections metricset: a JSON array of objects, each with
		// channel_id and client_id (joined into channel_client_id) and the
		// rtp bytes its dashboards draw.
		var conns []map[string]any
		askStats(t, nodes[1].base, signaling.TargetGetStatsAllConnections, "", &conns)
		if len(conns) != 1 {
			t.Fatalf("node 2: %d connections, want 1", len(conns))
		}
		for _, c := range conns {
			checkKeys(t, "GetStatsAllConnections", c, sorabeatConnKeys)
			if rtp, ok := c["rtp"].(map[string]any); ok {
				checkKeys(t, "GetStatsAllConnections rtp", rtp, sorabeatRTPKeys)
			}
			if c["client_id"] == "" {
				t.Error("client_id is empty: want the connection_id when the client gave none")
			}
		}
	})

	t.Run("stats viewer", func(t *testing.T) {
		// It sends an empty body (this node) or {"local": false} (the
		// whole cluster), reads an array of objects, needs connection_id
		// and an RFC 3339 timestamp, and flattens the rest into
		// "a.b" keys: numbers, booleans, strings and objects; it skips an
		// array with a warning, which only "tracks" is.
		var local []any
		askStats(t, nodes[2].base, signaling.TargetGetStatsAllConnections, "", &local)
		if len(local) != 0 {
			t.Errorf("node 3 alone: %d connections, want 0", len(local))
		}
		var global []any
		askStats(t, nodes[2].base, signaling.TargetGetStatsAllConnections, `{"local": false}`, &global)
		if len(global) != 2 {
			t.Fatalf(`{"local": false} on node 3: %d connections, want the 2 of nodes 1 and 2`, len(global))
		}
		for _, v := range global {
			c, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("an entry is %s, want an object", jsonKind(v))
			}
			checkKeys(t, "GetStatsAllConnections", c, rustConnKeys)
			if ts, _ := c["timestamp"].(string); ts != "" {
				if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
					t.Errorf("timestamp %q is not RFC 3339: %v", ts, err)
				}
			}
			var walk func(prefix string, m map[string]any)
			walk = func(prefix string, m map[string]any) {
				for k, v := range m {
					switch kind := jsonKind(v); kind {
					case "object":
						walk(prefix+k+".", v.(map[string]any))
					case "array":
						if prefix+k != "tracks" {
							t.Errorf("%s%s is an array: the viewer skips it with a warning", prefix, k)
						}
					case "null":
						t.Errorf("%s%s is null: the viewer skips it with a warning", prefix, k)
					}
				}
			}
			walk("", c)
		}
	})
}
