package signaling

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/shoal-sfu/shoal/affinity"
	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/signaling/wire"
)

func TestNewValidates(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Authenticator: AllowAll}, "Media is nil"},
		{Config{Media: &fakeMedia{}}, "Authenticator is nil"},
		{Config{Media: &fakeMedia{}, Authenticator: AllowAll, Cluster: NewMemCluster(affinity.DefaultSettings()).Node("a")}, "NodeName is empty"},
		{Config{Media: &fakeMedia{}, Authenticator: AllowAll, AnswerTimeout: -1}, "AnswerTimeout"},
	} {
		_, err := New(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New: got %v, want an error with %q", err, tc.want)
		}
	}
}

func TestSessionOfferAnswer(t *testing.T) {
	testutil.CheckLeaks(t)
	var authReq atomic.Pointer[AuthRequest]
	ts := newTestServer(t, Config{Authenticator: AuthFunc(func(ctx context.Context, r *AuthRequest) (AuthResult, error) {
		authReq.Store(r)
		return AuthResult{Allowed: true, Metadata: []byte(`{"user":"alice"}`)}, nil
	})})
	c := dial(t, ts.url)
	c.send(connectMsg("room", `,"client_id":"alice","data_channels":[{"label":"#chat","direction":"sendrecv"}]`))
	offer := c.expect(wire.TypeOffer)
	id, _ := offer["connection_id"].(string)
	if len(id) != 26 || offer["client_id"] != "alice" || offer["sdp"] != "v=0\r\nfake-offer\r\n" {
		t.Fatalf("offer %v", offer)
	}
	if mid, _ := offer["mid"].(map[string]any); mid["audio"] != "0" || mid["video"] != "1" {
		t.Errorf("offer mid %v", offer["mid"])
	}
	if md, _ := offer["metadata"].(map[string]any); md["user"] != "alice" {
		t.Errorf("offer metadata %v (from the auth hook)", offer["metadata"])
	}
	if dcs, _ := offer["data_channels"].([]any); len(dcs) != 2 {
		t.Errorf("offer data_channels %v", offer["data_channels"])
	}
	if r := authReq.Load(); r == nil || r.ConnectionID != id || r.ChannelID != "room" || r.Role != wire.RoleSendrecv || r.ClientID != "alice" {
		t.Errorf("auth request %+v", r)
	}
	n := c.expect(wire.TypeNotify)
	if n["event_type"] != "connection.created" || n["connection_id"] != id || n["channel_connections"] != 1.0 {
		t.Errorf("notify %v", n)
	}
	fc := ts.media.conn(0)
	if fc.req.ChannelID != "room" || fc.req.ConnectionID != id || !fc.req.Audio || len(fc.req.DataChannels) != 1 {
		t.Errorf("media request %+v", fc.req)
	}
	c.send(`{"type":"answer","sdp":"v=0\r\nanswer\r\n"}`)
	c.send(`{"candidate":"candidate:1 1 udp 1 127.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0,"type":"candidate"}`)
	testutil.Eventually(t, func() bool { a, cs := fc.counts(); return a == 1 && cs == 1 }, 5*time.Second, "answer and candidate applied")
	if got := ts.Connections("room"); len(got) != 1 || got[0].ConnectionID != id {
		t.Errorf("Connections: %+v", got)
	}

	// A re-offer; the re-answer comes on the signaling data channel.
	fc.req.Events.ReOffer("v=0\r\nre-offer\r\n")
	if m := c.expect(wire.TypeReOffer); m["sdp"] != "v=0\r\nre-offer\r\n" {
		t.Errorf("re-offer %v", m)
	}
	fc.req.Events.Message("signaling", []byte(`{"type":"re-answer","sdp":"v=0\r\nre-answer\r\n"}`), true)
	testutil.Eventually(t, func() bool { a, _ := fc.counts(); return a == 2 }, 5*time.Second, "re-answer applied")

	// Another connection leaves: notify with counts.
	fc.req.Events.Event(ConnectionEvent{Type: wire.EventConnectionDestroyed, ConnectionID: "OTHER", Role: wire.RoleRecvonly, Counts: ChannelCounts{Connections: 1, SendRecv: 1}})
	if m := c.expect(wire.TypeNotify); m["event_type"] != "connection.destroyed" || m["connection_id"] != "OTHER" || m["channel_sendrecv_connections"] != 1.0 {
		t.Errorf("notify %v", m)
	}

	c.send(`{"type":"disconnect","reason":"NO-ERROR"}`)
	c.wantClose(1000, "")
	testutil.Eventually(t, fc.isClosed, 5*time.Second, "media closed")
	testutil.Eventually(t, func() bool { return len(ts.Connections("")) == 0 }, 5*time.Second, "connection forgotten")
}

