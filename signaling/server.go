package signaling

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/shoal-sfu/shoal/affinity"
	"github.com/shoal-sfu/shoal/signaling/wire"
)

// Defaults of Config's timers and limits.
const (
	DefaultConnectTimeout = 10 * time.Second
	DefaultAuthTimeout    = 10 * time.Second
	DefaultJoinTimeout    = 10 * time.Second
	DefaultAnswerTimeout  = 30 * time.Second
	DefaultPingInterval   = 5 * time.Second
	DefaultPongTimeout    = 15 * time.Second
	DefaultWriteTimeout   = 10 * time.Second
	DefaultRedirectLinger = 3 * time.Second
	DefaultMaxCandidates  = 200
	// maxQueued bounds the events waiting for one session's goroutine; a
	// client that cannot keep up with its channel is dropped.
	maxQueued = 4096
)

// ErrClosed is returned by calls on a closed Server; it wraps net.ErrClosed.
var ErrClosed = fmt.Errorf("signaling: server closed: %w", net.ErrClosed)

// Config configures a Server. Media and Authenticator are required; the
// rest have useful zero values.
type Config struct {
	// Logger receives the server's logs; nil means slog.Default().
	Logger *slog.Logger
	// NodeName is this node's node_name, the Contacted of placement and the
	// node_name of the auth request. Required when Cluster is set.
	NodeName string
	// Authenticator decides every connect. Use AllowAll in development.
	Authenticator Authenticator
	// Media creates the peer connections of served clients.
	Media Media
	// Cluster, when set, makes the server place every connect and redirect
	// or refuse as placement decides. Nil means a plain single node, whose
	// only limit is Media's capacity.
	Cluster Cluster
	// Placer decides placement; nil means affinity.Default{}.
	Placer affinity.Placer
	// MaxMessageSize limits one client message; 0 means
	// wire.DefaultMaxMessageSize.
	MaxMessageSize int
	// MaxCandidates limits the candidates one client may trickle; 0 means
	// DefaultMaxCandidates.
	MaxCandidates int
	// ConnectTimeout is how long a new socket may stay silent before its
	// connect; 0 means DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// AuthTimeout bounds one call of the Authenticator; 0 means
	// DefaultAuthTimeout. A Webhook's own Timeout applies too.
	AuthTimeout time.Duration
	// JoinTimeout bounds Media.Join (it gathers candidates); 0 means
	// DefaultJoinTimeout.
	JoinTimeout time.Duration
	// AnswerTimeout is how long the server waits for an answer to an offer
	// or re-offer; 0 means DefaultAnswerTimeout.
	AnswerTimeout time.Duration
	// PingInterval is the period of the server's ping; 0 means
	// DefaultPingInterval, a negative value turns pings off.
	PingInterval time.Duration
	// PongTimeout is how long a ping may stay unanswered before the
	// connection is dropped; 0 means DefaultPongTimeout.
	PongTimeout time.Duration
	// WriteTimeout bounds one write to a client; 0 means DefaultWriteTimeout.
	WriteTimeout time.Duration
	// RedirectLinger is how long the server waits, after a redirect, for
	// the client to close the socket before it closes it itself; 0 means
	// DefaultRedirectLinger.
	RedirectLinger time.Duration
	// OriginPatterns lists the web origins (host patterns, as
	// websocket.AcceptOptions) allowed to open signaling from a browser; the
	// request's own host is always allowed. AnyOrigin allows every origin.
	OriginPatterns []string
	AnyOrigin      bool
	// DataChannelSignaling is the default of connect's
	// data_channel_signaling, which a connect that sets the field
	// overrides. When in effect, the server sends "switched" once the data
	// channels are open and then signals over them (see the package doc).
	// False by default, as in the seed.
	DataChannelSignaling bool
	// IgnoreDisconnectWebSocket is the default of connect's
	// ignore_disconnect_websocket, which a connect that sets the field
	// overrides. With data-channel signaling in effect, "switched" carries
	// it: the client then closes its WebSocket and the session lives on
	// over the data channels. False by default, as in the seed.
	IgnoreDisconnectWebSocket bool
}

// switchedDelay is how long the server waits, after the media side reports
// every data channel open, before it sends "switched": a "switched" that
// beats the client's datachannel event for a "#" channel loses the SDK's
// datachannel callback for it (PROTOCOL.md §3.9; 300 ms worked).
const switchedDelay = 300 * time.Millisecond

// The data channels the server itself reads or writes.
const (
	labelSignaling = "signaling"
	labelNotify    = "notify"
	labelPush      = "push"
)

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.ConnectTimeout, DefaultConnectTimeout)
	def(&c.AuthTimeout, DefaultAuthTimeout)
	def(&c.JoinTimeout, DefaultJoinTimeout)
	def(&c.AnswerTimeout, DefaultAnswerTimeout)
	def(&c.PingInterval, DefaultPingInterval)
	def(&c.PongTimeout, DefaultPongTimeout)
	def(&c.WriteTimeout, DefaultWriteTimeout)
	def(&c.RedirectLinger, DefaultRedirectLinger)
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = wire.DefaultMaxMessageSize
	}
	if c.MaxCandidates == 0 {
		c.MaxCandidates = DefaultMaxCandidates
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Placer == nil {
		c.Placer = affinity.Default{}
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.Media == nil:
		return errors.New("signaling: Config.Media is nil: the server needs a media side to serve clients")
	case c.Authenticator == nil:
		return errors.New("signaling: Config.Authenticator is nil: every connect is authenticated (use signaling.AllowAll in development)")
	case c.Cluster != nil && c.NodeName == "":
		return errors.New("signaling: Config.NodeName is empty: placement needs this node's node_name when Cluster is set")
	case c.MaxMessageSize < 0:
		return fmt.Errorf("signaling: Config.MaxMessageSize %d is negative", c.MaxMessageSize)
	case c.MaxCandidates < 0:
		return fmt.Errorf("signaling: Config.MaxCandidates %d is negative", c.MaxCandidates)
	}
	for name, d := range map[string]time.Duration{"ConnectTimeout": c.ConnectTimeout, "AuthTimeout": c.AuthTimeout,
		"JoinTimeout": c.JoinTimeout, "AnswerTimeout": c.AnswerTimeout, "PongTimeout": c.PongTimeout,
		"WriteTimeout": c.WriteTimeout, "RedirectLinger": c.RedirectLinger} {
		if d < 0 {
			return fmt.Errorf("signaling: Config.%s %v is negative", name, d)
		}
	}
	return nil
}

