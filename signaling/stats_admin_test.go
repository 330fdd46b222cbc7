package signaling

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/shoal-sfu/shoal/affinity"
	"github.com/shoal-sfu/shoal/internal/testutil"
)

// fakeStats is a StatsProvider with fixed answers.
type fakeStats struct {
	node  string
	conns []ConnectionStatsReport
}

func (f fakeStats) StatsReport() StatsReport {
	return StatsReport{NodeName: f.node, TotalOngoingConnections: len(f.conns), ClusterRelay: []RelayLinkReport{}}
}
func (f fakeStats) ConnectionStats() []ConnectionStatsReport { return f.conns }

// statsCluster is three admin APIs over a MemCluster, each with a
// fakeStats of one connection of channel "room"; node c's API can be made
// to fail.
func statsCluster(t *testing.T) (map[string]string, func(fail bool)) {
	mem := NewMemCluster(affinity.DefaultSettings(),
		affinity.Node{Name: "a@127.0.0.1", Connected: true, Capacity: 10},
		affinity.Node{Name: "b@127.0.0.1", Connected: true, Capacity: 10},
		affinity.Node{Name: "c@127.0.0.1", Connected: true, Capacity: 10})
	urls := map[string]string{}
	var failC atomic.Bool
	for _, n := range []string{"a@127.0.0.1", "b@127.0.0.1", "c@127.0.0.1"} {
		mem.Node(n).ClaimChannel(t.Context(), "room")
		fs := fakeStats{node: n, conns: []ConnectionStatsReport{{ChannelID: "room", ConnectionID: "conn-" + n[:1], NodeName: n, TotalSentRTP: 10}}}
		h, err := NewAdminHandler(&fakeAdmin{Cluster: mem.Node(n)}, AdminConfig{NodeName: n, Stats: fs, Logger: testutil.Logger(t)})
		if err != nil {
			t.Fatal(err)
		}
		short := n[:1]
		hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if short == "c" && failC.Load() {
				http.Error(w, "down", http.StatusServiceUnavailable)
				return
			}
			h.ServeHTTP(w, r)
		}))
		t.Cleanup(hs.Close)
		urls[short] = hs.URL + "/"
		mem.UpdateNode(n, func(nd *affinity.Node) { nd.APIURL = hs.URL + "/" })
	}
	return urls, failC.Store
}

func TestStatsTargets(t *testing.T) {
	testutil.CheckLeaks(t)
	urls, failC := statsCluster(t)

	// This node only.
	st, _, b := apiCall(t, urls["a"], TargetGetStatsReport, ``)
	var r StatsReport
	if st != 200 || json.Unmarshal(b, &r) != nil || r.NodeName != "a@127.0.0.1" || r.ClusterRelay == nil {
		t.Fatalf("GetStatsReport: %d %s", st, b)
	}
	st, _, b = apiCall(t, urls["a"], TargetGetStatsAllConnections, `{}`)
	var list []ConnectionStatsReport
	if st != 200 || json.Unmarshal(b, &list) != nil || len(list) != 1 || list[0].ConnectionID != "conn-a" {
		t.Fatalf("GetStatsAllConnections: %d %s", st, b)
	}

	// The cluster.
	st, _, b = apiCall(t, urls["b"], TargetGetStatsReport, `{"cluster":true}`)
	var reports []StatsReport
	if st != 200 || json.Unmarshal(b, &reports) != nil || len(reports) != 3 || reports[0].NodeName != "a@127.0.0.1" || reports[2].NodeName != "c@127.0.0.1" {
		t.Fatalf("GetStatsReport cluster: %d %s", st, b)
	}
	st, _, b = apiCall(t, urls["b"], TargetGetStatsAllConnections, `{"cluster":true}`)
	if st != 200 || json.Unmarshal(b, &list) != nil || len(list) != 3 {
		t.Fatalf("GetStatsAllConnections cluster: %d %s", st, b)
	}
	// One connection, held on another node.
	st, _, b = apiCall(t, urls["a"], TargetGetStatsConnection, `{"channel_id":"room","connection_id":"conn-c"}`)
	var one ConnectionStatsReport
	if st != 200 || json.Unmarshal(b, &one) != nil || one.NodeName != "c@127.0.0.1" {
		t.Fatalf("GetStatsConnection: %d %s", st, b)
	}
	if st, _, b = apiCall(t, urls["a"], TargetGetStatsConnection, `{"channel_id":"room","connection_id":"nope"}`); st != 404 {
		t.Errorf("GetStatsConnection of an unknown connection: %d %s", st, b)
	}

	// A node failing: 502 with the others' answers and failed_nodes.
	failC(true)
	st, _, b = apiCall(t, urls["a"], TargetGetStatsAllConnections, `{"cluster":true}`)
	var partial ConnectionStatsResult
	if st != 502 || json.Unmarshal(b, &partial) != nil || len(partial.Stats) != 2 || len(partial.FailedNodes) != 1 ||
		partial.FailedNodes[0].NodeName != "c@127.0.0.1" || partial.FailedNodes[0].Status != 503 {
		t.Fatalf("GetStatsAllConnections with c down: %d %s", st, b)
	}
	st, _, b = apiCall(t, urls["a"], TargetGetStatsReport, `{"cluster":true}`)
	var rp StatsReportsResult
	if st != 502 || json.Unmarshal(b, &rp) != nil || len(rp.Reports) != 2 || len(rp.FailedNodes) != 1 {
		t.Fatalf("GetStatsReport with c down: %d %s", st, b)
	}

	// Bad input.
	for _, tc := range []struct{ target, body string }{
		{TargetGetStatsReport, `{"cluster":"yes"}`},
		{TargetGetStatsConnection, `{"channel_id":"room"}`},
	} {
		if st, _, b := apiCall(t, urls["a"], tc.target, tc.body); st != 400 {
			t.Errorf("%s %s: %d %s, want 400", tc.target, tc.body, st, b)
		}
	}
}