func TestBadInput(t *testing.T) {
	testutil.CheckLeaks(t)
	ts := newTestServer(t, Config{MaxMessageSize: 4096})
	// A good client, connected throughout: bad clients do not disturb it.
	good := offered(t, ts.url, "room")
	good.send(`{"type":"answer","sdp":"v=0\r\n"}`)

	long := strings.Repeat("x", 256)
	for _, tc := range []struct {
		name string
		msgs []string
		code int
	}{
		{"not JSON", []string{`hello`}, wire.CloseInvalidMessage},
		{"not an object", []string{`[1,2]`}, wire.CloseInvalidMessage},
		{"no type", []string{`{"channel_id":"x"}`}, wire.CloseInvalidMessage},
		{"unknown type", []string{`{"type":"hello"}`}, wire.CloseInvalidMessage},
		{"missing channel_id", []string{`{"type":"connect","role":"sendrecv"}`}, wire.CloseInvalidChannelID},
		{"channel_id too long", []string{connectMsg(long, "")}, wire.CloseInvalidChannelID},
		{"channel_id wrong type", []string{`{"type":"connect","role":"sendrecv","channel_id":5}`}, wire.CloseInvalidMessage},
		{"unknown role", []string{`{"type":"connect","role":"admin","channel_id":"x"}`}, wire.CloseInvalidRole},
		{"too large", []string{`{"type":"connect","sdp":"` + strings.Repeat("a", 5000) + `"}`}, wire.CloseMessageTooLarge},
		{"answer before offer", []string{`{"type":"answer","sdp":"v=0"}`}, wire.CloseUnexpected},
		{"second connect", []string{connectMsg("r2", ""), connectMsg("r2", "")}, wire.CloseUnexpected},
		{"re-answer without re-offer", []string{connectMsg("r3", ""), `{"type":"answer","sdp":"v=0"}`, `{"type":"re-answer","sdp":"v=0"}`}, wire.CloseUnexpected},
		{"answer twice", []string{connectMsg("r4", ""), `{"type":"answer","sdp":"v=0"}`, `{"type":"answer","sdp":"v=0"}`}, wire.CloseUnexpected},
		{"answer without sdp", []string{connectMsg("r5", ""), `{"type":"answer"}`}, wire.CloseInvalidMessage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, ts.url)
			for _, m := range tc.msgs {
				c.send(m)
			}
			if code, reason := c.closed(); code != tc.code {
				t.Errorf("close %d %q, want %d", code, reason, tc.code)
			}
		})
	}
	t.Run("binary frame", func(t *testing.T) {
		c := dial(t, ts.url)
		ctx := testutil.Context(t, 5*time.Second)
		if err := c.ws.Write(ctx, 2, []byte(`{"type":"connect"}`)); err != nil {
			t.Fatal(err)
		}
		c.wantClose(wire.CloseInvalidMessage, "")
	})
	t.Run("open and close without a message", func(t *testing.T) {
		for range 5 {
			c := dial(t, ts.url)
			c.ws.CloseNow()
		}
	})
	// The good client still works.
	ts.media.conn(0).req.Events.ReOffer("v=0\r\nstill here\r\n")
	good.expect(wire.TypeReOffer)
	good.send(`{"type":"re-answer","sdp":"v=0\r\n"}`)
	testutil.Eventually(t, func() bool { a, _ := ts.media.conn(0).counts(); return a == 2 }, 5*time.Second, "good client's re-answer")
}

func TestCandidateFlood(t *testing.T) {
	testutil.CheckLeaks(t)
	ts := newTestServer(t, Config{MaxCandidates: 10})
	c := offered(t, ts.url, "room")
	for range 11 {
		c.send(`{"type":"candidate","candidate":"candidate:1 1 udp 1 127.0.0.1 5000 typ host"}`)
	}
	c.wantClose(wire.CloseTooManyCandidates, "")
	testutil.Eventually(t, ts.media.conn(0).isClosed, 5*time.Second, "media closed")
}