// Server is the signaling server, an http.Handler to mount on the path the
// clients' signaling URLs name. Create it with New; Close it to end every
// session.
type Server struct {
	cfg    Config
	logger *slog.Logger
	ctx    context.Context // cancelled by Close; parent of every session
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu         sync.Mutex
	closed     bool
	sessions   map[*session]struct{} // every open socket
	channels   map[string]*channelState
	total      int            // served connections
	perChannel map[string]int // served connections per channel
}

// channelState serialises the claim and release of one channel and counts
// its served connections.
type channelState struct {
	mu     sync.Mutex // held across ClaimChannel/ReleaseChannel
	refs   int        // sessions using this entry (guarded by Server.mu)
	served int        // served connections (guarded by mu)
}

var _ http.Handler = (*Server)(nil)

// New validates cfg and returns a Server. It starts nothing.
func New(cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		cfg:        cfg,
		logger:     cfg.Logger.With("component", "signaling"),
		ctx:        ctx,
		cancel:     cancel,
		sessions:   map[*session]struct{}{},
		channels:   map[string]*channelState{},
		perChannel: map[string]int{},
	}, nil
}

// Close closes every session (close code 1001) and waits for their
// goroutines. Later connections are answered 503. Safe to call twice.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}

// ConnectionInfo describes one connection served by this node. Its JSON is
// the seed's ListChannelConnections entry (see MarshalJSON), plus node_name.
type ConnectionInfo struct {
	ChannelID    string
	ConnectionID string
	// ClientID is connect's client_id, or the connection_id when the
	// client gave none (as the offer says).
	ClientID string
	Role     wire.Role
	// NodeName is the node serving the connection (ours; the seed has no
	// such field).
	NodeName string
	// CreatedTime is when the offer was sent, to the microsecond.
	CreatedTime time.Time
	// Audio and Video are nil when connect turned them off; otherwise they
	// carry the codec_type and bit_rate connect asked for, if any (the
	// codec actually negotiated is the media side's and not known here).
	Audio, Video *ConnectionMedia
}

// ConnectionMedia is the audio or video of a ConnectionInfo.
type ConnectionMedia struct {
	CodecType string `json:"codec_type,omitempty"`
	BitRate   int    `json:"bit_rate,omitempty"`
}

// connectionInfoJSON is ConnectionInfo on the wire, in the seed's order.
// The server is always multistream and has no simulcast or spotlight;
// there is no session_id.
type connectionInfoJSON struct {
	ChannelID    string          `json:"channel_id"`
	ClientID     string          `json:"client_id,omitempty"`
	ConnectionID string          `json:"connection_id"`
	Role         wire.Role       `json:"role"`
	Multistream  bool            `json:"multistream"`
	Simulcast    bool            `json:"simulcast"`
	Spotlight    bool            `json:"spotlight"`
	CreatedTime  json.RawMessage `json:"created_time"`
	Audio        json.RawMessage `json:"audio"`
	Video        json.RawMessage `json:"video"`
	NodeName     string          `json:"node_name,omitempty"`
}

// MarshalJSON writes the seed's shape: {"channel_id", "client_id",
// "connection_id", "role", "multistream": true, "simulcast": false,
// "spotlight": false, "created_time": microseconds since the epoch (an
// integer; 0 for the zero time), "audio" and "video": false or
// {"codec_type", "bit_rate"} (each omitted when unknown), "node_name"}.
func (c ConnectionInfo) MarshalJSON() ([]byte, error) {
	media := func(m *ConnectionMedia) json.RawMessage {
		if m == nil {
			return json.RawMessage("false")
		}
		b, _ := json.Marshal(m)
		return b
	}
	var created int64
	if !c.CreatedTime.IsZero() {
		created = c.CreatedTime.UnixMicro()
	}
	return json.Marshal(connectionInfoJSON{ChannelID: c.ChannelID, ClientID: c.ClientID, ConnectionID: c.ConnectionID,
		Role: c.Role, Multistream: true, CreatedTime: strconv.AppendInt(nil, created, 10),
		Audio: media(c.Audio), Video: media(c.Video), NodeName: c.NodeName})
}

// UnmarshalJSON reads what MarshalJSON writes. created_time may also be an
// RFC 3339 string (what nodes before the seed's shape answered), and audio
// or video true (an object without codec) or absent (off).
func (c *ConnectionInfo) UnmarshalJSON(b []byte) error {
	var w connectionInfoJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*c = ConnectionInfo{ChannelID: w.ChannelID, ConnectionID: w.ConnectionID, ClientID: w.ClientID, Role: w.Role, NodeName: w.NodeName}
	if ct := bytes.TrimSpace(w.CreatedTime); len(ct) > 0 && !bytes.Equal(ct, []byte("null")) {
		if ct[0] == '"' {
			if err := json.Unmarshal(ct, &c.CreatedTime); err != nil {
				return fmt.Errorf("created_time: %w", err)
			}
		} else {
			us, err := strconv.ParseInt(string(ct), 10, 64)
			if err != nil {
				var f float64 // 1.6443162143145e+15
				if json.Unmarshal(ct, &f) != nil || f < math.MinInt64 || f >= math.MaxInt64 {
					return fmt.Errorf("created_time %.40q: want microseconds since the epoch", ct)
				}
				us = int64(f)
			}
			if us != 0 {
				c.CreatedTime = time.UnixMicro(us).UTC()
			}
		}
	}
	media := func(raw json.RawMessage, what string) (*ConnectionMedia, error) {
		raw = bytes.TrimSpace(raw)
		switch {
		case len(raw) == 0, bytes.Equal(raw, []byte("null")), bytes.Equal(raw, []byte("false")):
			return nil, nil
		case bytes.Equal(raw, []byte("true")):
			return &ConnectionMedia{}, nil
		}
		var m ConnectionMedia
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		return &m, nil
	}
	var err error
	if c.Audio, err = media(w.Audio, "audio"); err != nil {
		return err
	}
	c.Video, err = media(w.Video, "video")
	return err
}

