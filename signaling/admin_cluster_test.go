package signaling

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-sfu/shoal/affinity"
	"github.com/shoal-sfu/shoal/internal/httpjson"
	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/signaling/wire"
)

const adminToken = "t0ken"

// adminCluster is a testCluster (three signaling servers, relay on,
// affinity off so that clients stay where they land) with an admin API per
// node, each behind its own HTTP server at the node's APIURL.
type adminCluster struct {
	*testCluster
	api map[string]*httptest.Server // by short name
}

func newAdminCluster(t *testing.T) *adminCluster {
	t.Helper()
	settings := affinity.DefaultSettings()
	settings.DefaultAffinity = false
	ac := &adminCluster{testCluster: newTestCluster(t, settings), api: map[string]*httptest.Server{}}
	for _, n := range ac.names {
		h, err := NewAdminHandler(&fakeAdmin{Cluster: ac.mem.Node(n)}, AdminConfig{NodeName: n, Channels: ac.servers[n].Server,
			Token: adminToken, Logger: testutil.Logger(t)})
		if err != nil {
			t.Fatal(err)
		}
		hs := httptest.NewServer(h)
		t.Cleanup(hs.Close)
		ac.api[n[:1]] = hs
		ac.mem.UpdateNode(n, func(nd *affinity.Node) { nd.APIURL = hs.URL + "/" })
	}
	return ac
}

// join connects a client to node short in channel and returns it once it
// has its offer.
func (ac *adminCluster) join(t *testing.T, short, channel string) *wsClient {
	t.Helper()
	c := offered(t, ac.url(short), channel)
	c.send(`{"type":"answer","sdp":"v=0"}`)
	return c
}

