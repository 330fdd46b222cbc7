package signaling

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-sfu/shoal/affinity"
	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/signaling/wire"
)

// simMedia is a fakeMedia whose connections offer simulcast when asked
// and record the layers the admin API asks for.
type simMedia struct {
	fakeMedia
	mu    sync.Mutex
	conns []*simConn
}

type simConn struct {
	*fakeConn
	mu   sync.Mutex
	rids []string // sender/rid
}

func (m *simMedia) Join(ctx context.Context, req MediaRequest) (MediaConn, error) {
	c, err := m.fakeMedia.Join(ctx, req)
	if err != nil {
		return nil, err
	}
	sc := &simConn{fakeConn: c.(*fakeConn)}
	m.mu.Lock()
	m.conns = append(m.conns, sc)
	m.mu.Unlock()
	return sc, nil
}

func (m *simMedia) conn(i int) *simConn {
	m.mu.Lock()
	defer m.mu.Unlock()
	if i >= len(m.conns) {
		return nil
	}
	return m.conns[i]
}

func (c *simConn) Offer() MediaOffer {
	o := c.fakeConn.Offer()
	if c.req.Simulcast {
		o.Simulcast = true
		o.Encodings = []wire.Encoding{{RID: "r0", Active: true, ScaleResolutionDownBy: 4}, {RID: "r1", Active: true, ScaleResolutionDownBy: 2}, {RID: "r2", Active: true, ScaleResolutionDownBy: 1}}
	}
	return o
}

func (c *simConn) SetSimulcastRid(sender, rid string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rids = append(c.rids, sender+"/"+rid)
	return nil
}

func (c *simConn) ridCalls() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.rids...)
}

func TestSimulcastConnectAndOffer(t *testing.T) {
	m := &simMedia{}
	ts := newTestServer(t, Config{Media: m})
	c := dial(t, ts.url)
	c.send(connectMsg("sc", `,"simulcast":true,"simulcast_rid":"r2","simulcast_request_rid":"r1"`))
	offer := c.expect(wire.TypeOffer)
	if offer["simulcast"] != true {
		t.Fatalf("offer simulcast %v", offer["simulcast"])
	}
	b, _ := json.Marshal(offer["encodings"])
	if want := `[{"active":true,"rid":"r0","scaleResolutionDownBy":4},{"active":true,"rid":"r1","scaleResolutionDownBy":2},{"active":true,"rid":"r2","scaleResolutionDownBy":1}]`; string(b) != want {
		t.Fatalf("encodings %s, want %s", b, want)
	}
	sc := m.conn(0)
	if !sc.req.Simulcast || sc.req.SimulcastRid != "r1" {
		t.Fatalf("media request simulcast %v rid %q", sc.req.Simulcast, sc.req.SimulcastRid)
	}
	// ListChannelConnections says so.
	if infos := ts.Connections("sc"); len(infos) != 1 || !infos[0].Simulcast {
		t.Fatalf("connections %+v: not simulcast", infos)
	}
	if b, _ := json.Marshal(ts.Connections("sc")[0]); !strings.Contains(string(b), `"simulcast":true`) {
		t.Fatalf("connection info %s", b)
	}
	c.send(`{"type":"answer","sdp":"v=0\r\n"}`)

	// A switch becomes Sora's notify.
	sc.req.Events.SimulcastSwitched(SimulcastSwitch{SenderConnectionID: "P", Requested: "r2", Previous: "r0", Current: "r2", Trigger: "receiver"})
	var n map[string]any
	for n == nil || n["event_type"] != string(wire.EventSimulcastSwitched) {
		n = c.expect(wire.TypeNotify)
	}
	if _, err := time.Parse(time.RFC3339Nano, n["timestamp"].(string)); err != nil {
		t.Fatalf("timestamp: %v", err)
	}
	delete(n, "timestamp")
	b, _ = json.Marshal(n)
	if want := `{"auto_rids":[],"current_rid":"r2","event_type":"simulcast.switched","previous_rid":"r0","priority":"higher","request_rid":"r2","rpc_rids":[],"sender_connection_id":"P","trigger":"receiver","type":"notify"}`; string(b) != want {
		t.Fatalf("notify %s, want %s", b, want)
	}

	// The admin API's request reaches the connection.
	connID := sc.req.ConnectionID
	if n, err := ts.RequestSimulcastRid("sc", connID, "P", "r0"); n != 1 || err != nil {
		t.Fatalf("RequestSimulcastRid: %d, %v", n, err)
	}
	if n, err := ts.RequestSimulcastRid("sc", "nobody", "", "r0"); n != 0 || err != nil {
		t.Fatalf("RequestSimulcastRid of nobody: %d, %v", n, err)
	}
	if _, err := ts.RequestSimulcastRid("sc", connID, "", "r7"); err == nil {
		t.Fatal("rid r7 accepted")
	}
	if n, err := ts.RequestSimulcastRid("sc", connID, "", "auto"); n != 1 || err != nil {
		t.Fatalf("RequestSimulcastRid auto: %d, %v", n, err)
	}
	testutil.Eventually(t, func() bool { return strings.Join(sc.ridCalls(), ",") == "P/r0,/auto" }, 5*time.Second, "rid requests applied")

	// The video's start (from none), with auto asked for and the layers the
	// congestion control allows; and its stop (to none).
	for _, tc := range []struct {
		ev   SimulcastSwitch
		want string
	}{
		{SimulcastSwitch{SenderConnectionID: "P", Requested: "auto", Previous: "none", Current: "r1", Trigger: "receiver", AutoRids: []string{"r0", "r1"}},
			`{"auto_rids":["r0","r1"],"current_rid":"r1","event_type":"simulcast.switched","previous_rid":"none","priority":"higher","request_rid":"auto","rpc_rids":[],"sender_connection_id":"P","trigger":"receiver","type":"notify"}`},
		{SimulcastSwitch{SenderConnectionID: "P", Requested: "auto", Previous: "r1", Current: "none", Trigger: "receiver"},
			`{"auto_rids":[],"current_rid":"none","event_type":"simulcast.switched","previous_rid":"r1","priority":"lower","request_rid":"auto","rpc_rids":[],"sender_connection_id":"P","trigger":"receiver","type":"notify"}`},
	} {
		sc.req.Events.SimulcastSwitched(tc.ev)
		n = nil
		for n == nil || n["event_type"] != string(wire.EventSimulcastSwitched) {
			n = c.expect(wire.TypeNotify)
		}
		delete(n, "timestamp")
		if b, _ = json.Marshal(n); string(b) != tc.want {
			t.Fatalf("notify %s, want %s", b, tc.want)
		}
	}
}