// Connections lists the connections this node serves in channelID, or in
// every channel if channelID is "".
func (s *Server) Connections(channelID string) []ConnectionInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []ConnectionInfo
	for se := range s.sessions {
		if info, ok := se.info(); ok && (channelID == "" || info.ChannelID == channelID) {
			out = append(out, info)
		}
	}
	return out
}

// DisconnectChannel closes every connection this node serves in channelID
// (close code 1000, the given reason) and returns how many it closed.
func (s *Server) DisconnectChannel(channelID, reason string) (int, error) {
	return s.disconnect(func(info ConnectionInfo) bool { return info.ChannelID == channelID }, 1000, reason)
}

// DisconnectConnection closes the connection connectionID of channelID if
// this node serves it (close code 1000, the given reason) and returns how
// many it closed: 0 or 1.
func (s *Server) DisconnectConnection(channelID, connectionID, reason string) (int, error) {
	return s.disconnect(func(info ConnectionInfo) bool {
		return info.ChannelID == channelID && info.ConnectionID == connectionID
	}, 1000, reason)
}

// DisconnectClient closes every connection of channelID with this
// client_id that this node serves (close code 1000, the given reason) and
// returns how many it closed. A connection without a client_id has its
// connection_id as client_id.
func (s *Server) DisconnectClient(channelID, clientID, reason string) (int, error) {
	return s.disconnect(func(info ConnectionInfo) bool {
		return info.ChannelID == channelID && info.ClientID == clientID
	}, 1000, reason)
}

// ErrPushData is returned by the push methods when data is not a JSON
// object.
var ErrPushData = errors.New("signaling: push data must be a JSON object")

// PushChannel sends {"type":"push","data":data} to every connection this
// node serves in channelID and returns how many it queued it for. data
// must be a JSON object (ErrPushData). The message is queued on each
// session without blocking and written on its WebSocket in order with
// the session's other messages; a session whose queue is full is dropped
// (4500 TOO-SLOW), as for media events.
func (s *Server) PushChannel(channelID string, data json.RawMessage) (int, error) {
	return s.pushTo(func(info ConnectionInfo) bool { return info.ChannelID == channelID }, data)
}

// PushConnection sends {"type":"push","data":data} to the connection
// connectionID of channelID if this node serves it, and returns how many
// it queued it for: 0 or 1. See PushChannel.
func (s *Server) PushConnection(channelID, connectionID string, data json.RawMessage) (int, error) {
	return s.pushTo(func(info ConnectionInfo) bool {
		return info.ChannelID == channelID && info.ConnectionID == connectionID
	}, data)
}

// PushClient sends {"type":"push","data":data} to every connection of
// channelID with this client_id that this node serves, and returns how
// many. See PushChannel and DisconnectClient.
func (s *Server) PushClient(channelID, clientID string, data json.RawMessage) (int, error) {
	return s.pushTo(func(info ConnectionInfo) bool {
		return info.ChannelID == channelID && info.ClientID == clientID
	}, data)
}

// isJSONObject reports whether b is one valid JSON object.
func isJSONObject(b []byte) bool {
	b = bytes.TrimSpace(b)
	return len(b) > 0 && b[0] == '{' && json.Valid(b)
}

func (s *Server) pushTo(match func(ConnectionInfo) bool, data json.RawMessage) (int, error) {
	if !isJSONObject(data) {
		return 0, ErrPushData
	}
	msg, err := json.Marshal(wire.Push{Type: wire.TypePush, Data: data}) // once for every session
	if err != nil {
		return 0, err
	}
	return s.each(match, func(se *session) { se.push(queued{raw: msg}) })
}

// DisconnectAll closes every connection this node serves with the code and
// reason given, e.g. when the node leaves the cluster's majority (SPEC
// §3.7: CloseRefused, "NOT-IN-MAJORITY"). It returns how many it closed.
func (s *Server) DisconnectAll(code int, reason string) (int, error) {
	return s.disconnect(func(ConnectionInfo) bool { return true }, code, reason)
}

func (s *Server) disconnect(match func(ConnectionInfo) bool, code int, reason string) (int, error) {
	return s.each(match, func(se *session) { se.kill(code, reason) })
}

// each runs fn, which must not block, on every session this node serves
// whose connection matches, and returns how many.
func (s *Server) each(match func(ConnectionInfo) bool, fn func(*session)) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	n := 0
	for se := range s.sessions {
		if info, ok := se.info(); ok && match(info) {
			fn(se)
			n++
		}
	}
	return n, nil
}

// ServeHTTP upgrades the request to a WebSocket and runs the session until
// it ends.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		http.Error(w, "signaling server closed", http.StatusServiceUnavailable)
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		OriginPatterns:     s.cfg.OriginPatterns,
		InsecureSkipVerify: s.cfg.AnyOrigin,
	})
	if err != nil {
		s.logger.Debug("websocket upgrade failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	se := &session{
		srv:    s,
		ws:     ws,
		logger: s.logger.With("remote", r.RemoteAddr),
		in:     make(chan inMsg, 16),
		wake:   make(chan struct{}, 1),
		killed: make(chan struct{}),
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ws.Close(wire.CloseServerShutdown, "SERVER-SHUTDOWN")
		return
	}
	s.sessions[se] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.sessions, se)
		s.mu.Unlock()
	}()
	se.run(s.ctx)
}

// acquire counts a connection of channelID about to be served, claiming
// the channel in the cluster for its first one. It returns the session's
// owners (the creator first) when it made the claim, nil otherwise.
func (s *Server) acquire(ctx context.Context, channelID string) ([]string, error) {
	s.mu.Lock()
	st := s.channels[channelID]
	if st == nil {
		st = &channelState{}
		s.channels[channelID] = st
	}
	st.refs++
	s.mu.Unlock()
	st.mu.Lock()
	defer st.mu.Unlock()
	var owners []string
	if st.served == 0 && s.cfg.Cluster != nil {
		var err error
		if owners, err = s.cfg.Cluster.ClaimChannel(ctx, channelID); err != nil {
			s.unref(channelID, st)
			return nil, err
		}
	}
	st.served++
	return owners, nil
}

