package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"

	"github.com/shoal-sfu/shoal/internal/slogpion"
	"github.com/shoal-sfu/shoal/signaling/wire"
)

// Defaults.
const (
	// DefaultCandidateTimeout is the time one signaling URL has to open,
	// as the SDK's signalingCandidateTimeout.
	DefaultCandidateTimeout = 3 * time.Second
	// DefaultMaxRedirects bounds the redirects followed by one Connect.
	DefaultMaxRedirects = 4
	// disconnectWait is how long Close waits for the server to close.
	disconnectWait = 3 * time.Second
)

// Errors.
var (
	// ErrAllURLsFailed: no signaling URL opened.
	ErrAllURLsFailed = errors.New("client: all signaling URL candidates failed to connect")
	// ErrTooManyRedirects: the cluster kept redirecting beyond MaxRedirects.
	ErrTooManyRedirects = errors.New("client: too many redirects")
)

// CloseError is the server closing the signaling socket: a refusal before
// the offer (e.g. 4401 AUTH-DENIED, 4503 NOT-IN-MAJORITY), or the end of
// the session later.
type CloseError struct {
	Code   int
	Reason string
}

func (e *CloseError) Error() string {
	return fmt.Sprintf("client: signaling closed: code %d reason %q", e.Code, e.Reason)
}

// Notify is a notify message, as received.
type Notify struct {
	EventType    string `json:"event_type"`
	ConnectionID string `json:"connection_id"`
	// Raw is the whole message.
	Raw json.RawMessage `json:"-"`
}

// Push is a push message ({"type":"push","data":{...}}), as received on
// the signaling WebSocket.
type Push struct {
	// Data is the message's data, as sent (a JSON object from Shoal's admin
	// API).
	Data json.RawMessage `json:"data"`
	// Raw is the whole message.
	Raw json.RawMessage `json:"-"`
}

// Config configures Connect.
type Config struct {
	// URLs are the signaling URLs, opened all at once.
	URLs []string
	// ChannelID, Role, ClientID and Metadata go into connect.
	ChannelID string
	Role      wire.Role
	ClientID  string
	Metadata  json.RawMessage
	// Audio and Video are connect's audio and video; nil means true.
	Audio, Video *bool
	// DataChannels are connect's data_channels.
	DataChannels []wire.DataChannelSpec
	// SimulcastRequestRid is connect's simulcast_request_rid: the layer to
	// receive of simulcast publishers ("none", "r0", "r1", "r2", or "auto":
	// the server's congestion control picks); "" leaves it out (r0).
	SimulcastRequestRid string
	// Tracks are attached with AddTrack after the offer is applied, like
	// the SDK: the first audio and video tracks land on the upstream
	// m-lines.
	Tracks []webrtc.TrackLocal
	// API builds the peer connections; nil means webrtc.NewAPI().
	API *webrtc.API
	// CandidateTimeout is each URL's time to open; 0 means
	// DefaultCandidateTimeout.
	CandidateTimeout time.Duration
	// MaxRedirects bounds the redirects followed; 0 means
	// DefaultMaxRedirects, negative means none.
	MaxRedirects int
	// OnNotify receives notify messages, from the client's reader
	// goroutine, in order; it must not block for long.
	OnNotify func(Notify)
	// OnPush receives push messages that come on the WebSocket (all of
	// Shoal's do), from the client's reader goroutine, in order with the
	// notifies; it must not block for long. A server that sends push on
	// the "push" data channel instead (a Sora server may, with
	// data_channel_signaling) is read with OnDataChannel.
	OnPush func(Push)
	// OnTrack and OnDataChannel are called by the peer connection (pion's
	// goroutines); DataChannel also finds the channels later.
	OnTrack       func(*webrtc.TrackRemote, *webrtc.RTPReceiver)
	OnDataChannel func(*webrtc.DataChannel)
	// Logger receives the client's logs; nil means slog.Default().
	Logger *slog.Logger
	// Dial, when set, replaces websocket.Dial options (e.g. an HTTP client).
	DialOptions *websocket.DialOptions
}

// Conn is an established connection.
type Conn struct {
	// PC is the connected peer connection.
	PC *webrtc.PeerConnection
	// ConnectionID is the offer's connection_id.
	ConnectionID string
	// URL is the signaling URL that delivered the offer.
	URL string
	// Redirects is the number of redirects followed.
	Redirects int
	// Offer is the offer message as received.
	Offer json.RawMessage

	ws     *websocket.Conn
	cfg    Config
	logger *slog.Logger
	done   chan struct{}

	mu        sync.Mutex
	err       error
	dcs       map[string]*webrtc.DataChannel
	answered  bool
	pending   []webrtc.ICECandidateInit
	closeOnce sync.Once
}