var noFollow = &http.Client{Timeout: 10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// apiCall posts to node short's admin API with the token; hdr are extra
// header name, value pairs.
func (ac *adminCluster) apiCall(t *testing.T, short, target, body string, hdr ...string) (int, http.Header, []byte) {
	t.Helper()
	return apiCall(t, ac.api[short].URL+"/", target, body, append([]string{"Authorization", "Bearer " + adminToken}, hdr...)...)
}

func apiCall(t *testing.T, url, target, body string, hdr ...string) (int, http.Header, []byte) {
	t.Helper()
	r, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("x-sora-target", target)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := noFollow.Do(r)
	if err != nil {
		t.Fatalf("POST %s %s: %v", url, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// perNode counts connections by node_name.
func perNode(list []ConnectionInfo) map[string]int {
	m := map[string]int{}
	for _, c := range list {
		m[c.NodeName]++
	}
	return m
}

func equalCounts(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestAdminChannelOpsAcrossCluster(t *testing.T) {
	testutil.CheckLeaks(t)
	ac := newAdminCluster(t)
	const a, b, c = "a@127.0.0.1", "b@127.0.0.1", "c@127.0.0.1"

	// One channel, clients on all three nodes (relay on, affinity off).
	clients := []*wsClient{ac.join(t, "a", "room"), ac.join(t, "b", "room"), ac.join(t, "b", "room"), ac.join(t, "c", "room")}
	want := map[string]int{a: 1, b: 2, c: 1}

	// Listed at any node: every node's connections, each with its node.
	for _, short := range []string{"a", "b", "c"} {
		code, _, body := ac.apiCall(t, short, TargetListChannelConnections, `{"channel_id":"room"}`)
		var list []ConnectionInfo
		if code != 200 || json.Unmarshal(body, &list) != nil || !equalCounts(perNode(list), want) {
			t.Fatalf("list at %s: %d %s, want %v", short, code, body, want)
		}
		for i := 1; i < len(list); i++ {
			if list[i-1].NodeName > list[i].NodeName {
				t.Errorf("list at %s not sorted by node: %s", short, body)
			}
		}
	}

	// With the scope header, a node answers for its own connections only.
	code, _, body := ac.apiCall(t, "b", TargetListChannelConnections, `{"channel_id":"room"}`, ScopeHeader, ScopeNode)
	var list []ConnectionInfo
	if code != 200 || json.Unmarshal(body, &list) != nil || !equalCounts(perNode(list), map[string]int{b: 2}) {
		t.Errorf("node-scoped list at b: %d %s", code, body)
	}
	// ... and never answers 307, even for a channel it holds no part of.
	ac.join(t, "c", "solo")
	if code, _, body := ac.apiCall(t, "a", TargetListChannelConnections, `{"channel_id":"solo"}`, ScopeHeader, ScopeNode); code != 200 || string(body) != "[]" {
		t.Errorf("node-scoped list at a of a channel on c: %d %s", code, body)
	}
	// Without it, a node holding no part still answers 307.
	if code, hdr, _ := ac.apiCall(t, "a", TargetListChannelConnections, `{"channel_id":"solo"}`); code != 307 || hdr.Get("Location") != ac.api["c"].URL+"/" {
		t.Errorf("list at a of a channel on c: %d Location %q, want 307", code, hdr.Get("Location"))
	}
	// "cluster" is the default, said explicitly; anything else is a 400.
	if code, _, body := ac.apiCall(t, "c", TargetListChannelConnections, `{"channel_id":"room"}`, ScopeHeader, ScopeCluster); code != 200 || json.Unmarshal(body, &list) != nil || len(list) != 4 {
		t.Errorf("cluster-scoped list at c: %d %s", code, body)
	}
	for _, hdr := range [][]string{{ScopeHeader, "everything"}, {ScopeHeader, ""}, {ScopeHeader, "NODE"}, {ScopeHeader, "node", ScopeHeader, "node"}} {
		code, _, body := ac.apiCall(t, "a", TargetListChannelConnections, `{"channel_id":"room"}`, hdr...)
		var e map[string]string
		if code != 400 || json.Unmarshal(body, &e) != nil || !strings.Contains(e["error"], ScopeHeader) {
			t.Errorf("scope %q: %d %s, want 400 naming the header", hdr, code, body)
		}
	}

	// DisconnectChannel at one node closes the clients on every node.
	code, _, body = ac.apiCall(t, "b", TargetDisconnectChannel, `{"channel_id":"room","reason":"BYE"}`)
	var res DisconnectChannelResult
	if code != 200 || json.Unmarshal(body, &res) != nil || res.ChannelID != "room" || res.Disconnected != 4 || len(res.FailedNodes) != 0 ||
		len(res.Nodes) != 3 || res.Nodes[0] != (NodeDisconnected{a, 1}) || res.Nodes[1] != (NodeDisconnected{b, 2}) || res.Nodes[2] != (NodeDisconnected{c, 1}) {
		t.Errorf("disconnect at b: %d %s", code, body)
	}
	for i, cl := range clients {
		if code, reason := cl.closed(); code != 1000 || reason != "BYE" {
			t.Errorf("client %d: close %d %q, want 1000 BYE", i, code, reason)
		}
	}

	// A node whose API is down: 502 naming it; the others' parts are there.
	clients = []*wsClient{ac.join(t, "a", "room2"), ac.join(t, "b", "room2"), ac.join(t, "c", "room2")}
	ac.api["c"].Close()
	code, _, body = ac.apiCall(t, "a", TargetListChannelConnections, `{"channel_id":"room2"}`)
	var fail ChannelConnectionsFailure
	if code != 502 || json.Unmarshal(body, &fail) != nil || fail.Error == "" || !strings.Contains(fail.Error, c) ||
		len(fail.FailedNodes) != 1 || fail.FailedNodes[0].NodeName != c || fail.FailedNodes[0].Error == "" ||
		!equalCounts(perNode(fail.Connections), map[string]int{a: 1, b: 1}) {
		t.Errorf("list with c's API down: %d %s", code, body)
	}
	code, _, body = ac.apiCall(t, "a", TargetDisconnectChannel, `{"channel_id":"room2","reason":"BYE2"}`)
	res = DisconnectChannelResult{}
	if code != 502 || json.Unmarshal(body, &res) != nil || res.ChannelID != "room2" || res.Disconnected != 2 || len(res.Nodes) != 2 ||
		len(res.FailedNodes) != 1 || res.FailedNodes[0].NodeName != c || !strings.Contains(res.Error, c) {
		t.Errorf("disconnect with c's API down: %d %s", code, body)
	}
	for i, cl := range clients[:2] {
		if code, reason := cl.closed(); code != 1000 || reason != "BYE2" {
			t.Errorf("room2 client %d: close %d %q", i, code, reason)
		}
	}
	if n := len(ac.servers[c].Connections("room2")); n != 1 {
		t.Errorf("c serves %d connections of room2 after a failed call, want 1 (still connected)", n)
	}

	// A node the view shows disconnected is a failure, not skipped.
	ac.join(t, "a", "room3")
	ac.join(t, "b", "room3")
	ac.mem.UpdateNode(b, func(n *affinity.Node) { n.Connected = false })
	code, _, body = ac.apiCall(t, "a", TargetListChannelConnections, `{"channel_id":"room3"}`)
	fail = ChannelConnectionsFailure{}
	if code != 502 || json.Unmarshal(body, &fail) != nil || len(fail.FailedNodes) != 1 || fail.FailedNodes[0].NodeName != b ||
		fail.FailedNodes[0].Status != 0 || !strings.Contains(fail.FailedNodes[0].Error, "not connected") ||
		!equalCounts(perNode(fail.Connections), map[string]int{a: 1}) {
		t.Errorf("list with b disconnected: %d %s", code, body)
	}
}

// peerRecorder is a fake node's admin API that records what it is asked
// and answers as told.
type peerRecorder struct {
	mu     sync.Mutex
	got    []http.Header
	bodies []string
	answer func(w http.ResponseWriter, r *http.Request)
}

func (p *peerRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	p.mu.Lock()
	p.got = append(p.got, r.Header.Clone())
	p.bodies = append(p.bodies, string(b))
	p.mu.Unlock()
	p.answer(w, r)
}

func (p *peerRecorder) calls() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.got)
}

// TestAdminFanOutPeerAnswers: what a node asks its peers (target, body,
// scope, token) and what it makes of their answers: good ones are merged;
// non-2xx, garbage, redirects (not followed), timeouts and a missing
// external_api_url fail, each named with its reason.
func TestAdminFanOutPeerAnswers(t *testing.T) {
	testutil.CheckLeaks(t)
	release := make(chan struct{})
	redirected := &peerRecorder{answer: func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`[]`)) }}
	redirectTarget := httptest.NewServer(redirected)
	defer redirectTarget.Close()
	peers := map[string]*peerRecorder{
		"good@127.0.0.1": {answer: func(w http.ResponseWriter, r *http.Request) {
			switch r.Header.Get("x-sora-target") {
			case TargetDisconnectChannel:
				w.Write([]byte(`{"channel_id":"room","disconnected":3,"nodes":[{"node_name":"good@127.0.0.1","disconnected":3}]}`))
				return
			case TargetPushChannel:
				w.Write([]byte(`{"channel_id":"room","pushed":2,"nodes":[{"node_name":"good@127.0.0.1","pushed":2}]}`))
				return
			}
			w.Write([]byte(`[{"channel_id":"room","connection_id":"G1","role":"sendrecv","created_time":"2026-01-01T00:00:00Z"}]`))
		}},
		"e500@127.0.0.1": {answer: func(w http.ResponseWriter, r *http.Request) {
			httpjson.Error(w, 500, "boom")
		}},
		"junk@127.0.0.1": {answer: func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(`<html>not json</html>`))
		}},
		"moved@127.0.0.1": {answer: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, redirectTarget.URL+"/", http.StatusTemporaryRedirect)
		}},
		"slow@127.0.0.1": {answer: func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}},
	}
	nodes := []affinity.Node{{Name: "me@127.0.0.1", Connected: true, Capacity: 10},
		{Name: "nourl@127.0.0.1", Connected: true, Capacity: 10}}
	urls := map[string]string{}
	for name, p := range peers {
		hs := httptest.NewServer(p)
		defer hs.Close()
		urls[name] = hs.URL + "/"
		nodes = append(nodes, affinity.Node{Name: name, Connected: true, Capacity: 10, APIURL: urls[name]})
	}
	defer close(release) // runs before the servers close
	mem := NewMemCluster(affinity.DefaultSettings(), nodes...)
	for _, n := range nodes {
		if _, err := mem.Node(n.Name).ClaimChannel(context.Background(), "room"); err != nil {
			t.Fatal(err)
		}
	}
	chans := &fakeChannels{}
	h, err := NewAdminHandler(&fakeAdmin{Cluster: mem.Node("me@127.0.0.1")}, AdminConfig{NodeName: "me@127.0.0.1", Channels: chans,
		Token: adminToken, HTTPClient: &http.Client{Timeout: 300 * time.Millisecond}, Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	wantFailed := map[string]string{
		"e500@127.0.0.1":  "500 Internal Server Error: boom",
		"junk@127.0.0.1":  "malformed answer",
		"moved@127.0.0.1": "307 Temporary Redirect (to " + redirectTarget.URL + "/, not followed)",
		"slow@127.0.0.1":  "Timeout",
		"nourl@127.0.0.1": "no external_api_url",
	}
	checkFailed := func(what string, failed []NodeFailure) {
		t.Helper()
		if len(failed) != len(wantFailed) {
			t.Errorf("%s: failed %+v, want %d", what, failed, len(wantFailed))
		}
		for _, f := range failed {
			if w, ok := wantFailed[f.NodeName]; !ok || !strings.Contains(f.Error, w) {
				t.Errorf("%s: %s failed with %q, want %q", what, f.NodeName, f.Error, w)
			}
		}
	}

	body := `{"channel_id":"room"}`
	code, resp, _ := post(t, h, TargetListChannelConnections, body, "Authorization", "Bearer "+adminToken)
	var fail ChannelConnectionsFailure
	if code != 502 || json.Unmarshal([]byte(resp), &fail) != nil {
		t.Fatalf("list: %d %s", code, resp)
	}
	checkFailed("list", fail.FailedNodes)
	if !equalCounts(perNode(fail.Connections), map[string]int{"me@127.0.0.1": 1, "good@127.0.0.1": 1}) {
		t.Errorf("list: connections %+v", fail.Connections)
	}
	body = `{"channel_id":"room","reason":{"why":"x"}}`
	code, resp, _ = post(t, h, TargetDisconnectChannel, body, "Authorization", "Bearer "+adminToken)
	var res DisconnectChannelResult
	if code != 502 || json.Unmarshal([]byte(resp), &res) != nil || res.Disconnected != 4 ||
		len(res.Nodes) != 2 || res.Nodes[0] != (NodeDisconnected{"good@127.0.0.1", 3}) || res.Nodes[1] != (NodeDisconnected{"me@127.0.0.1", 1}) {
		t.Fatalf("disconnect: %d %s", code, resp)
	}
	checkFailed("disconnect", res.FailedNodes)
	code, resp, _ = post(t, h, TargetPushChannel, `{"channel_id":"room","data":{"k":"v"}}`, "Authorization", "Bearer "+adminToken)
	var pr PushResult
	if code != 502 || json.Unmarshal([]byte(resp), &pr) != nil || pr.Pushed != 3 ||
		!slices.Equal(pr.Nodes, []NodePushed{{"good@127.0.0.1", 2}, {"me@127.0.0.1", 1}}) {
		t.Fatalf("push: %d %s", code, resp)
	}
	checkFailed("push", pr.FailedNodes)

	// Each peer got the same target and body, scoped to itself, with the
	// token; the redirect was not followed.
	for name, p := range peers {
		p.mu.Lock()
		if len(p.got) != 3 {
			t.Errorf("%s asked %d times, want 3", name, len(p.got))
		}
		for i, hd := range p.got {
			if hd.Get(ScopeHeader) != ScopeNode || hd.Get("Authorization") != "Bearer "+adminToken {
				t.Errorf("%s call %d: scope %q, authorization %q", name, i, hd.Get(ScopeHeader), hd.Get("Authorization"))
			}
		}
		if len(p.got) == 3 && (p.got[0].Get("x-sora-target") != TargetListChannelConnections || p.bodies[0] != `{"channel_id":"room"}` ||
			p.got[1].Get("x-sora-target") != TargetDisconnectChannel || p.bodies[1] != body ||
			p.got[2].Get("x-sora-target") != TargetPushChannel || p.bodies[2] != `{"channel_id":"room","data":{"k":"v"}}`) {
			t.Errorf("%s got %q %q, %q %q, %q %q", name, p.got[0].Get("x-sora-target"), p.bodies[0], p.got[1].Get("x-sora-target"), p.bodies[1],
				p.got[2].Get("x-sora-target"), p.bodies[2])
		}
		p.mu.Unlock()
	}
	if n := redirected.calls(); n != 0 {
		t.Errorf("a peer's 307 was followed %d times", n)
	}

	// Only this node failing (all peers fine): its own error status, the
	// peers' parts still reported.
	mem2 := NewMemCluster(affinity.DefaultSettings(), nodes[0], affinity.Node{Name: "good@127.0.0.1", Connected: true, Capacity: 10, APIURL: urls["good@127.0.0.1"]})
	for _, n := range []string{"me@127.0.0.1", "good@127.0.0.1"} {
		mem2.Node(n).ClaimChannel(context.Background(), "room")
	}
	ts := newTestServer(t, Config{})
	ts.Close()
	h2, _ := NewAdminHandler(&fakeAdmin{Cluster: mem2.Node("me@127.0.0.1")}, AdminConfig{NodeName: "me@127.0.0.1", Channels: ts.Server, Token: adminToken})
	code, resp, _ = post(t, h2, TargetDisconnectChannel, `{"channel_id":"room"}`, "Authorization", "Bearer "+adminToken)
	res = DisconnectChannelResult{}
	if code != 503 || json.Unmarshal([]byte(resp), &res) != nil || res.Disconnected != 3 || len(res.FailedNodes) != 1 || res.FailedNodes[0].NodeName != "me@127.0.0.1" {
		t.Errorf("disconnect on a closed server: %d %s", code, resp)
	}
}

// joinAs connects a client to node short in channel with connect's extra
// fields and returns it, once it has its offer, and its connection_id.
func (ac *adminCluster) joinAs(t *testing.T, short, channel, extra string) (*wsClient, string) {
	t.Helper()
	c := dial(t, ac.url(short))
	c.send(connectMsg(channel, extra))
	offer := c.expect(wire.TypeOffer)
	c.send(`{"type":"answer","sdp":"v=0"}`)
	id, _ := offer["connection_id"].(string)
	return c, id
}

// expectPush reads until a push and returns its data, as JSON.
func expectPush(t *testing.T, c *wsClient) string {
	t.Helper()
	m := c.expect(wire.TypePush)
	b, _ := json.Marshal(m["data"])
	return string(b)
}

// TestAdminPushAndPerConnectionAcrossCluster: PushChannel reaches every
// client of a channel on three nodes; PushConnection, PushClient,
// DisconnectConnection and DisconnectClient reach only the connection (or
// client) named, from any node, wherever it is; a connection no node has
// is a 404, but a 502 when a node that might have it failed.
func TestAdminPushAndPerConnectionAcrossCluster(t *testing.T) {
	testutil.CheckLeaks(t)
	ac := newAdminCluster(t)
	const a, b, c = "a@127.0.0.1", "b@127.0.0.1", "c@127.0.0.1"
	a1, a1ID := ac.joinAs(t, "a", "room", "")
	b1, b1ID := ac.joinAs(t, "b", "room", `,"client_id":"bob1"`)
	b2, _ := ac.joinAs(t, "b", "room", `,"client_id":"bob"`)
	c1, c1ID := ac.joinAs(t, "c", "room", `,"client_id":"carol"`)
	all := []*wsClient{a1, b1, b2, c1}

	// PushChannel at b: every client on every node.
	code, _, body := ac.apiCall(t, "b", TargetPushChannel, `{"channel_id":"room","data":{"msg":"all","n":[1,2]}}`)
	var pr PushResult
	if code != 200 || json.Unmarshal(body, &pr) != nil || pr.ChannelID != "room" || pr.Pushed != 4 || len(pr.FailedNodes) != 0 ||
		!slices.Equal(pr.Nodes, []NodePushed{{a, 1}, {b, 2}, {c, 1}}) {
		t.Fatalf("push channel at b: %d %s", code, body)
	}
	for i, cl := range all {
		if d := expectPush(t, cl); d != `{"msg":"all","n":[1,2]}` {
			t.Errorf("client %d: push data %s", i, d)
		}
	}

	// PushConnection at a, to c1 on c: only c1 gets it. A PushChannel next
	// shows that the others got nothing in between.
	code, _, body = ac.apiCall(t, "a", TargetPushConnection, `{"channel_id":"room","connection_id":"`+c1ID+`","data":{"to":"c1"}}`)
	pr = PushResult{}
	if code != 200 || json.Unmarshal(body, &pr) != nil || pr.ConnectionID != c1ID || pr.Pushed != 1 ||
		!slices.Equal(pr.Nodes, []NodePushed{{a, 0}, {b, 0}, {c, 1}}) {
		t.Fatalf("push connection at a: %d %s", code, body)
	}
	// PushClient at c, to bob on b.
	code, _, body = ac.apiCall(t, "c", TargetPushClient, `{"channel_id":"room","client_id":"bob","data":{"to":"bob"}}`)
	pr = PushResult{}
	if code != 200 || json.Unmarshal(body, &pr) != nil || pr.ClientID != "bob" || pr.Pushed != 1 ||
		!slices.Equal(pr.Nodes, []NodePushed{{a, 0}, {b, 1}, {c, 0}}) {
		t.Fatalf("push client at c: %d %s", code, body)
	}
	if code, _, body := ac.apiCall(t, "a", TargetPushChannel, `{"channel_id":"room","data":{"msg":"after"}}`); code != 200 {
		t.Fatalf("push channel: %d %s", code, body)
	}
	for i, want := range [][]string{{`{"msg":"after"}`}, {`{"msg":"after"}`}, {`{"to":"bob"}`, `{"msg":"after"}`}, {`{"to":"c1"}`, `{"msg":"after"}`}} {
		for _, w := range want {
			if d := expectPush(t, all[i]); d != w {
				t.Errorf("client %d: push %s, want %s", i, d, w)
			}
		}
	}

	// No node has it: 404, for every per-connection target, from any node.
	for _, tc := range [][3]string{
		{"a", TargetPushConnection, `{"channel_id":"room","connection_id":"NOPE","data":{}}`},
		{"b", TargetPushClient, `{"channel_id":"room","client_id":"nobody","data":{}}`},
		{"c", TargetDisconnectConnection, `{"channel_id":"room","connection_id":"NOPE"}`},
		{"a", TargetDisconnectClient, `{"channel_id":"room","client_id":"nobody"}`},
	} {
		code, _, body := ac.apiCall(t, tc[0], tc[1], tc[2])
		var e map[string]any
		if code != 404 || json.Unmarshal(body, &e) != nil || !strings.Contains(fmt.Sprint(e["error"]), "on any node (3 asked)") {
			t.Errorf("%s at %s %s: %d %s, want 404", tc[1], tc[0], tc[2], code, body)
		}
	}
	// ... but with the scope header a node answers its own part: 200, 0.
	if code, _, body := ac.apiCall(t, "a", TargetPushConnection, `{"channel_id":"room","connection_id":"`+c1ID+`","data":{}}`, ScopeHeader, ScopeNode); code != 200 ||
		!strings.Contains(string(body), `"pushed":0`) {
		t.Errorf("node-scoped push at a of c's connection: %d %s", code, body)
	}

	// Bad bodies: 400 naming the field.
	for _, tc := range [][3]string{
		{TargetPushChannel, `{"channel_id":"room","data":"text"}`, `field \"data\" must be a JSON object`},
		{TargetPushConnection, `{"channel_id":"room","data":{}}`, `missing field \"connection_id\"`},
		{TargetDisconnectConnection, `{"channel_id":"` + strings.Repeat("x", 256) + `","connection_id":"X"}`, `channel_id is 256 bytes`},
	} {
		if code, _, body := ac.apiCall(t, "b", tc[0], tc[1]); code != 400 || !strings.Contains(string(body), tc[2]) {
			t.Errorf("%s %.60s: %d %s, want 400 %s", tc[0], tc[1], code, body, tc[2])
		}
	}

	// DisconnectConnection at a, of b1 on b: only b1 closes.
	code, _, body = ac.apiCall(t, "a", TargetDisconnectConnection, `{"channel_id":"room","connection_id":"`+b1ID+`","reason":"KICKED"}`)
	var dr DisconnectChannelResult
	if code != 200 || json.Unmarshal(body, &dr) != nil || dr.ConnectionID != b1ID || dr.Disconnected != 1 ||
		!slices.Equal(dr.Nodes, []NodeDisconnected{{a, 0}, {b, 1}, {c, 0}}) {
		t.Fatalf("disconnect connection at a: %d %s", code, body)
	}
	b1.wantClose(1000, "KICKED")
	// DisconnectClient at c, of bob on b.
	code, _, body = ac.apiCall(t, "c", TargetDisconnectClient, `{"channel_id":"room","client_id":"bob"}`)
	dr = DisconnectChannelResult{}
	if code != 200 || json.Unmarshal(body, &dr) != nil || dr.ClientID != "bob" || dr.Disconnected != 1 {
		t.Fatalf("disconnect client at c: %d %s", code, body)
	}
	b2.wantClose(1000, "")
	testutil.Eventually(t, func() bool { return len(ac.servers[b].Connections("room")) == 0 }, 5*time.Second, "b's connections gone")
	// A connection is unlisted as its end begins, but its node releases the
	// channel only after the close handshake (up to closeFirstWait): wait
	// for b's release, or b is still asked below (a 502 listing b).
	testutil.Eventually(t, func() bool {
		v := ac.mem.Node(a).Snapshot()
		for _, o := range v.Sessions["room"].Owners {
			if v.Nodes[o.Node].Name == b {
				return false
			}
		}
		return true
	}, 5*time.Second, "b no longer holding room")

	// The others are still there, listed in Sora's shape, under
	// Sora's name and the old alias alike (at a: b, holding no part now,
	// would answer 307).
	for _, target := range []string{TargetListChannelConnections, TargetListChannelConnectionsShoal} {
		code, _, body := ac.apiCall(t, "a", target, `{"channel_id":"room"}`)
		var raw []map[string]any
		if code != 200 || json.Unmarshal(body, &raw) != nil || len(raw) != 2 {
			t.Fatalf("%s: %d %s", target, code, body)
		}
		for _, m := range raw {
			ct, ok := m["created_time"].(float64)
			if !ok || ct < float64(time.Now().Add(-time.Minute).UnixMicro()) || ct > float64(time.Now().UnixMicro()) ||
				m["multistream"] != true || m["simulcast"] != false || m["spotlight"] != false || m["client_id"] == "" ||
				m["role"] != "sendrecv" || m["audio"] == false || m["node_name"] == "" {
				t.Errorf("%s: entry %v", target, m)
			}
		}
		if raw[0]["connection_id"] != a1ID || raw[0]["client_id"] != a1ID || raw[1]["connection_id"] != c1ID || raw[1]["client_id"] != "carol" {
			t.Errorf("%s: %s", target, body)
		}
	}

	// A node that might hold the connection failed: 502, not 404, with what
	// the others did.
	ac.api["c"].Close()
	code, _, body = ac.apiCall(t, "a", TargetPushConnection, `{"channel_id":"room","connection_id":"NOPE","data":{}}`)
	pr = PushResult{}
	if code != 502 || json.Unmarshal(body, &pr) != nil || pr.Pushed != 0 || len(pr.FailedNodes) != 1 || pr.FailedNodes[0].NodeName != c {
		t.Errorf("push to an unknown connection with c down: %d %s", code, body)
	}
	code, _, body = ac.apiCall(t, "a", TargetPushConnection, `{"channel_id":"room","connection_id":"`+a1ID+`","data":{"x":1}}`)
	pr = PushResult{}
	if code != 502 || json.Unmarshal(body, &pr) != nil || pr.Pushed != 1 || !slices.Equal(pr.Nodes, []NodePushed{{a, 1}}) { // b holds no part any more
		t.Errorf("push to a1 with c down: %d %s", code, body)
	}
	if d := expectPush(t, a1); d != `{"x":1}` {
		t.Errorf("a1: push %s", d)
	}
}