// release undoes acquire; the last connection releases the channel.
func (s *Server) release(channelID string) {
	s.mu.Lock()
	st := s.channels[channelID]
	s.mu.Unlock()
	if st == nil {
		return
	}
	st.mu.Lock()
	st.served--
	if st.served == 0 && s.cfg.Cluster != nil {
		// Not the session's context: the release must happen even when the
		// server is closing.
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.JoinTimeout)
		if err := s.cfg.Cluster.ReleaseChannel(ctx, channelID); err != nil {
			s.logger.Warn("release channel", "channel", channelID, "err", err)
		}
		cancel()
	}
	st.mu.Unlock()
	s.unref(channelID, st)
}

func (s *Server) unref(channelID string, st *channelState) {
	s.mu.Lock()
	st.refs--
	if st.refs == 0 {
		delete(s.channels, channelID)
	}
	s.mu.Unlock()
}

// served adds delta to the served counts and publishes the load. The
// publication happens under s.mu so that concurrent changes reach the
// cluster in order.
func (s *Server) served(channelID string, delta int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total += delta
	if s.perChannel[channelID] += delta; s.perChannel[channelID] <= 0 {
		delete(s.perChannel, channelID)
	}
	if s.cfg.Cluster != nil {
		s.cfg.Cluster.PublishLoad(s.total, s.perChannel)
	}
}

// channelConnections is the channel's connection count, for the auth hook.
func (s *Server) channelConnections(view *affinity.View, channelID string) int {
	if view != nil {
		n := 0
		for _, o := range view.Sessions[channelID].Owners {
			n += o.Connections
		}
		return n
	}
	return len(s.Connections(channelID))
}

// newConnectionID returns a random 26-character id in the seed's style.
func newConnectionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:])[:26]
}

// truncateReason cuts a close reason to wire.MaxCloseReason bytes on a rune
// boundary.
func truncateReason(s string) string {
	if len(s) <= wire.MaxCloseReason {
		return s
	}
	s = s[:wire.MaxCloseReason]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// refusalReason maps placement's refusals to close reasons.
func refusalReason(err error) string {
	switch {
	case errors.Is(err, affinity.ErrNotInMajority):
		return "NOT-IN-MAJORITY"
	case errors.Is(err, affinity.ErrNoCapacity):
		return "NO-CAPACITY"
	case errors.Is(err, affinity.ErrSessionNodeFull):
		return "SESSION-NODE-FULL"
	case errors.Is(err, affinity.ErrSessionNodeUnavailable):
		return "SESSION-NODE-UNAVAILABLE"
	case errors.Is(err, affinity.ErrNodeBlocked):
		return "NODE-BLOCKED"
	case errors.Is(err, affinity.ErrUnknownNode):
		return "UNKNOWN-NODE"
	case errors.Is(err, affinity.ErrNoUsableNode):
		return "NO-USABLE-NODE"
	}
	return "REFUSED"
}

// inMsg is one message from the reader goroutine: data, or the error that
// ended reading.
type inMsg struct {
	data []byte
	err  error
}

// queued is one event from the media side, for the session goroutine.
type queued struct {
	reOffer string
	event   *ConnectionEvent
	label   string
	data    []byte
	raw     []byte // a server message to write as is (push)
	dcOpen  bool   // every data channel is open (MediaEvents.DataChannelsOpen)
}

// session is one WebSocket. Its goroutine (the ServeHTTP one) owns it and
// does every write; a reader goroutine it starts feeds `in`.
type session struct {
	srv    *Server
	ws     *websocket.Conn
	logger *slog.Logger
	in     chan inMsg

	mu       sync.Mutex
	served   bool
	infoV    ConnectionInfo
	queue    []queued
	overflow bool
	killCode int
	killWhy  string
	killed   chan struct{}
	killOnce sync.Once
	wake     chan struct{}
	media    MediaConn

	// Data-channel signaling; owned by the session goroutine.
	wantDC   bool            // data_channel_signaling in effect
	ignoreWS bool            // ignore_disconnect_websocket in effect (with wantDC)
	dcLabels map[string]bool // offer.data_channels
	switched bool            // "switched" was sent
	wsGone   bool            // the WebSocket closed after a switched with ignoreWS
}

func (se *session) info() (ConnectionInfo, bool) {
	se.mu.Lock()
	defer se.mu.Unlock()
	return se.infoV, se.served
}

func (se *session) kill(code int, reason string) {
	se.killOnce.Do(func() {
		se.mu.Lock()
		se.killCode, se.killWhy = code, reason
		se.mu.Unlock()
		close(se.killed)
	})
}

// push queues a media event without blocking the media side.
func (se *session) push(q queued) {
	se.mu.Lock()
	if len(se.queue) >= maxQueued {
		se.overflow = true
	} else {
		se.queue = append(se.queue, q)
	}
	se.mu.Unlock()
	select {
	case se.wake <- struct{}{}:
	default:
	}
}

// ending is how a session ends: code 0 means the peer is gone, so the
// socket is dropped without a handshake.
type ending struct {
	code   int
	reason string
	err    error // for the log
	now    bool  // skip the close handshake (peer presumed dead)
	// byClient is the client's own disconnect: after switched it waits for
	// the data channels to close and must not get a close message.
	byClient bool
}

func endProto(err error) ending {
	var pe *wire.ProtocolError
	if errors.As(err, &pe) {
		return ending{code: pe.Code, reason: pe.Reason, err: err}
	}
	return ending{code: wire.CloseInternalError, reason: "INTERNAL-ERROR", err: err}
}

// closeFirstWait bounds how long a session's media outlives its WebSocket
// close handshake (see session.run).
const closeFirstWait = time.Second

// clientCloseWait bounds how long, after a client's disconnect and the
// WebSocket's close handshake, the server waits for the client to close
// its peer connection before closing it itself.
const clientCloseWait = time.Second

// dataChannelCloseWait bounds how long a switched client that disconnected
// may take to close its data channels (the SDK waits 3 s for them).
const dataChannelCloseWait = 2 * time.Second

func (se *session) run(parent context.Context) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	// The reader has its own context: cancelling a read makes coder/websocket
	// drop the connection, which must wait for the close handshake below.
	rctx, rcancel := context.WithCancel(context.Background())
	readDone := make(chan struct{})
	se.ws.SetReadLimit(-1) // the reader enforces MaxMessageSize itself, with its own close code
	go se.read(rctx, readDone)

	end := se.handle(ctx)

	// A live client gets the close frame before its media ends: the SDK
	// reports a data channel closing first as an error (abend
	// DATA-CHANNEL-ONERROR) instead of the server's code and reason. The
	// handshake may wait for a dead client, so the media is freed after it,
	// or after closeFirstWait at the most.
	se.mu.Lock()
	m, served, info := se.media, se.served, se.infoV
	se.served = false // no longer listed, pushed to or disconnected
	se.mu.Unlock()
	if se.switched && end.byClient && m != nil {
		// The SDK waits for its data channels to close after a disconnect
		// sent on one (PROTOCOL.md §3.11).
		if dc, ok := m.(DataChannelCloser); ok {
			cctx, ccancel := context.WithTimeout(context.Background(), dataChannelCloseWait)
			if err := dc.CloseDataChannels(cctx); err != nil {
				se.logger.Debug("data channels not closed in time", "err", err)
			}
			ccancel()
		}
	}
	closed := make(chan struct{})
	if se.switched && se.ignoreWS {
		// The client dropped (or is dropping) the WebSocket: the end goes
		// on the "signaling" data channel, and the media closes after it.
		_ = se.ws.CloseNow()
		close(closed)
		if m != nil && end.code != 0 && !end.byClient {
			se.closeOverDataChannel(m, end)
		}
	} else if end.code == 0 || end.now {
		_ = se.ws.CloseNow()
		close(closed)
	} else {
		go func() {
			defer close(closed)
			_ = se.ws.Close(websocket.StatusCode(end.code), truncateReason(end.reason))
		}()
		t := time.NewTimer(closeFirstWait)
		select {
		case <-closed:
		case <-t.C:
		}
		t.Stop()
	}
	if end.byClient && m != nil {
		// After its disconnect the SDK closes its own peer connection, once
		// the WebSocket (or, switched, every data channel) has closed; ours
		// closing first can reach it as a data channel error before it has
		// seen those close (abend DATA-CHANNEL-ONERROR, or
		// DISCONNECT-DATA-CHANNEL-ERROR when switched).
		t := time.NewTimer(clientCloseWait)
		select {
		case <-m.Done():
		case <-t.C:
		}
		t.Stop()
	}
	if m != nil {
		_ = m.Close()
	}
	if served {
		se.srv.served(info.ChannelID, -1)
		se.srv.release(info.ChannelID)
	}
	<-closed
	rcancel()
	<-readDone
	lvl := slog.LevelDebug
	if end.code >= 4400 && end.code != wire.CloseRefused {
		lvl = slog.LevelInfo
	}
	se.logger.Log(context.Background(), lvl, "signaling session ended", "code", end.code, "reason", end.reason, "err", end.err)
}