// reply is the server's answer to connect: an offer (with the message as
// received) or a redirect.
type reply struct {
	offer    *wire.Offer
	raw      json.RawMessage
	redirect *wire.Redirect
}

// messageType returns a server message's type.
func messageType(data []byte) (string, error) {
	var head struct {
		Type string `json:"type"`
	}
	err := json.Unmarshal(data, &head)
	return head.Type, err
}

// decodeAs decodes a server message as its wire type T.
func decodeAs[T any](data []byte) (*T, error) {
	m := new(T)
	if err := json.Unmarshal(data, m); err != nil {
		return nil, err
	}
	return m, nil
}

// write sends one client message.
func write(ctx context.Context, ws *websocket.Conn, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return ws.Write(ctx, websocket.MessageText, b)
}

// Connect opens signaling, follows redirects and returns once the peer
// connection is connected. A refusal is a *CloseError.
func Connect(ctx context.Context, cfg Config) (*Conn, error) {
	if len(cfg.URLs) == 0 {
		return nil, errors.New("client: Config.URLs is empty")
	}
	if cfg.CandidateTimeout <= 0 {
		cfg.CandidateTimeout = DefaultCandidateTimeout
	}
	if cfg.MaxRedirects == 0 {
		cfg.MaxRedirects = DefaultMaxRedirects
	}
	if cfg.API == nil {
		cfg.API = webrtc.NewAPI()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ws, url, err := openFirst(ctx, cfg.URLs, cfg.CandidateTimeout, cfg.DialOptions)
	if err != nil {
		return nil, err
	}
	redirects := 0
	for {
		r, err := exchangeConnect(ctx, ws, &cfg, redirects > 0)
		if err != nil {
			ws.CloseNow()
			return nil, err
		}
		if r.redirect != nil {
			// Like the SDK: close without a disconnect, open location.
			ws.CloseNow()
			redirects++
			if cfg.MaxRedirects < 0 || redirects > cfg.MaxRedirects {
				return nil, fmt.Errorf("%w (%d, last to %s)", ErrTooManyRedirects, redirects, r.redirect.Location)
			}
			url = r.redirect.Location
			if ws, url, err = openFirst(ctx, []string{url}, cfg.CandidateTimeout, cfg.DialOptions); err != nil {
				return nil, fmt.Errorf("client: redirect to %s: %w", r.redirect.Location, err)
			}
			continue
		}
		offer := r.offer
		c := &Conn{ConnectionID: offer.ConnectionID, URL: url, Redirects: redirects, Offer: r.raw,
			ws: ws, cfg: cfg, logger: cfg.Logger.With("connection", offer.ConnectionID), done: make(chan struct{})}
		if err := c.start(ctx, offer); err != nil {
			ws.CloseNow()
			if c.PC != nil {
				_ = c.PC.Close()
			}
			return nil, err
		}
		return c, nil
	}
}

// openFirst dials every URL at once and keeps the first that opens.
func openFirst(ctx context.Context, urls []string, timeout time.Duration, opts *websocket.DialOptions) (*websocket.Conn, string, error) {
	type result struct {
		ws  *websocket.Conn
		url string
		err error
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan result, len(urls))
	for _, u := range urls {
		go func() {
			dctx, dcancel := context.WithTimeout(ctx, timeout)
			defer dcancel()
			ws, _, err := websocket.Dial(dctx, u, opts)
			results <- result{ws, u, err}
		}()
	}
	var errs []error
	var winner *result
	for range urls {
		r := <-results
		switch {
		case r.err != nil:
			errs = append(errs, fmt.Errorf("%s: %w", r.url, r.err))
		case winner == nil:
			winner = &r
			cancel() // the others stop dialing
		default:
			r.ws.CloseNow() // a loser that opened late
		}
	}
	if winner == nil {
		return nil, "", fmt.Errorf("%w: %w", ErrAllURLsFailed, errors.Join(errs...))
	}
	return winner.ws, winner.url, nil
}

// throwawayOffer builds the capabilities-only SDP that connect carries.
func throwawayOffer(api *webrtc.API) (string, error) {
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return "", err
	}
	defer pc.Close()
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			return "", err
		}
	}
	o, err := pc.CreateOffer(nil)
	if err != nil {
		return "", err
	}
	return o.SDP, nil
}

func boolOr(p *bool, d bool) bool {
	if p == nil {
		return d
	}
	return *p
}

