package signaling

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/signaling/wire"
)

// allDCs is an offer's data_channels with the three server channels.
var allDCs = []wire.OfferDataChannel{{Label: "signaling", Direction: "sendrecv"}, {Label: "notify", Direction: "sendrecv"},
	{Label: "push", Direction: "sendrecv"}}

// switchedSession connects (extra is added to connect), answers, reports the
// data channels open and reads "switched". It returns the client, the
// media connection, the connection_id and switched.
func switchedSession(t *testing.T, ts *testServer, channel, extra string) (*wsClient, *fakeConn, string, map[string]any) {
	t.Helper()
	c := dial(t, ts.url)
	c.send(connectMsg(channel, extra))
	id, _ := c.expect(wire.TypeOffer)["connection_id"].(string)
	var fc *fakeConn
	for i := range ts.media.count() {
		if cc := ts.media.conn(i); cc.req.ConnectionID == id {
			fc = cc
		}
	}
	if fc == nil {
		t.Fatalf("no media connection for %s", id)
	}
	// The data channels may open before the answer is applied (pion opens
	// them once SCTP is up): switched waits for both.
	opened := time.Now()
	fc.req.Events.DataChannelsOpen()
	c.send(`{"type":"answer","sdp":"v=0\r\nanswer\r\n"}`)
	sw := c.expect(wire.TypeSwitched)
	if d := time.Since(opened); d < switchedDelay {
		t.Errorf("switched %v after the data channels opened, want at least %v", d, switchedDelay)
	}
	if a, _ := fc.counts(); a != 1 {
		t.Errorf("switched before the answer was applied (%d answers)", a)
	}
	return c, fc, id, sw
}

// lastOn waits for n messages on the data channel label and decodes the nth.
func lastOn(t *testing.T, fc *fakeConn, label string, n int) map[string]any {
	t.Helper()
	testutil.Eventually(t, func() bool { return len(fc.sentOn(label)) >= n }, 5*time.Second, "%d messages on %q", n, label)
	msgs := fc.sentOn(label)
	var m map[string]any
	if err := json.Unmarshal([]byte(msgs[n-1]), &m); err != nil {
		t.Fatalf("message on %q is not JSON: %q", label, msgs[n-1])
	}
	return m
}

func TestSwitchedKeepsWebSocket(t *testing.T) {
	testutil.CheckLeaks(t)
	ts := newTestServer(t, Config{PingInterval: -1})
	ts.media.setDCs(allDCs)
	c, fc, id, sw := switchedSession(t, ts, "room", `,"data_channel_signaling":true,"ignore_disconnect_websocket":false`)
	if v, ok := sw["ignore_disconnect_websocket"]; !ok || v != false {
		t.Errorf("switched %v: want ignore_disconnect_websocket false", sw)
	}

	// A re-offer goes on the signaling data channel; the re-answer comes back on it.
	fc.req.Events.ReOffer("v=0\r\nre-offer\r\n")
	if m := lastOn(t, fc, "signaling", 1); m["type"] != wire.TypeReOffer || m["sdp"] != "v=0\r\nre-offer\r\n" {
		t.Errorf("re-offer on the data channel: %v", m)
	}
	fc.req.Events.Message("signaling", []byte(`{"type":"re-answer","sdp":"v=0\r\nre-answer\r\n"}`), true)
	testutil.Eventually(t, func() bool { a, _ := fc.counts(); return a == 2 }, 5*time.Second, "re-answer applied")
	// Notify and push go on their channels.
	fc.req.Events.Event(ConnectionEvent{Type: wire.EventConnectionCreated, ConnectionID: "OTHER", Role: wire.RoleSendrecv,
		Counts: ChannelCounts{Connections: 2, SendRecv: 2}})
	if m := lastOn(t, fc, "notify", 1); m["type"] != wire.TypeNotify || m["connection_id"] != "OTHER" || m["channel_connections"] != 2.0 {
		t.Errorf("notify on the data channel: %v", m)
	}
	if n, err := ts.PushConnection("room", id, json.RawMessage(`{"n":1}`)); n != 1 || err != nil {
		t.Fatalf("PushConnection: %d %v", n, err)
	}
	if m := lastOn(t, fc, "push", 1); m["type"] != wire.TypePush || m["data"].(map[string]any)["n"] != 1.0 {
		t.Errorf("push on the data channel: %v", m)
	}

	// Without ignore_disconnect_websocket the WebSocket still ends the session.
	c.ws.Close(websocket.StatusNormalClosure, "")
	testutil.Eventually(t, fc.isClosed, 5*time.Second, "media closed after the WebSocket closed")
	testutil.Eventually(t, func() bool { return len(ts.Connections("room")) == 0 }, 5*time.Second, "session gone")
	if got := fc.sentOn("signaling"); len(got) != 1 {
		t.Errorf("signaling channel got %q, want only the re-offer (no close while the WebSocket lives)", got)
	}
}

