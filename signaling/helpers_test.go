package signaling

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/signaling/wire"
)

// fakeMedia is a Media whose connections record what the server gives
// them; tests drive their events.
type fakeMedia struct {
	mu    sync.Mutex
	dcs   []wire.OfferDataChannel // offer.data_channels; nil means signaling and notify
	full  bool
	err   error
	conns []*fakeConn
	joins int
}

func (m *fakeMedia) Join(ctx context.Context, req MediaRequest) (MediaConn, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.joins++
	if m.full {
		return nil, ErrMediaFull
	}
	if m.err != nil {
		return nil, m.err
	}
	c := &fakeConn{req: req, dcs: m.dcs, done: make(chan struct{})}
	m.conns = append(m.conns, c)
	// Like the SFU: the joining connection hears of itself.
	if req.Events.Event != nil {
		req.Events.Event(ConnectionEvent{Type: wire.EventConnectionCreated, ConnectionID: req.ConnectionID, ClientID: req.ClientID,
			Role: req.Role, Counts: ChannelCounts{Connections: 1, SendRecv: 1}})
	}
	return c, nil
}

func (m *fakeMedia) setDCs(dcs []wire.OfferDataChannel) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.dcs = dcs
}

func (m *fakeMedia) conn(i int) *fakeConn {
	m.mu.Lock()
	defer m.mu.Unlock()
	if i >= len(m.conns) {
		return nil
	}
	return m.conns[i]
}

func (m *fakeMedia) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.conns)
}

type fakeConn struct {
	req       MediaRequest
	dcs       []wire.OfferDataChannel
	mu        sync.Mutex
	answers   []string
	cands     []wire.Candidate
	sent      []string
	closed    bool
	dcsClosed bool // CloseDataChannels was called while open
	done      chan struct{}
	answerErr error
}

func (c *fakeConn) Offer() MediaOffer {
	dcs := c.dcs
	if dcs == nil {
		dcs = []wire.OfferDataChannel{{Label: "signaling", Direction: "sendrecv"}, {Label: "notify", Direction: "sendrecv"}}
	}
	return MediaOffer{SDP: "v=0\r\nfake-offer\r\n", AudioMid: "0", VideoMid: "1", DataChannels: dcs}
}

func (c *fakeConn) SetAnswer(sdp string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.answerErr != nil {
		return c.answerErr
	}
	c.answers = append(c.answers, sdp)
	return nil
}

func (c *fakeConn) AddCandidate(cand wire.Candidate) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cands = append(c.cands, cand)
	return nil
}

func (c *fakeConn) SendText(label, text string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sent = append(c.sent, label+":"+text)
	return nil
}

// sentOn returns the messages sent on the data channel label, in order.
func (c *fakeConn) sentOn(label string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, s := range c.sent {
		if text, ok := strings.CutPrefix(s, label+":"); ok {
			out = append(out, text)
		}
	}
	return out
}

func (c *fakeConn) Done() <-chan struct{} { return c.done }

func (c *fakeConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.closed = true
		close(c.done)
	}
	return nil
}

func (c *fakeConn) CloseDataChannels(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.dcsClosed = true
	}
	return nil
}

func (c *fakeConn) closedDCs() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dcsClosed
}

func (c *fakeConn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

func (c *fakeConn) counts() (answers, cands int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.answers), len(c.cands)
}

// testServer runs a Server behind httptest.
type testServer struct {
	*Server
	media *fakeMedia
	url   string
}

func newTestServer(t testing.TB, cfg Config) *testServer {
	t.Helper()
	fm, _ := cfg.Media.(*fakeMedia)
	if cfg.Media == nil {
		fm = &fakeMedia{}
		cfg.Media = fm
	}
	if cfg.Authenticator == nil {
		cfg.Authenticator = AllowAll
	}
	if cfg.Logger == nil {
		cfg.Logger = testutil.Logger(t)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s)
	t.Cleanup(func() {
		s.Close()
		hs.Close()
	})
	return &testServer{Server: s, media: fm, url: "ws" + strings.TrimPrefix(hs.URL, "http")}
}

// wsClient is a raw protocol client.
type wsClient struct {
	t  testing.TB
	ws *websocket.Conn
}

func dial(t testing.TB, url string) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	ws.SetReadLimit(-1)
	t.Cleanup(func() { ws.CloseNow() })
	return &wsClient{t: t, ws: ws}
}

func (c *wsClient) send(s string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageText, []byte(s)); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// next reads one message as a map; a close is returned as an error.
func (c *wsClient) next() (map[string]any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, b, err := c.ws.Read(ctx)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		c.t.Fatalf("server sent non-JSON %q", b)
	}
	return m, nil
}

// expect reads messages until one of type typ, skipping pings and notifies
// of other types.
func (c *wsClient) expect(typ string) map[string]any {
	c.t.Helper()
	for {
		m, err := c.next()
		if err != nil {
			c.t.Fatalf("waiting for %s: %v", typ, err)
		}
		if m["type"] == typ {
			return m
		}
		if m["type"] != wire.TypePing && m["type"] != wire.TypeNotify {
			c.t.Fatalf("waiting for %s, got %v", typ, m)
		}
	}
}

// closed reads until the server closes and returns the close code and reason.
func (c *wsClient) closed() (int, string) {
	c.t.Helper()
	for {
		_, err := c.next()
		if err == nil {
			continue
		}
		var ce websocket.CloseError
		if errors.As(err, &ce) {
			return int(ce.Code), ce.Reason
		}
		c.t.Logf("not a close: %v", err)
		return -1, err.Error()
	}
}

func connectMsg(channel string, extra string) string {
	return `{"type":"connect","role":"sendrecv","channel_id":"` + channel + `","sdp":"v=0\r\n","audio":true,"video":true,"metadata":null` + extra + `}`
}

// wantClose reads until the server closes and checks the close code and,
// unless reason is "", the reason.
func (c *wsClient) wantClose(code int, reason string) {
	c.t.Helper()
	gotCode, gotReason := c.closed()
	if gotCode != code || (reason != "" && gotReason != reason) {
		c.t.Errorf("close %d %q, want %d %q", gotCode, gotReason, code, reason)
	}
}

// offered connects to channel at url and reads until the offer.
func offered(t testing.TB, url, channel string) *wsClient {
	t.Helper()
	c := dial(t, url)
	c.send(connectMsg(channel, ""))
	c.expect(wire.TypeOffer)
	return c
}

// connectWantClose connects to channel at url, reads until the server
// closes, and checks the close as wantClose does.
func connectWantClose(t testing.TB, url, channel string, code int, reason string) {
	t.Helper()
	c := dial(t, url)
	c.send(connectMsg(channel, ""))
	c.wantClose(code, reason)
}
