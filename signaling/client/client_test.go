package client

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/webrtc/v4"

	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/signaling/wire"
)

// scripted is a fake signaling server: it reads connect and lets fn answer.
type scripted struct {
	mu       sync.Mutex
	connects []map[string]any
	opened   atomic.Int32
	silent   atomic.Int32 // sockets closed without a message
}

func (s *scripted) server(t *testing.T, delay time.Duration, fn func(ws *websocket.Conn, connect map[string]any)) string {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(delay)
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer ws.CloseNow()
		s.opened.Add(1)
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		_, b, err := ws.Read(ctx)
		if err != nil {
			s.silent.Add(1)
			return
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Errorf("connect is not JSON: %s", b)
			return
		}
		s.mu.Lock()
		s.connects = append(s.connects, m)
		s.mu.Unlock()
		fn(ws, m)
	}))
	t.Cleanup(hs.Close)
	return "ws" + strings.TrimPrefix(hs.URL, "http")
}

func refuse(ws *websocket.Conn, _ map[string]any) {
	ws.Close(wire.CloseAuthDenied, "AUTH-DENIED")
}

// hangingURL is a TCP listener that accepts and never answers.
func hangingURL(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return "ws://" + ln.Addr().String() + "/signaling"
}

func closedURL(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "ws://" + addr + "/signaling"
}

func TestFirstOpenWinsAndRefusal(t *testing.T) {
	testutil.CheckLeaks(t)
	var fast, slow scripted
	urls := []string{
		closedURL(t),
		hangingURL(t),
		slow.server(t, 300*time.Millisecond, refuse),
		fast.server(t, 0, refuse),
	}
	start := time.Now()
	_, err := Connect(testutil.Context(t, 10*time.Second), Config{URLs: urls, ChannelID: "room", Role: wire.RoleSendrecv,
		CandidateTimeout: time.Second, Logger: testutil.Logger(t)})
	var ce *CloseError
	if !errors.As(err, &ce) || ce.Code != wire.CloseAuthDenied || ce.Reason != "AUTH-DENIED" {
		t.Fatalf("got %v, want a *CloseError 4401 AUTH-DENIED", err)
	}
	// The winner does not wait for the hanging URL's timeout.
	if d := time.Since(start); d > 900*time.Millisecond {
		t.Errorf("took %v", d)
	}
	fast.mu.Lock()
	if len(fast.connects) != 1 {
		t.Errorf("the fast server got %d connects, want 1", len(fast.connects))
	} else if c := fast.connects[0]; c["channel_id"] != "room" || c["role"] != "sendrecv" || c["type"] != "connect" ||
		!strings.HasPrefix(c["sdp"].(string), "v=0") || c["redirect"] != nil {
		t.Errorf("connect %v", c)
	}
	fast.mu.Unlock()
	// The loser's dial is abandoned or, if it opened, closed without a
	// message.
	// (A dial abandoned early never reaches the handler.)
	time.Sleep(600 * time.Millisecond)
	testutil.Eventually(t, func() bool { return slow.silent.Load() == slow.opened.Load() }, 5*time.Second,
		"every opened loser closed without a message")
	slow.mu.Lock()
	if slow.connects != nil {
		t.Error("the loser got a connect")
	}
	slow.mu.Unlock()
}

func TestAllURLsFail(t *testing.T) {
	testutil.CheckLeaks(t)
	start := time.Now()
	_, err := Connect(testutil.Context(t, 10*time.Second), Config{URLs: []string{closedURL(t), hangingURL(t)},
		ChannelID: "room", Role: wire.RoleRecvonly, CandidateTimeout: 300 * time.Millisecond, Logger: testutil.Logger(t)})
	if !errors.Is(err, ErrAllURLsFailed) {
		t.Fatalf("got %v, want ErrAllURLsFailed", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 3*time.Second {
		t.Errorf("gave up after %v, want about the 300ms candidate timeout", d)
	}
	if _, err := Connect(context.Background(), Config{}); err == nil {
		t.Error("Connect without URLs")
	}
}

func TestRedirectHopLimit(t *testing.T) {
	testutil.CheckLeaks(t)
	var loop scripted
	var self string
	self = loop.server(t, 0, func(ws *websocket.Conn, _ map[string]any) {
		ws.Write(context.Background(), websocket.MessageText, []byte(`{"type":"redirect","location":"`+self+`"}`))
		ws.Read(context.Background()) // until the client closes
	})
	_, err := Connect(testutil.Context(t, 10*time.Second), Config{URLs: []string{self}, ChannelID: "room",
		Role: wire.RoleSendrecv, MaxRedirects: 3, Logger: testutil.Logger(t)})
	if !errors.Is(err, ErrTooManyRedirects) {
		t.Fatalf("got %v, want ErrTooManyRedirects", err)
	}
	loop.mu.Lock()
	defer loop.mu.Unlock()
	if len(loop.connects) != 4 {
		t.Errorf("%d connects, want 4 (the first and 3 redirected)", len(loop.connects))
	}
	for i, c := range loop.connects {
		if (i > 0) != (c["redirect"] == true) {
			t.Errorf("connect %d: redirect=%v", i, c["redirect"])
		}
	}
}

// TestPushAndNotify: the reader hands push messages to OnPush and notifies
// to OnNotify, in the order they came, and ignores types it does not know.
func TestPushAndNotify(t *testing.T) {
	testutil.CheckLeaks(t)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer ws.CloseNow()
		ctx := r.Context()
		for _, m := range []string{
			`{"type":"push","data":{"text":"one","n":[1,2]}}`,
			`{"type":"notify","event_type":"connection.created","connection_id":"X"}`,
			`{"type":"something-new","data":{}}`,
			`{"type":"push","data":{}}`,
		} {
			if err := ws.Write(ctx, websocket.MessageText, []byte(m)); err != nil {
				return
			}
		}
		ws.Close(websocket.StatusNormalClosure, "BYE")
	}))
	defer hs.Close()
	ctx := testutil.Context(t, 10*time.Second)
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(hs.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := webrtc.NewAPI().NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string // only the reader goroutine appends, before done
	c := &Conn{PC: pc, ws: ws, logger: testutil.Logger(t), done: make(chan struct{}), cfg: Config{
		OnPush:   func(p Push) { got = append(got, "push "+string(p.Data)+" "+string(p.Raw)) },
		OnNotify: func(n Notify) { got = append(got, "notify "+n.EventType) },
	}}
	go c.readLoop()
	select {
	case <-c.Done():
	case <-ctx.Done():
		t.Fatal("the reader did not end")
	}
	want := []string{
		`push {"text":"one","n":[1,2]} {"type":"push","data":{"text":"one","n":[1,2]}}`,
		"notify connection.created",
		`push {} {"type":"push","data":{}}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	var ce *CloseError
	if err := c.Err(); !errors.As(err, &ce) || ce.Code != 1000 || ce.Reason != "BYE" {
		t.Errorf("Err %v, want the server's close", err)
	}
}