// Without AdminConfig.Stats the stats targets answer 400.
func TestStatsTargetsNeedStats(t *testing.T) {
	mem := NewMemCluster(affinity.DefaultSettings(), affinity.Node{Name: "a@127.0.0.1", Connected: true, Capacity: 10})
	h, err := NewAdminHandler(&fakeAdmin{Cluster: mem.Node("a@127.0.0.1")}, AdminConfig{NodeName: "a@127.0.0.1", Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(h)
	defer hs.Close()
	if st, _, b := apiCall(t, hs.URL+"/", TargetGetStatsReport, ``); st != 400 {
		t.Errorf("%d %s", st, b)
	}
}

// Sora's "local": false asks every node as "cluster": true does (a Sora
// stats tool sends it for its global view); the two disagreeing is a 400.
func TestStatsLocalFlag(t *testing.T) {
	for _, c := range []struct {
		body    string
		cluster bool
		bad     bool
	}{
		{``, false, false},
		{`{"local":true}`, false, false},
		{`{"local":false}`, true, false},
		{`{"cluster":true}`, true, false},
		{`{"cluster":true,"local":false}`, true, false},
		{`{"cluster":false,"local":true}`, false, false},
		{`{"cluster":true,"local":true}`, false, true},
		{`{"local":"no"}`, false, true},
		{`{"local":null}`, false, false},
	} {
		for _, target := range []string{TargetGetStatsReport, TargetGetStatsAllConnections} {
			req, err := DecodeAdminRequest(target, []byte(c.body))
			if (err != nil) != c.bad || (err == nil && req.Cluster != c.cluster) {
				t.Errorf("%s %s: cluster %v, err %v; want cluster %v, error %v", target, c.body, req.Cluster, err, c.cluster, c.bad)
			}
		}
	}
}

// GetLicense answers without a StatsProvider: this node's capacity from the
// view, no expiry.
func TestStatsGetLicense(t *testing.T) {
	testutil.CheckLeaks(t)
	mem := NewMemCluster(affinity.DefaultSettings(), affinity.Node{Name: "a@127.0.0.1", Connected: true, Capacity: 42})
	h, err := NewAdminHandler(&fakeAdmin{Cluster: mem.Node("a@127.0.0.1")}, AdminConfig{NodeName: "a@127.0.0.1", Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	r.Header.Set("x-sora-target", TargetGetLicense)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	var got map[string]any
	if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &got) != nil {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	want := map[string]any{"product_name": "Shoal", "type": "open-source", "serial_code": "", "expired_at": "9999-12",
		"max_connections": 42.0, "max_nodes": nil}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %#v, want %#v", k, got[k], v)
		}
	}
}