func TestSimulcastConnectDefaults(t *testing.T) {
	m := &simMedia{}
	ts := newTestServer(t, Config{Media: m})
	for i, tc := range []struct {
		extra     string
		simulcast bool
		rid       string
	}{
		{``, false, ""},
		{`,"simulcast":false,"simulcast_rid":"r1"`, false, "r1"},
		{`,"simulcast":{"rid":"r2"}`, true, "r2"}, // older SDKs
		{`,"simulcast_request_rid":"none"`, false, "none"},
		{`,"simulcast_request_rid":"auto"`, false, "auto"},
		{`,"simulcast_rid":"auto"`, false, "auto"},
	} {
		c := dial(t, ts.url)
		c.send(connectMsg("d", tc.extra))
		offer := c.expect(wire.TypeOffer)
		req := m.conn(i).req
		if req.Simulcast != tc.simulcast || req.SimulcastRid != tc.rid {
			t.Errorf("%s: simulcast %v rid %q", tc.extra, req.Simulcast, req.SimulcastRid)
		}
		if _, ok := offer["encodings"]; ok != tc.simulcast {
			t.Errorf("%s: offer %v", tc.extra, offer)
		}
	}
	for _, extra := range []string{`,"simulcast_rid":"none"`, `,"simulcast_request_rid":"r3"`, `,"simulcast":{"rid":"x"}`, `,"simulcast":{"rid":"auto"}`, `,"simulcast":"yes"`} {
		c := dial(t, ts.url)
		c.send(connectMsg("d", extra))
		code, reason := c.closed()
		if code != wire.CloseInvalidMessage || (reason != "INVALID-SIMULCAST-RID" && reason != "INVALID-FIELD" && reason != "INVALID-MESSAGE") {
			t.Errorf("%s: close %d %q", extra, code, reason)
		}
	}
}