// closeOverDataChannel tells a switched client without WebSocket that its
// session ends ({"type":"close","code","reason"} on the "signaling" data
// channel, PROTOCOL.md §3.10), then gives the message closeFirstWait at the
// most to leave before the caller closes the media (the client closes its
// peer connection when it gets it, which may end the media first).
func (se *session) closeOverDataChannel(m MediaConn, end ending) {
	select {
	case <-m.Done():
		return // nothing to send it on
	default:
	}
	b, err := json.Marshal(wire.Close{Type: wire.TypeClose, Code: end.code, Reason: truncateReason(end.reason)})
	if err == nil {
		err = m.SendText(labelSignaling, string(b))
	}
	if err != nil {
		se.logger.Debug("close not sent on the data channel", "err", err)
		return
	}
	t := time.NewTimer(closeFirstWait)
	defer t.Stop()
	select {
	case <-m.Done():
	case <-t.C:
	}
}

// read feeds se.in until the socket fails or ctx ends.
func (se *session) read(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	max := se.srv.cfg.MaxMessageSize
	for {
		typ, r, err := se.ws.Reader(ctx)
		var b []byte
		if err == nil {
			b, err = io.ReadAll(io.LimitReader(r, int64(max)+1))
			switch {
			case err != nil:
			case len(b) > max:
				err = wire.Errorf(wire.CloseMessageTooLarge, "MESSAGE-TOO-LARGE", "message over the limit of %d bytes", max)
			case typ != websocket.MessageText:
				err = wire.Errorf(wire.CloseInvalidMessage, "BINARY-MESSAGE", "binary frame; signaling messages are JSON text")
			}
		}
		select {
		case se.in <- inMsg{data: b, err: err}:
		case <-ctx.Done():
			return
		}
		if err != nil {
			return
		}
	}
}

// readErrEnding turns a reader error into the session's end.
func readErrEnding(err error) ending {
	var pe *wire.ProtocolError
	if errors.As(err, &pe) {
		return ending{code: pe.Code, reason: pe.Reason, err: err}
	}
	return ending{err: err} // peer closed or the socket broke
}

func (se *session) write(ctx context.Context, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return se.writeRaw(ctx, b)
}

// writeRaw writes one message already encoded.
func (se *session) writeRaw(ctx context.Context, b []byte) error {
	// Not cancelled with the session: coder/websocket drops the connection
	// when a write's context ends, and a shutting-down session still
	// closes with a handshake.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), se.srv.cfg.WriteTimeout)
	defer cancel()
	return se.ws.Write(ctx, websocket.MessageText, b)
}