func TestTimeouts(t *testing.T) {
	testutil.CheckLeaks(t)
	ts := newTestServer(t, Config{AnswerTimeout: 200 * time.Millisecond, ConnectTimeout: 200 * time.Millisecond,
		PingInterval: 50 * time.Millisecond, PongTimeout: 200 * time.Millisecond})
	t.Run("no connect", func(t *testing.T) {
		c := dial(t, ts.url)
		c.wantClose(wire.CloseConnectTimeout, "")
	})
	t.Run("no answer", func(t *testing.T) {
		connectWantClose(t, ts.url, "a", wire.CloseAnswerTimeout, "")
	})
	t.Run("no re-answer", func(t *testing.T) {
		c := offered(t, ts.url, "b")
		c.send(`{"type":"answer","sdp":"v=0"}`)
		n := ts.media.count()
		testutil.Eventually(t, func() bool { a, _ := ts.media.conn(n - 1).counts(); return a == 1 }, 5*time.Second, "answered")
		ts.media.conn(n - 1).req.Events.ReOffer("v=0\r\n")
		// Pongs keep the connection, but the re-answer never comes.
		for {
			m, err := c.next()
			if err != nil {
				var ce websocket.CloseError
				if !errors.As(err, &ce) || ce.Code != wire.CloseAnswerTimeout {
					t.Errorf("got %v, want close %d", err, wire.CloseAnswerTimeout)
				}
				break
			}
			if m["type"] == wire.TypePing {
				c.send(`{"type":"pong"}`)
			}
		}
	})
	t.Run("no pong", func(t *testing.T) {
		c := offered(t, ts.url, "c")
		c.send(`{"type":"answer","sdp":"v=0"}`)
		n := ts.media.count()
		c.wantClose(wire.ClosePingTimeout, "")
		testutil.Eventually(t, ts.media.conn(n-1).isClosed, 5*time.Second, "media of the dead client freed")
	})
	t.Run("pongs keep it", func(t *testing.T) {
		c := offered(t, ts.url, "d")
		c.send(`{"type":"answer","sdp":"v=0"}`)
		pings := 0
		for pings < 10 {
			c.expect(wire.TypePing)
			pings++
			c.send(`{"type":"pong"}`)
		}
	})
}

func TestAuth(t *testing.T) {
	testutil.CheckLeaks(t)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/deny":
			w.Write([]byte(`{"allowed":false,"reason":"NO-TICKET"}`))
		case "/slow":
			select {
			case <-r.Context().Done():
			case <-time.After(500 * time.Millisecond):
			}
		case "/500":
			w.WriteHeader(500)
		case "/bad":
			w.Write([]byte(`{"allowed":"yes"}`))
		default:
			w.Write([]byte(`{"allowed":true}`))
		}
	}))
	defer hook.Close()
	for _, tc := range []struct {
		path, reason string
	}{
		{"/deny", "NO-TICKET"},
		{"/slow", "AUTH-WEBHOOK-TIMEOUT"},
		{"/500", "AUTH-WEBHOOK-STATUS"},
		{"/bad", "AUTH-WEBHOOK-BAD-RESPONSE"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			ts := newTestServer(t, Config{Authenticator: &Webhook{URL: hook.URL + tc.path, Timeout: 200 * time.Millisecond}})
			connectWantClose(t, ts.url, "room", wire.CloseAuthDenied, tc.reason)
			if ts.media.count() != 0 {
				t.Error("a denied client got a media connection")
			}
		})
	}
	t.Run("func error", func(t *testing.T) {
		ts := newTestServer(t, Config{Authenticator: AuthFunc(func(context.Context, *AuthRequest) (AuthResult, error) {
			return AuthResult{}, errors.New("database down")
		})})
		connectWantClose(t, ts.url, "room", wire.CloseAuthDenied, "AUTH-ERROR")
	})
}

func TestMediaRefusals(t *testing.T) {
	testutil.CheckLeaks(t)
	ts := newTestServer(t, Config{})
	ts.media.full = true
	connectWantClose(t, ts.url, "room", wire.CloseRefused, "NODE-FULL")
	ts.media.full, ts.media.err = false, errors.New("boom")
	connectWantClose(t, ts.url, "room", wire.CloseInternalError, "MEDIA-ERROR")
}