func TestAdminRequestSimulcastRid(t *testing.T) {
	m := &simMedia{}
	ts := newTestServer(t, Config{Media: m})
	c := dial(t, ts.url)
	c.send(connectMsg("mine", ""))
	c.expect(wire.TypeOffer)
	connID := m.conn(0).req.ConnectionID
	mem := NewMemCluster(affinity.DefaultSettings(), affinity.Node{Name: "a@127.0.0.1", Connected: true, Capacity: 10, APIURL: "http://a.example:3000/"})
	h, err := NewAdminHandler(&fakeAdmin{Cluster: mem.Node("a@127.0.0.1")}, AdminConfig{NodeName: "a@127.0.0.1", Channels: ts.Server, Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		target, body string
		code         int
		want         string
	}{
		{TargetRequestSimulcastRid, `{"channel_id":"mine","receiver_connection_id":"` + connID + `","sender_connection_id":"P","rid":"r1"}`, 200,
			`{"channel_id":"mine","receiver_connection_id":"` + connID + `","rid":"r1","sender_connection_id":"P","requested":1,"nodes":[{"node_name":"a@127.0.0.1","requested":1}]}`},
		{TargetRequestSimulcastRid, `{"channel_id":"mine","receiver_connection_id":"` + connID + `","rid":"none"}`, 200,
			`{"channel_id":"mine","receiver_connection_id":"` + connID + `","rid":"none","requested":1,"nodes":[{"node_name":"a@127.0.0.1","requested":1}]}`},
		// Sora's older name and keys.
		{TargetRequestRtpStream, `{"channel_id":"mine","recv_connection_id":"` + connID + `","send_connection_id":"Q","rid":"r2"}`, 200,
			`{"channel_id":"mine","receiver_connection_id":"` + connID + `","rid":"r2","sender_connection_id":"Q","requested":1,"nodes":[{"node_name":"a@127.0.0.1","requested":1}]}`},
		{TargetRequestSimulcastRid, `{"channel_id":"mine","receiver_connection_id":"C9","rid":"r1"}`, 404,
			`{"channel_id":"mine","receiver_connection_id":"C9","rid":"r1","requested":0,"nodes":[{"node_name":"a@127.0.0.1","requested":0}],"error":"no connection \"C9\" in channel \"mine\" on any node (1 asked)"}`},
		// auto: as a rid, or Sora's boolean (rid may then be left out).
		{TargetRequestSimulcastRid, `{"channel_id":"mine","receiver_connection_id":"` + connID + `","rid":"auto"}`, 200,
			`{"channel_id":"mine","receiver_connection_id":"` + connID + `","rid":"auto","requested":1,"nodes":[{"node_name":"a@127.0.0.1","requested":1}]}`},
		{TargetRequestSimulcastRid, `{"channel_id":"mine","receiver_connection_id":"` + connID + `","sender_connection_id":"P","auto":true}`, 200,
			`{"channel_id":"mine","receiver_connection_id":"` + connID + `","rid":"auto","sender_connection_id":"P","requested":1,"nodes":[{"node_name":"a@127.0.0.1","requested":1}]}`},
		{TargetRequestSimulcastRid, `{"channel_id":"mine","receiver_connection_id":"C1","rid":"r4"}`, 400, `{"error":"field \"rid\": \"r4\" is not none, r0, r1, r2 or auto"}`},
		{TargetRequestSimulcastRid, `{"channel_id":"mine","receiver_connection_id":"C1","rid":"r1","auto":true}`, 400, `{"error":"field \"rid\" is \"r1\" with \"auto\": true; give one of them"}`},
		{TargetRequestSimulcastRid, `{"channel_id":"mine","receiver_connection_id":"C1","rid":"r1","auto":"yes"}`, 400, `{"error":"field \"auto\" must be a boolean"}`},
		{TargetRequestSimulcastRid, `{"channel_id":"mine","rid":"r1"}`, 400, `{"error":"missing field \"receiver_connection_id\""}`},
		{TargetRequestSimulcastRid, `{"channel_id":"mine","receiver_connection_id":"C1"}`, 400, `{"error":"missing field \"rid\""}`},
	} {
		code, body, _ := post(t, h, tc.target, tc.body)
		if code != tc.code || body != tc.want {
			t.Errorf("%s %s:\n got %d %s\nwant %d %s", tc.target, tc.body, code, body, tc.code, tc.want)
		}
	}
	testutil.Eventually(t, func() bool { return strings.Join(m.conn(0).ridCalls(), ",") == "P/r1,/none,Q/r2,/auto,P/auto" }, 5*time.Second, "rid requests applied")

	// A node whose channel operations lack SimulcastOps answers 400.
	h2, _ := NewAdminHandler(&fakeAdmin{Cluster: mem.Node("a@127.0.0.1")}, AdminConfig{NodeName: "a@127.0.0.1", Channels: &fakeChannels{}, Logger: testutil.Logger(t)})
	if code, body, _ := post(t, h2, TargetRequestSimulcastRid, `{"channel_id":"mine","receiver_connection_id":"C1","rid":"r1"}`); code != 400 || !strings.Contains(body, "simulcast operations are not available") {
		t.Fatalf("without SimulcastOps: %d %s", code, body)
	}
}