// handle runs the session's phases and returns how it ends.
func (se *session) handle(ctx context.Context) ending {
	cfg := &se.srv.cfg
	// 1. connect.
	timer := time.NewTimer(cfg.ConnectTimeout)
	var m inMsg
	select {
	case m = <-se.in:
		timer.Stop()
	case <-timer.C:
		return ending{code: wire.CloseConnectTimeout, reason: "CONNECT-TIMEOUT"}
	case <-ctx.Done():
		timer.Stop()
		return ending{code: wire.CloseServerShutdown, reason: "SERVER-SHUTDOWN"}
	case <-se.killed:
		timer.Stop()
		return se.killEnding()
	}
	if m.err != nil {
		return readErrEnding(m.err)
	}
	msg, err := wire.DecodeClientMessage(m.data, cfg.MaxMessageSize)
	if err != nil {
		return endProto(err)
	}
	c, ok := msg.(*wire.Connect)
	if !ok {
		return ending{code: wire.CloseUnexpected, reason: "CONNECT-EXPECTED", err: fmt.Errorf("first message is %T, not connect", msg)}
	}
	connID := newConnectionID()
	se.logger = se.logger.With("channel", c.ChannelID, "connection", connID)

	// 2. placement before authentication, when it can decide without the
	// hook: refusals always; redirects when relay is off (affinity cannot
	// be overridden without relay).
	var view *affinity.View
	req := affinity.Request{ChannelID: c.ChannelID, Contacted: cfg.NodeName, Redirected: c.Redirect}
	if cfg.Cluster != nil {
		v := cfg.Cluster.Snapshot()
		view = &v
		d := cfg.Placer.Place(view, req)
		switch {
		case d.Action == affinity.ActionRefuse:
			return ending{code: wire.CloseRefused, reason: refusalReason(d.Reason), err: d.Err()}
		case d.Action == affinity.ActionRedirect && !(view.Settings.Cluster && view.Settings.Relay):
			return se.redirect(ctx, d)
		}
	}

	// 3. authentication.
	actx, acancel := context.WithTimeout(ctx, cfg.AuthTimeout)
	res, err := cfg.Authenticator.Authenticate(actx, &AuthRequest{
		ChannelID: c.ChannelID, ClientID: c.ClientID, BundleID: c.BundleID, ConnectionID: connID,
		Role: c.Role, Metadata: c.Metadata, NodeName: cfg.NodeName,
		ChannelConnections: se.srv.channelConnections(view, c.ChannelID),
		Redirect:           c.Redirect, SoraClient: c.SoraClient, Environment: c.Environment,
	})
	timedOut := actx.Err() != nil
	acancel()
	if err != nil {
		var ae *AuthError
		switch {
		case errors.As(err, &ae):
			return ending{code: wire.CloseAuthDenied, reason: ae.Reason, err: err}
		case ctx.Err() != nil:
			return ending{code: wire.CloseServerShutdown, reason: "SERVER-SHUTDOWN"}
		case timedOut:
			return ending{code: wire.CloseAuthDenied, reason: "AUTH-TIMEOUT", err: err}
		}
		return ending{code: wire.CloseAuthDenied, reason: "AUTH-ERROR", err: err}
	}
	if !res.Allowed {
		reason := res.Reason
		if reason == "" {
			reason = "AUTH-DENIED"
		}
		return ending{code: wire.CloseAuthDenied, reason: reason}
	}

	// 4. placement after authentication, with the hook's affinity.
	if res.ClusterAffinity != nil {
		req.Affinity = affinity.AffinityOff
		if *res.ClusterAffinity {
			req.Affinity = affinity.AffinityOn
		}
	}
	if cfg.Cluster != nil {
		v := cfg.Cluster.Snapshot()
		view = &v
		d := cfg.Placer.Place(view, req)
		switch d.Action {
		case affinity.ActionRefuse:
			return ending{code: wire.CloseRefused, reason: refusalReason(d.Reason), err: d.Err()}
		case affinity.ActionRedirect:
			return se.redirect(ctx, d)
		}
	}

	// 5. serve.
	jctx, jcancel := context.WithTimeout(ctx, cfg.JoinTimeout)
	defer jcancel()
	owners, err := se.srv.acquire(jctx, c.ChannelID)
	if err != nil {
		// The view may have been stale (another node created the session
		// meanwhile): place again on a fresh one.
		if cfg.Cluster != nil {
			v := cfg.Cluster.Snapshot()
			if d := cfg.Placer.Place(&v, req); d.Action == affinity.ActionRedirect {
				return se.redirect(ctx, d)
			}
		}
		return ending{code: wire.CloseRefused, reason: "CHANNEL-CLAIM-FAILED", err: err}
	}
	// Two nodes can create one session at the same instant, each placing its
	// first client on itself from a view that showed no session. Raft orders
	// the claims: when affinity gathers this connection and another node's
	// claim came first, the client goes to that node instead.
	if d, ok := gatherOnCreator(view, req, owners); ok {
		se.srv.release(c.ChannelID)
		return se.redirect(ctx, d)
	}
	media, err := cfg.Media.Join(jctx, MediaRequest{
		ChannelID: c.ChannelID, ConnectionID: connID, ClientID: c.ClientID, Role: c.Role,
		Audio: c.Audio.Enabled, Video: c.Video.Enabled, DataChannels: c.DataChannels,
		Events: MediaEvents{
			ReOffer: func(sdp string) { se.push(queued{reOffer: sdp}) },
			Event:   func(ev ConnectionEvent) { se.push(queued{event: &ev}) },
			Message: func(label string, data []byte, isText bool) {
				se.push(queued{label: label, data: append([]byte(nil), data...)})
			},
			DataChannelsOpen: func() { se.push(queued{dcOpen: true}) },
		},
	})
	if err != nil {
		se.srv.release(c.ChannelID)
		if errors.Is(err, ErrMediaFull) {
			return ending{code: wire.CloseRefused, reason: "NODE-FULL", err: err}
		}
		if ctx.Err() != nil {
			return ending{code: wire.CloseServerShutdown, reason: "SERVER-SHUTDOWN"}
		}
		return ending{code: wire.CloseInternalError, reason: "MEDIA-ERROR", err: err}
	}
	clientID := c.ClientID
	if clientID == "" {
		clientID = connID
	}
	info := ConnectionInfo{ChannelID: c.ChannelID, ConnectionID: connID, ClientID: clientID, Role: c.Role,
		NodeName: cfg.NodeName, CreatedTime: time.Now().UTC().Truncate(time.Microsecond),
		Audio: connectionMedia(c.Audio), Video: connectionMedia(c.Video)}
	se.mu.Lock()
	se.media, se.served, se.infoV = media, true, info
	se.mu.Unlock()
	se.srv.served(c.ChannelID, +1)

	offer := media.Offer()
	se.wantDC, se.ignoreWS = cfg.DataChannelSignaling, cfg.IgnoreDisconnectWebSocket
	if c.DataChannelSignaling != nil {
		se.wantDC = *c.DataChannelSignaling
	}
	if c.IgnoreDisconnectWebSocket != nil {
		se.ignoreWS = *c.IgnoreDisconnectWebSocket
	}
	se.ignoreWS = se.ignoreWS && se.wantDC
	se.dcLabels = make(map[string]bool, len(offer.DataChannels))
	for _, d := range offer.DataChannels {
		se.dcLabels[d.Label] = true
	}
	bundleID := c.BundleID
	if bundleID == "" {
		bundleID = connID
	}
	om := wire.Offer{Type: wire.TypeOffer, SDP: offer.SDP, ConnectionID: connID, ClientID: clientID, BundleID: bundleID,
		ChannelID: c.ChannelID, Metadata: res.Metadata, DataChannels: offer.DataChannels}
	if offer.AudioMid != "" || offer.VideoMid != "" {
		om.Mid = &wire.OfferMid{Audio: offer.AudioMid, Video: offer.VideoMid}
	}
	if err := se.write(ctx, om); err != nil {
		return ending{err: fmt.Errorf("write offer: %w", err), now: true}
	}
	return se.loop(ctx, media)
}