func TestServerCloseAndDisconnect(t *testing.T) {
	testutil.CheckLeaks(t)
	ts := newTestServer(t, Config{})
	a, b := dial(t, ts.url), dial(t, ts.url)
	a.send(connectMsg("one", ""))
	b.send(connectMsg("two", ""))
	a.expect(wire.TypeOffer)
	b.expect(wire.TypeOffer)
	if n, err := ts.DisconnectChannel("one", "API"); n != 1 || err != nil {
		t.Errorf("DisconnectChannel: %d, %v", n, err)
	}
	a.wantClose(1000, "API")
	closed := make(chan struct{})
	go func() { ts.Close(); close(closed) }()
	b.wantClose(wire.CloseServerShutdown, "")
	<-closed
	if err := ts.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := ts.DisconnectAll(1000, ""); !errors.Is(err, ErrClosed) {
		t.Errorf("DisconnectAll after Close: %v", err)
	}
	rec := httptest.NewRecorder()
	ts.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("ServeHTTP after Close: %d", rec.Code)
	}
}

func TestTruncateReason(t *testing.T) {
	long := strings.Repeat("é", 100) // 200 bytes
	got := truncateReason(long)
	if len(got) > wire.MaxCloseReason || !strings.HasPrefix(long, got) || len(got) < wire.MaxCloseReason-1 {
		t.Errorf("truncateReason: %d bytes", len(got))
	}
}

// TestPushAndDisconnectOne: the Server's push and per-connection methods on
// one node's sessions.
func TestPushAndDisconnectOne(t *testing.T) {
	testutil.CheckLeaks(t)
	ts := newTestServer(t, Config{})
	join := func(extra string) (*wsClient, string) {
		c := dial(t, ts.url)
		c.send(connectMsg("room", extra))
		id, _ := c.expect(wire.TypeOffer)["connection_id"].(string)
		c.send(`{"type":"answer","sdp":"v=0"}`)
		return c, id
	}
	c1, id1 := join(`,"client_id":"alice","audio":{"codec_type":"OPUS"},"video":false`)
	c2, id2 := join(``)
	other := offered(t, ts.url, "elsewhere")

	for _, bad := range []string{``, `null`, `"x"`, `[1]`, `{"a":`, `{} {}`} {
		if _, err := ts.PushChannel("room", json.RawMessage(bad)); !errors.Is(err, ErrPushData) {
			t.Errorf("PushChannel data %q: %v, want ErrPushData", bad, err)
		}
	}
	if n, err := ts.PushChannel("room", json.RawMessage(` {"all": true} `)); n != 2 || err != nil {
		t.Errorf("PushChannel: %d %v", n, err)
	}
	if n, err := ts.PushConnection("room", id2, json.RawMessage(`{"to":2}`)); n != 1 || err != nil {
		t.Errorf("PushConnection: %d %v", n, err)
	}
	if n, err := ts.PushConnection("elsewhere", id2, json.RawMessage(`{}`)); n != 0 || err != nil {
		t.Errorf("PushConnection in another channel: %d %v", n, err)
	}
	// A connection without client_id has its connection_id as client_id.
	if n, err := ts.PushClient("room", id2, json.RawMessage(`{"to":"client2"}`)); n != 1 || err != nil {
		t.Errorf("PushClient by connection_id: %d %v", n, err)
	}
	for _, tc := range []struct {
		c    *wsClient
		want []string
	}{{c1, []string{`{"all":true}`}}, {c2, []string{`{"all":true}`, `{"to":2}`, `{"to":"client2"}`}}} {
		for _, w := range tc.want {
			m := tc.c.expect(wire.TypePush)
			if b, _ := json.Marshal(m["data"]); string(b) != w || len(m) != 2 {
				t.Errorf("push %v, want data %s", m, w)
			}
		}
	}

	// The listing: the effective client_id, connect's audio and video.
	for _, info := range ts.Connections("room") {
		switch info.ConnectionID {
		case id1:
			if info.ClientID != "alice" || info.Audio == nil || info.Audio.CodecType != "OPUS" || info.Video != nil {
				t.Errorf("c1: %+v", info)
			}
		case id2:
			if info.ClientID != id2 || info.Audio == nil || *info.Audio != (ConnectionMedia{}) || info.Video == nil {
				t.Errorf("c2: %+v", info)
			}
		}
		if info.CreatedTime.IsZero() || info.CreatedTime.Nanosecond()%1000 != 0 {
			t.Errorf("created_time %v, want microseconds", info.CreatedTime)
		}
	}

	if n, err := ts.DisconnectClient("room", "alice", "BYE-ALICE"); n != 1 || err != nil {
		t.Errorf("DisconnectClient: %d %v", n, err)
	}
	c1.wantClose(1000, "BYE-ALICE")
	if n, err := ts.DisconnectConnection("room", id1, "AGAIN"); n != 0 || err != nil {
		t.Errorf("DisconnectConnection of a closed one: %d %v", n, err)
	}
	if n, err := ts.DisconnectConnection("room", id2, "BYE-2"); n != 1 || err != nil {
		t.Errorf("DisconnectConnection: %d %v", n, err)
	}
	c2.wantClose(1000, "BYE-2")
	testutil.Eventually(t, func() bool { return len(ts.Connections("")) == 1 }, 5*time.Second, "only the other channel's left")
	other.send(`{"type":"disconnect"}`)
	other.closed()
	ts.Close()
	if _, err := ts.PushChannel("elsewhere", json.RawMessage(`{}`)); !errors.Is(err, ErrClosed) {
		t.Errorf("PushChannel on a closed server: %v", err)
	}
}