// exchangeConnect sends connect and reads until offer or redirect.
func exchangeConnect(ctx context.Context, ws *websocket.Conn, cfg *Config, redirected bool) (reply, error) {
	sdp, err := throwawayOffer(cfg.API)
	if err != nil {
		return reply{}, fmt.Errorf("client: capabilities offer: %w", err)
	}
	meta := cfg.Metadata
	if meta == nil {
		meta = json.RawMessage("null")
	}
	connect := wire.Connect{Type: wire.TypeConnect, Role: cfg.Role, ChannelID: cfg.ChannelID, ClientID: cfg.ClientID, SDP: sdp,
		Metadata: meta, Audio: wire.MediaOptions{Enabled: boolOr(cfg.Audio, true)}, Video: wire.MediaOptions{Enabled: boolOr(cfg.Video, true)},
		Redirect: redirected, SoraClient: "Shoal Go client", Environment: "Go", DataChannels: cfg.DataChannels,
		SimulcastRequestRid: cfg.SimulcastRequestRid}
	if err := write(ctx, ws, connect); err != nil {
		return reply{}, closeErr(fmt.Errorf("client: send connect: %w", err))
	}
	for {
		_, data, err := ws.Read(ctx)
		if err != nil {
			return reply{}, closeErr(err)
		}
		typ, err := messageType(data)
		var r reply
		switch {
		case err != nil:
		case typ == wire.TypeOffer:
			r.offer, err = decodeAs[wire.Offer](data)
			r.raw = data
		case typ == wire.TypeRedirect:
			r.redirect, err = decodeAs[wire.Redirect](data)
		case typ == wire.TypePing:
			_ = write(ctx, ws, wire.Pong{Type: wire.TypePong})
			continue
		default:
			continue
		}
		if err != nil {
			return reply{}, fmt.Errorf("client: bad server message: %w", err)
		}
		return r, nil
	}
}

// closeErr turns a WebSocket close into a *CloseError.
func closeErr(err error) error {
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		return &CloseError{Code: int(ce.Code), Reason: ce.Reason}
	}
	return err
}

// start builds the peer connection, answers the offer, starts the reader
// and waits for the peer connection to connect.
func (c *Conn) start(ctx context.Context, offer *wire.Offer) error {
	var conf webrtc.Configuration
	if len(offer.Config) > 0 {
		_ = json.Unmarshal(offer.Config, &conf)
	}
	pc, err := c.cfg.API.NewPeerConnection(conf)
	if err != nil {
		return fmt.Errorf("client: new peer connection: %w", err)
	}
	c.PC = pc
	connected := make(chan struct{})
	failed := make(chan struct{})
	var once1, once2 sync.Once
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		switch s {
		case webrtc.PeerConnectionStateConnected:
			once1.Do(func() { close(connected) })
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			once2.Do(func() { close(failed) })
		}
	})
	if c.cfg.OnTrack != nil {
		pc.OnTrack(c.cfg.OnTrack)
	}
	pc.OnDataChannel(func(dc *webrtc.DataChannel) {
		c.mu.Lock()
		if c.dcs == nil {
			c.dcs = map[string]*webrtc.DataChannel{}
		}
		c.dcs[dc.Label()] = dc // a second channel of one label replaces the first, as in the SDK
		c.mu.Unlock()
		if fn := c.cfg.OnDataChannel; fn != nil {
			fn(dc)
		}
	})
	pc.OnICECandidate(func(cand *webrtc.ICECandidate) {
		if cand == nil {
			return
		}
		init := cand.ToJSON()
		c.mu.Lock()
		if !c.answered {
			c.pending = append(c.pending, init)
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		c.sendCandidate(init)
	})
	if err := c.answer(ctx, offer.SDP, wire.TypeAnswer, true); err != nil {
		return err
	}
	c.mu.Lock()
	c.answered = true
	pending := c.pending
	c.pending = nil
	c.mu.Unlock()
	for _, p := range pending {
		c.sendCandidate(p)
	}
	go c.readLoop()
	select {
	case <-connected:
		return nil
	case <-failed:
		c.shutdown()
		return errors.New("client: peer connection failed")
	case <-c.done:
		return c.Err()
	case <-ctx.Done():
		c.shutdown()
		return ctx.Err()
	}
}