// connectionMedia is connect's audio or video for ConnectionInfo.
func connectionMedia(m wire.MediaOptions) *ConnectionMedia {
	if !m.Enabled {
		return nil
	}
	return &ConnectionMedia{CodecType: m.CodecType, BitRate: m.BitRate}
}

// gatherOnCreator reports whether a connection whose claim made this node a
// second owner of a session should rather go to the session's creator, and
// the redirect to it: only when the view placement used showed no session
// (so placement meant to create it here), with relay on and affinity in
// effect, and only to a node the view shows connected.
func gatherOnCreator(view *affinity.View, req affinity.Request, owners []string) (affinity.Decision, bool) {
	if view == nil || len(owners) < 2 || owners[0] == req.Contacted || !view.Settings.Cluster || !view.Settings.Relay {
		return affinity.Decision{}, false
	}
	if len(view.Sessions[req.ChannelID].Owners) > 0 {
		// Placement saw the session and chose this node anyway (its node
		// was over the affinity threshold, or full): not a race.
		return affinity.Decision{}, false
	}
	switch req.Affinity {
	case affinity.AffinityOff:
		return affinity.Decision{}, false
	case affinity.AffinityUnset:
		if !view.Settings.DefaultAffinity {
			return affinity.Decision{}, false
		}
	}
	i := view.NodeIndex(owners[0])
	if i < 0 || !view.Nodes[i].Connected || view.Nodes[i].SignalingURL == "" {
		return affinity.Decision{}, false
	}
	n := view.Nodes[i]
	return affinity.Decision{Action: affinity.ActionRedirect, Index: i, Node: n.Name, SignalingURL: n.SignalingURL, APIURL: n.APIURL}, true
}

func (se *session) killEnding() ending {
	se.mu.Lock()
	defer se.mu.Unlock()
	return ending{code: se.killCode, reason: se.killWhy}
}

// redirect sends the client elsewhere and waits for it to close.
func (se *session) redirect(ctx context.Context, d affinity.Decision) ending {
	if d.SignalingURL == "" {
		return ending{code: wire.CloseInternalError, reason: "NO-SIGNALING-URL", err: fmt.Errorf("node %s has no external_signaling_url", d.Node)}
	}
	if err := se.write(ctx, wire.Redirect{Type: wire.TypeRedirect, Location: d.SignalingURL}); err != nil {
		return ending{err: fmt.Errorf("write redirect: %w", err), now: true}
	}
	se.logger.Debug("redirected", "to", d.Node, "location", d.SignalingURL)
	t := time.NewTimer(se.srv.cfg.RedirectLinger)
	defer t.Stop()
	for {
		select {
		case m := <-se.in:
			if m.err != nil {
				return ending{} // the client closed, as the SDK does
			}
		case <-t.C:
			return ending{code: 1000, reason: "REDIRECTED"}
		case <-ctx.Done():
			return ending{code: wire.CloseServerShutdown, reason: "SERVER-SHUTDOWN"}
		}
	}
}