func TestSwitchedIgnoreWebSocket(t *testing.T) {
	testutil.CheckLeaks(t)
	// The defaults come from Config; connect does not set the fields.
	ts := newTestServer(t, Config{DataChannelSignaling: true, IgnoreDisconnectWebSocket: true,
		PingInterval: 20 * time.Millisecond, PongTimeout: time.Second})
	ts.media.setDCs(allDCs)
	c, fc, id, sw := switchedSession(t, ts, "room", "")
	if sw["ignore_disconnect_websocket"] != true {
		t.Errorf("switched %v: want ignore_disconnect_websocket true", sw)
	}
	// The client drops the WebSocket as the SDK does (no pong comes after
	// this: the server must stop pinging).
	c.ws.CloseNow()
	// Pings to a closed socket would fail; the pong awaited since before
	// switched would time out.
	time.Sleep(1200 * time.Millisecond)
	if fc.isClosed() || len(ts.Connections("room")) != 1 {
		t.Fatalf("the session ended with its WebSocket (media closed %v)", fc.isClosed())
	}

	fc.req.Events.ReOffer("v=0\r\nre-offer\r\n")
	if m := lastOn(t, fc, "signaling", 1); m["type"] != wire.TypeReOffer {
		t.Errorf("re-offer on the data channel: %v", m)
	}
	fc.req.Events.Message("signaling", []byte(`{"candidate":"candidate:1 1 udp 1 127.0.0.1 5000 typ host","type":"candidate"}`), true)
	fc.req.Events.Message("signaling", []byte(`{"type":"re-answer","sdp":"v=0\r\nre-answer\r\n"}`), true)
	testutil.Eventually(t, func() bool { a, cs := fc.counts(); return a == 2 && cs == 1 }, 5*time.Second, "re-answer and candidate applied")
	fc.req.Events.Event(ConnectionEvent{Type: wire.EventConnectionDestroyed, ConnectionID: "OTHER", Role: wire.RoleSendrecv})
	if m := lastOn(t, fc, "notify", 1); m["event_type"] != "connection.destroyed" {
		t.Errorf("notify on the data channel: %v", m)
	}

	// The API ends it with close on the signaling data channel, then the media.
	if n, err := ts.DisconnectConnection("room", id, "BYE"); n != 1 || err != nil {
		t.Fatalf("DisconnectConnection: %d %v", n, err)
	}
	if m := lastOn(t, fc, "signaling", 2); m["type"] != wire.TypeClose || m["code"] != 1000.0 || m["reason"] != "BYE" {
		t.Errorf("close on the data channel: %v", m)
	}
	testutil.Eventually(t, fc.isClosed, 5*time.Second, "media closed after close")
	testutil.Eventually(t, func() bool { return len(ts.Connections("room")) == 0 }, 5*time.Second, "session gone")
	if fc.closedDCs() {
		t.Error("the data channels were closed before the media: the client ends on close (it closes them itself)")
	}
}

func TestSwitchedIgnoreWebSocketEnds(t *testing.T) {
	testutil.CheckLeaks(t)
	// connect's fields override the defaults.
	ts := newTestServer(t, Config{DataChannelSignaling: false, IgnoreDisconnectWebSocket: false})
	ts.media.setDCs(allDCs)
	const ask = `,"data_channel_signaling":true,"ignore_disconnect_websocket":true`

	// A client disconnect on the data channel ends the session normally,
	// without a close message (the SDK waits for its channels to close).
	c1, fc1, _, _ := switchedSession(t, ts, "room", ask)
	c1.ws.Close(websocket.StatusNormalClosure, "")
	fc1.req.Events.Message("signaling", []byte(`{"reason":"NO-ERROR","type":"disconnect"}`), true)
	testutil.Eventually(t, fc1.isClosed, 5*time.Second, "media closed after disconnect")
	if got := fc1.sentOn("signaling"); len(got) != 0 {
		t.Errorf("signaling channel got %q after the client's disconnect", got)
	}
	if !fc1.closedDCs() {
		t.Error("the data channels were not closed before the media (the SDK waits for them)")
	}

	// The media ending ends it too.
	c2, fc2, _, _ := switchedSession(t, ts, "room", ask)
	c2.ws.CloseNow()
	time.Sleep(50 * time.Millisecond)
	fc2.Close()
	testutil.Eventually(t, func() bool { return len(ts.Connections("room")) == 0 }, 5*time.Second, "session gone with its media")

	// Server shutdown: close 1001 on the data channel.
	c3, fc3, _, _ := switchedSession(t, ts, "room", ask)
	c3.ws.CloseNow()
	time.Sleep(50 * time.Millisecond)
	ts.Close()
	if m := lastOn(t, fc3, "signaling", 1); m["type"] != wire.TypeClose || m["code"] != float64(wire.CloseServerShutdown) || m["reason"] != "SERVER-SHUTDOWN" {
		t.Errorf("close on the data channel: %v", m)
	}
	if !fc3.isClosed() {
		t.Error("media not closed by Close")
	}
}

func TestNoSwitch(t *testing.T) {
	testutil.CheckLeaks(t)
	ts := newTestServer(t, Config{DataChannelSignaling: true, PingInterval: -1})
	ts.media.setDCs(allDCs)
	for _, tc := range []struct {
		name, extra string
		dcs         []wire.OfferDataChannel
	}{
		{"connect says no", `,"data_channel_signaling":false`, allDCs},
		{"no signaling channel", ``, []wire.OfferDataChannel{{Label: "notify", Direction: "sendrecv"}}},
	} {
		ts.media.setDCs(tc.dcs)
		c := dial(t, ts.url)
		c.send(connectMsg(tc.name, tc.extra))
		c.expect(wire.TypeOffer)
		fc := ts.media.conn(ts.media.count() - 1)
		c.send(`{"type":"answer","sdp":"v=0"}`)
		fc.req.Events.DataChannelsOpen()
		time.Sleep(2 * switchedDelay)
		// The next message is the re-offer, on the WebSocket: no switched.
		fc.req.Events.ReOffer("v=0\r\nre-offer\r\n")
		if m := c.expect(wire.TypeReOffer); m["sdp"] != "v=0\r\nre-offer\r\n" {
			t.Errorf("%s: re-offer %v", tc.name, m)
		}
		if got := fc.sentOn("signaling"); len(got) != 0 {
			t.Errorf("%s: signaling channel got %q", tc.name, got)
		}
	}
}