func TestConnectionInfoJSON(t *testing.T) {
	created := time.UnixMicro(1644316214314590).UTC()
	info := ConnectionInfo{ChannelID: "sora", ConnectionID: "C", ClientID: "alice", Role: wire.RoleSendrecv, NodeName: "a@10.0.0.1",
		CreatedTime: created, Audio: &ConnectionMedia{CodecType: "OPUS"}, Video: &ConnectionMedia{CodecType: "VP9", BitRate: 1000}}
	b, err := json.Marshal(info)
	want := `{"channel_id":"sora","client_id":"alice","connection_id":"C","role":"sendrecv","multistream":true,"simulcast":false,"spotlight":false,` +
		`"created_time":1644316214314590,"audio":{"codec_type":"OPUS"},"video":{"codec_type":"VP9","bit_rate":1000},"node_name":"a@10.0.0.1"}`
	if err != nil || string(b) != want {
		t.Fatalf("Marshal: %s %v\nwant %s", b, err, want)
	}
	var back ConnectionInfo
	if err := json.Unmarshal(b, &back); err != nil || !back.CreatedTime.Equal(created) || *back.Audio != *info.Audio || *back.Video != *info.Video ||
		back.ClientID != "alice" || back.NodeName != info.NodeName || back.Role != wire.RoleSendrecv || back.Simulcast {
		t.Errorf("round trip: %+v %v", back, err)
	}
	info.Simulcast = true
	b, _ = json.Marshal(info)
	if err := json.Unmarshal(b, &back); err != nil || !strings.Contains(string(b), `"simulcast":true`) || !back.Simulcast {
		t.Errorf("simulcast: %s, back %v %v", b, back.Simulcast, err)
	}
	for _, tc := range []struct {
		in     string
		want   time.Time
		audio  *ConnectionMedia
		hasErr bool
	}{
		{`{"created_time":"2026-01-01T00:00:00Z","audio":true}`, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), &ConnectionMedia{}, false}, // an older node's answer
		{`{"created_time":1.64431621431459e+15,"audio":false}`, time.UnixMicro(1644316214314590), nil, false},
		{`{"created_time":0}`, time.Time{}, nil, false},
		{`{}`, time.Time{}, nil, false},
		{`{"created_time":"yesterday"}`, time.Time{}, nil, true},
		{`{"created_time":1e300}`, time.Time{}, nil, true},
		{`{"audio":"OPUS"}`, time.Time{}, nil, true},
	} {
		var ci ConnectionInfo
		err := json.Unmarshal([]byte(tc.in), &ci)
		if (err != nil) != tc.hasErr || (err == nil && (!ci.CreatedTime.Equal(tc.want) || (ci.Audio == nil) != (tc.audio == nil))) {
			t.Errorf("%s: %+v %v", tc.in, ci, err)
		}
	}
}