// loop serves an offered connection until it ends.
//
// With data-channel signaling in effect, once the initial answer is applied
// and the media side reports every data channel open, it waits
// switchedDelay and sends "switched" on the WebSocket. From then on
// re-offers go on the "signaling" data channel, notifies on "notify" and
// pushes on "push" (each on the WebSocket if the offer lacks the channel).
// With ignore_disconnect_websocket the client then closes the WebSocket:
// the session stops pinging, ignores the socket's end and lives on until
// the media ends, the client's disconnect arrives on the data channel, or
// the server or the API ends it (run sends close on the data channel).
func (se *session) loop(ctx context.Context, media MediaConn) ending {
	cfg := &se.srv.cfg
	answerTimer := time.NewTimer(cfg.AnswerTimeout)
	defer answerTimer.Stop()
	awaiting := wire.TypeAnswer // the answer type expected, or ""
	var pingC <-chan time.Time
	if cfg.PingInterval > 0 {
		tk := time.NewTicker(cfg.PingInterval)
		defer tk.Stop()
		pingC = tk.C
	}
	pongTimer := time.NewTimer(time.Hour)
	pongTimer.Stop()
	defer pongTimer.Stop()
	awaitingPong := false
	candidates := 0
	in := se.in // nil once the WebSocket is gone

	// Switching to data-channel signaling.
	answered, dcOpen := false, false
	var switchTimer *time.Timer
	var switchC <-chan time.Time
	defer func() {
		if switchTimer != nil {
			switchTimer.Stop()
		}
	}()
	maybeSwitch := func() {
		if se.wantDC && answered && dcOpen && switchTimer == nil && se.dcLabels[labelSignaling] {
			switchTimer = time.NewTimer(switchedDelay)
			switchC = switchTimer.C
		}
	}
	// stopPinging is for a WebSocket that is closing or gone: the SDK
	// answers ping only there.
	stopPinging := func() {
		pingC = nil
		awaitingPong = false
		pongTimer.Stop()
	}

	// send writes one server message: on the data channel label after
	// switched (when the offer has it), else on the WebSocket, unless the
	// client was told to drop it.
	send := func(label string, b []byte) *ending {
		if se.switched && se.dcLabels[label] {
			if err := media.SendText(label, string(b)); err != nil {
				return &ending{code: wire.CloseInternalError, reason: "DATA-CHANNEL-ERROR", err: fmt.Errorf("send on data channel %q: %w", label, err)}
			}
			return nil
		}
		if se.switched && se.ignoreWS {
			se.logger.Debug("message dropped: no data channel for it and the WebSocket is dropped", "label", label)
			return nil
		}
		if err := se.writeRaw(ctx, b); err != nil {
			return &ending{err: err, now: true}
		}
		return nil
	}
	sendJSON := func(label string, v any) *ending {
		b, err := json.Marshal(v)
		if err != nil {
			return &ending{code: wire.CloseInternalError, reason: "INTERNAL-ERROR", err: err}
		}
		return send(label, b)
	}

	handle := func(data []byte) *ending {
		msg, err := wire.DecodeClientMessage(data, cfg.MaxMessageSize)
		if err != nil {
			e := endProto(err)
			return &e
		}
		switch m := msg.(type) {
		case *wire.Connect:
			return &ending{code: wire.CloseUnexpected, reason: "UNEXPECTED-CONNECT"}
		case *wire.Answer:
			if m.Type != awaiting {
				return &ending{code: wire.CloseUnexpected, reason: "UNEXPECTED-" + upper(m.Type), err: fmt.Errorf("%s while expecting %q", m.Type, awaiting)}
			}
			if err := media.SetAnswer(m.SDP); err != nil {
				return &ending{code: wire.CloseInvalidMessage, reason: "INVALID-ANSWER", err: err}
			}
			awaiting = ""
			answerTimer.Stop()
			if !answered {
				answered = true
				maybeSwitch()
			}
		case *wire.Candidate:
			if candidates++; candidates > cfg.MaxCandidates {
				return &ending{code: wire.CloseTooManyCandidates, reason: "TOO-MANY-CANDIDATES"}
			}
			if err := media.AddCandidate(*m); err != nil {
				se.logger.Debug("candidate refused", "err", err)
			}
		case *wire.Pong:
			awaitingPong = false
			pongTimer.Stop()
		case *wire.Disconnect:
			se.logger.Debug("client disconnected", "reason", m.Reason)
			return &ending{code: 1000, reason: "TYPE-DISCONNECT", byClient: true}
		}
		return nil
	}

	for {
		select {
		case m := <-in:
			if m.err != nil {
				var pe *wire.ProtocolError
				if se.switched && se.ignoreWS && !errors.As(m.err, &pe) {
					// The client dropped the WebSocket as switched told it.
					se.wsGone, in = true, nil
					se.logger.Debug("websocket closed after switched; signaling goes on over the data channels", "err", m.err)
					continue
				}
				return readErrEnding(m.err)
			}
			if e := handle(m.data); e != nil {
				return *e
			}
		case <-se.wake:
			se.mu.Lock()
			q, overflow := se.queue, se.overflow
			se.queue = nil
			se.mu.Unlock()
			if overflow {
				return ending{code: wire.CloseInternalError, reason: "TOO-SLOW", err: errors.New("event queue overflow")}
			}
			for _, it := range q {
				switch {
				case it.reOffer != "":
					if e := sendJSON(labelSignaling, wire.ReOffer{Type: wire.TypeReOffer, SDP: it.reOffer}); e != nil {
						return *e
					}
					awaiting = wire.TypeReAnswer
					answerTimer.Reset(cfg.AnswerTimeout)
				case it.event != nil:
					if e := sendJSON(labelNotify, notifyFor(it.event)); e != nil {
						return *e
					}
				case it.raw != nil:
					if e := send(labelPush, it.raw); e != nil {
						return *e
					}
				case it.dcOpen:
					dcOpen = true
					maybeSwitch()
				case it.label == labelSignaling:
					if e := handle(it.data); e != nil {
						return *e
					}
				}
			}
		case <-switchC:
			switchC = nil
			if err := se.write(ctx, wire.Switched{Type: wire.TypeSwitched, IgnoreDisconnectWebSocket: se.ignoreWS}); err != nil {
				return ending{err: fmt.Errorf("write switched: %w", err), now: true}
			}
			se.switched = true
			se.logger.Debug("switched to data-channel signaling", "ignore_disconnect_websocket", se.ignoreWS)
			if se.ignoreWS {
				stopPinging()
			}
		case <-answerTimer.C:
			return ending{code: wire.CloseAnswerTimeout, reason: "ANSWER-TIMEOUT", err: fmt.Errorf("no %s within %v", awaiting, cfg.AnswerTimeout)}
		case <-pingC:
			if err := se.write(ctx, wire.Ping{Type: wire.TypePing}); err != nil {
				return ending{err: err, now: true}
			}
			if !awaitingPong {
				awaitingPong = true
				pongTimer.Reset(cfg.PongTimeout)
			}
		case <-pongTimer.C:
			return ending{code: wire.ClosePingTimeout, reason: "PING-TIMEOUT"}
		case <-media.Done():
			return ending{code: 1000, reason: "MEDIA-CLOSED"}
		case <-se.killed:
			return se.killEnding()
		case <-ctx.Done():
			return ending{code: wire.CloseServerShutdown, reason: "SERVER-SHUTDOWN"}
		}
	}
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

func notifyFor(ev *ConnectionEvent) wire.Notify {
	return wire.Notify{Type: wire.TypeNotify, EventType: ev.Type, ConnectionID: ev.ConnectionID, ClientID: ev.ClientID,
		Role: ev.Role, ChannelConnections: ev.Counts.Connections, ChannelSendrecvConnections: ev.Counts.SendRecv,
		ChannelSendonlyConnections: ev.Counts.SendOnly, ChannelRecvonlyConnections: ev.Counts.RecvOnly}
}