// answer applies an offer or re-offer and sends the answer.
func (c *Conn) answer(ctx context.Context, sdp, typ string, first bool) error {
	pc := c.PC
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdp}); err != nil {
		return fmt.Errorf("client: apply %s: %w", typ, err)
	}
	if first {
		for _, t := range c.cfg.Tracks {
			if _, err := pc.AddTrack(t); err != nil {
				return fmt.Errorf("client: add track: %w", err)
			}
		}
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		return fmt.Errorf("client: create %s: %w", typ, err)
	}
	if err := pc.SetLocalDescription(ans); err != nil {
		return fmt.Errorf("client: set local %s: %w", typ, err)
	}
	if err := write(ctx, c.ws, wire.Answer{Type: typ, SDP: ans.SDP}); err != nil {
		return closeErr(fmt.Errorf("client: send %s: %w", typ, err))
	}
	return nil
}

func (c *Conn) sendCandidate(init webrtc.ICECandidateInit) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cand := wire.Candidate{Type: wire.TypeCandidate, Candidate: init.Candidate, SDPMid: init.SDPMid,
		SDPMLineIndex: init.SDPMLineIndex, UsernameFragment: init.UsernameFragment}
	if err := write(ctx, c.ws, cand); err != nil {
		c.logger.Debug("send candidate", "err", err)
	}
}

// readLoop handles server messages until the socket closes.
func (c *Conn) readLoop() {
	defer c.shutdown()
	ctx := context.Background()
	for {
		_, data, err := c.ws.Read(ctx)
		if err != nil {
			c.setErr(closeErr(err))
			return
		}
		if err := c.handle(ctx, data); err != nil {
			c.logger.Debug("bad server message", "err", err)
		}
	}
}

// handle acts on one server message after the offer.
func (c *Conn) handle(ctx context.Context, data []byte) error {
	typ, err := messageType(data)
	if err != nil {
		return err
	}
	switch typ {
	case wire.TypePing:
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_ = write(wctx, c.ws, wire.Pong{Type: wire.TypePong})
		cancel()
	case wire.TypeReOffer:
		m, err := decodeAs[wire.ReOffer](data)
		if err != nil {
			return err
		}
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = c.answer(wctx, m.SDP, wire.TypeReAnswer, false)
		cancel()
		if err != nil {
			c.logger.Warn("re-offer", "err", err)
		}
	case wire.TypeNotify:
		m, err := decodeAs[wire.Notify](data)
		if err != nil {
			return err
		}
		if fn := c.cfg.OnNotify; fn != nil {
			fn(Notify{EventType: string(m.EventType), ConnectionID: m.ConnectionID, Raw: data})
		}
	case wire.TypePush:
		m, err := decodeAs[wire.Push](data)
		if err != nil {
			return err
		}
		if fn := c.cfg.OnPush; fn != nil {
			fn(Push{Data: m.Data, Raw: data})
		}
	}
	return nil
}

func (c *Conn) setErr(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
}

// shutdown closes the peer connection and marks the connection done.
func (c *Conn) shutdown() {
	c.closeOnce.Do(func() {
		c.setErr(fmt.Errorf("client: connection closed: %w", net.ErrClosed))
		_ = c.PC.Close()
		close(c.done)
	})
}

// DataChannel returns the data channel the server opened with this label
// ("signaling", "notify", "push", or a "#" messaging channel), once the
// client has received it.
func (c *Conn) DataChannel(label string) (*webrtc.DataChannel, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	dc, ok := c.dcs[label]
	return dc, ok
}

// Done is closed when the connection has ended.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err returns nil while the connection is up, then why it ended: a
// *CloseError when the server closed signaling.
func (c *Conn) Err() error {
	select {
	case <-c.done:
	default:
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close sends disconnect, waits (up to 3 s) for the server to close the
// socket, and closes the peer connection. Safe to call twice.
func (c *Conn) Close() error {
	select {
	case <-c.done:
		return nil
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), disconnectWait)
	defer cancel()
	if err := write(ctx, c.ws, wire.Disconnect{Type: wire.TypeDisconnect, Reason: "NO-ERROR"}); err == nil {
		select {
		case <-c.done:
		case <-ctx.Done():
		}
	}
	c.ws.CloseNow()
	<-c.done
	return nil
}

// LocalAPI returns a webrtc.API for tests and single-host demos, the twin of
// sfu.LocalConfig: loopback UDP candidates only, no mDNS, default codecs and
// interceptors, pion's logs to logger (nil means slog.Default()).
func LocalAPI(logger *slog.Logger) (*webrtc.API, error) {
	if logger == nil {
		logger = slog.Default()
	}
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		return nil, fmt.Errorf("client: codecs: %w", err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		return nil, fmt.Errorf("client: interceptors: %w", err)
	}
	se := webrtc.SettingEngine{LoggerFactory: slogpion.New(logger)}
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}
