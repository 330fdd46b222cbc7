package sfu

import (
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"

	"github.com/shoal-sfu/shoal/internal/slogpion"
)

// Errors returned by the SFU. Calls after Close return errors wrapping
// net.ErrClosed.
var (
	// ErrInvalidRequest wraps every rejection of a malformed JoinRequest.
	ErrInvalidRequest = errors.New("sfu: invalid join request")
	// ErrDuplicateConnection: the connection id is already in use on this node.
	ErrDuplicateConnection = errors.New("sfu: connection id already in use")
	// ErrInvalidTrack wraps every rejection of a malformed TrackInfo.
	ErrInvalidTrack = errors.New("sfu: invalid track")
	// ErrInvalidRTP: a packet given to TrackWriter.WriteRTP does not parse as RTP.
	ErrInvalidRTP = errors.New("sfu: invalid RTP packet")
	// ErrAnswerMismatch: an answer does not match the offer it answers.
	ErrAnswerMismatch = errors.New("sfu: answer does not match the offer")
	// ErrNoPendingOffer: SetAnswer was called with no offer outstanding.
	ErrNoPendingOffer = errors.New("sfu: no offer is waiting for an answer")
	// ErrUnknownDataChannel: Send names a label the connection does not have.
	ErrUnknownDataChannel = errors.New("sfu: unknown data channel")
	// ErrDisconnected is the Err of connections closed by DisconnectAll.
	ErrDisconnected = errors.New("sfu: disconnected by the node")
	// ErrChannelClosed is the Err of connections closed by CloseChannel.
	ErrChannelClosed = errors.New("sfu: channel closed")
	// ErrAnswerTimeout is wrapped by the Err of a connection whose client
	// did not answer an offer or re-offer within Config.AnswerTimeout.
	ErrAnswerTimeout = errors.New("sfu: the client did not answer the offer in time")
)

// CapacityError refuses a Join beyond Config.MaxConnections.
type CapacityError struct {
	Max int // the configured maximum
}

// Error says the node is full.
func (e *CapacityError) Error() string {
	return fmt.Sprintf("sfu: node is full (%d connections)", e.Max)
}

// MaxChannelIDLen is the longest channel id accepted, in bytes.
const MaxChannelIDLen = 255

// DefaultKeyframeInterval is the minimum time between two keyframe requests
// sent to one track's publisher.
const DefaultKeyframeInterval = 500 * time.Millisecond

// DefaultAnswerTimeout is how long a client has to answer an offer or a
// re-offer. The seed SDK answers within milliseconds; the margin is for slow
// devices and networks.
const DefaultAnswerTimeout = 30 * time.Second

// Config configures an SFU. The zero value is usable: no connection limit,
// ephemeral UDP ports on every interface, full ICE.
type Config struct {
	// Logger receives the SFU's and pion's logs; nil means slog.Default().
	Logger *slog.Logger
	// MaxConnections refuses Join with a *CapacityError beyond this many
	// connections on the node; 0 means no limit.
	MaxConnections int
	// KeyframeInterval is the minimum time between keyframe requests sent
	// to one publisher; requests in between are coalesced into one sent at
	// the end of the interval. 0 means DefaultKeyframeInterval.
	KeyframeInterval time.Duration
	// AnswerTimeout is how long a client has to answer the initial offer
	// (counted from the end of Join) and every re-offer (counted from the
	// ReOffer hook call). A connection whose answer does not come in time is
	// closed and its Err wraps ErrAnswerTimeout; the other connections of
	// the channel are not affected. Without it, a client that never
	// re-answers would keep its connection alive but never get another
	// re-offer, since only one is outstanding at a time. A re-offer is not
	// timed when ConnectionHooks.ReOffer is nil, as nobody was sent it.
	// 0 means DefaultAnswerTimeout.
	AnswerTimeout time.Duration
	// Network holds the ICE settings a deployment needs.
	Network NetworkConfig
	// MLineReuse says which inactive m-lines (of tracks that left) a new
	// forwarded track may take instead of a new m-line. The zero value,
	// ReuseOnce, is safe for every client.
	MLineReuse Reuse
}

// Reuse says which inactive m-lines of a subscriber a new forwarded track
// may take. An m-line is never taken in the offer that first makes it
// inactive: the client sees the old track end first.
type Reuse int

const (
	// ReuseOnce takes only an m-line carried inactive in exactly one
	// answered offer (the last). It is safe for every answerer, pion
	// included, but the SDP still grows when several tracks leave before
	// one joins.
	ReuseOnce Reuse = iota
	// ReuseAny takes any m-line whose inactive state was answered: the
	// SDP of a long-lived channel stays bounded by the most tracks present
	// at once. For browsers and the seed's SDKs (the root package's
	// TestE2EChromeReusesMLines: Chromium with sora-js-sdk decodes tracks
	// on m-lines two offers carried inactive); a pion (v4.2.26) answerer,
	// signaling/client included, gets no media on an m-line it saw inactive
	// in two offers or more.
	ReuseAny
	// ReuseNever gives every forwarded track a new m-line.
	ReuseNever
)

// NetworkConfig holds the ICE network settings.
type NetworkConfig struct {
	// UDPPort, when not 0, makes all ICE traffic of all connections use one
	// UDP socket on ListenIP:UDPPort (a UDP mux). The socket is opened by
	// the first Join and closed by Close.
	UDPPort int
	// ListenIP is the address of the UDP mux socket; the zero value means
	// all interfaces (0.0.0.0).
	ListenIP netip.Addr
	// PortMin and PortMax bound the ephemeral UDP ports used when UDPPort
	// is 0. Both 0 means any port.
	PortMin, PortMax uint16
	// NAT1To1IPs replaces the host candidates' addresses with these public
	// addresses (a server behind a 1:1 NAT). Leave empty if AddressRewrite
	// is used.
	NAT1To1IPs []string
	// AddressRewrite is pion's general form of NAT1To1IPs.
	AddressRewrite []webrtc.ICEAddressRewriteRule
	// IPFilter, when not nil, keeps only the local addresses it accepts for
	// candidates.
	IPFilter func(net.IP) bool
	// InterfaceFilter, when not nil, keeps only the network interfaces it
	// accepts (by name) for candidates.
	InterfaceFilter func(string) bool
	// IncludeLoopback gathers loopback candidates (tests, single-host setups).
	IncludeLoopback bool
	// Lite runs the server as an ICE-lite agent.
	Lite bool
}

// LocalConfig is a preset for tests and single-host demos: loopback
// candidates only, no mDNS, short keyframe interval.
func LocalConfig(logger *slog.Logger) Config {
	return Config{
		Logger:           logger,
		KeyframeInterval: 100 * time.Millisecond,
		Network: NetworkConfig{
			IPFilter:        func(ip net.IP) bool { return ip.IsLoopback() },
			IncludeLoopback: true,
		},
	}
}

// SFU is one node's media core: channels of connections whose tracks and
// messages fan out to each other. Create it with New.
type SFU struct {
	cfg    Config
	logger *slog.Logger

	mu       sync.Mutex
	closed   bool
	started  bool
	api      *webrtc.API
	mux      net.PacketConn // UDP mux socket, if any
	muxClose func() error
	channels map[string]*Channel
	conns    map[string]*Connection
	counts   map[string]int // connections per channel
	total    int
}

// New validates cfg and returns an SFU. It opens no socket and starts no
// goroutine; the first Join does.
func New(cfg Config) (*SFU, error) {
	if cfg.MaxConnections < 0 {
		return nil, fmt.Errorf("sfu: MaxConnections is %d; want 0 (no limit) or more", cfg.MaxConnections)
	}
	if cfg.KeyframeInterval < 0 {
		return nil, fmt.Errorf("sfu: KeyframeInterval is %v; want 0 (default) or more", cfg.KeyframeInterval)
	}
	if cfg.KeyframeInterval == 0 {
		cfg.KeyframeInterval = DefaultKeyframeInterval
	}
	if cfg.MLineReuse < ReuseOnce || cfg.MLineReuse > ReuseNever {
		return nil, fmt.Errorf("sfu: MLineReuse is %d; want ReuseOnce, ReuseAny or ReuseNever", cfg.MLineReuse)
	}
	if cfg.AnswerTimeout < 0 {
		return nil, fmt.Errorf("sfu: AnswerTimeout is %v; want 0 (default) or more", cfg.AnswerTimeout)
	}
	if cfg.AnswerTimeout == 0 {
		cfg.AnswerTimeout = DefaultAnswerTimeout
	}
	n := cfg.Network
	if n.UDPPort < 0 || n.UDPPort > 65535 {
		return nil, fmt.Errorf("sfu: Network.UDPPort %d is not a UDP port", n.UDPPort)
	}
	if (n.PortMin == 0) != (n.PortMax == 0) || n.PortMin > n.PortMax {
		return nil, fmt.Errorf("sfu: Network.PortMin %d and PortMax %d: set both, with PortMin <= PortMax", n.PortMin, n.PortMax)
	}
	if n.UDPPort != 0 && n.PortMin != 0 {
		return nil, errors.New("sfu: Network.UDPPort and PortMin/PortMax exclude each other: one socket for all, or a range")
	}
	if len(n.NAT1To1IPs) > 0 && len(n.AddressRewrite) > 0 {
		return nil, errors.New("sfu: Network.NAT1To1IPs and AddressRewrite exclude each other (pion refuses both)")
	}
	for _, ip := range n.NAT1To1IPs {
		if _, err := netip.ParseAddr(ip); err != nil {
			return nil, fmt.Errorf("sfu: Network.NAT1To1IPs: %q is not an IP address", ip)
		}
	}
	cfg.Network.NAT1To1IPs = append([]string(nil), n.NAT1To1IPs...)
	cfg.Network.AddressRewrite = append([]webrtc.ICEAddressRewriteRule(nil), n.AddressRewrite...)
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	cfg.Logger = logger
	return &SFU{
		cfg:      cfg,
		logger:   logger.With("component", "sfu"),
		channels: make(map[string]*Channel),
		conns:    make(map[string]*Connection),
		counts:   make(map[string]int),
	}, nil
}

// start builds the pion API and opens the UDP mux. Called with s.mu held.
func (s *SFU) start() error {
	if s.started {
		return nil
	}
	m := &webrtc.MediaEngine{}
	if err := registerCodecs(m); err != nil {
		return fmt.Errorf("sfu: register codecs: %w", err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.ConfigureNack(m, ir); err != nil {
		return fmt.Errorf("sfu: configure NACK: %w", err)
	}
	if err := webrtc.ConfigureRTCPReports(ir); err != nil {
		return fmt.Errorf("sfu: configure RTCP reports: %w", err)
	}
	lf := slogpion.New(s.cfg.Logger)
	se := webrtc.SettingEngine{LoggerFactory: lf}
	n := s.cfg.Network
	se.SetICEMulticastDNSMode(0) // ice.MulticastDNSModeDisabled
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6})
	se.SetLite(n.Lite)
	if n.IPFilter != nil {
		se.SetIPFilter(n.IPFilter)
	}
	if n.InterfaceFilter != nil {
		se.SetInterfaceFilter(n.InterfaceFilter)
	}
	se.SetIncludeLoopbackCandidate(n.IncludeLoopback)
	if n.PortMin != 0 {
		if err := se.SetEphemeralUDPPortRange(n.PortMin, n.PortMax); err != nil {
			return fmt.Errorf("sfu: port range: %w", err)
		}
	}
	rules := n.AddressRewrite
	if len(n.NAT1To1IPs) > 0 {
		rules = []webrtc.ICEAddressRewriteRule{{External: n.NAT1To1IPs, AsCandidateType: webrtc.ICECandidateTypeHost}}
	}
	if len(rules) > 0 {
		if err := se.SetICEAddressRewriteRules(rules...); err != nil {
			return fmt.Errorf("sfu: address rewrite: %w", err)
		}
	}
	if n.UDPPort != 0 {
		ip := n.ListenIP
		if !ip.IsValid() {
			ip = netip.IPv4Unspecified()
		}
		conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(n.UDPPort))))
		if err != nil {
			return fmt.Errorf("sfu: open the ICE UDP port: %w", err)
		}
		mux := webrtc.NewICEUDPMux(lf.NewLogger("udpmux"), conn)
		se.SetICEUDPMux(mux)
		s.mux = conn
		s.muxClose = mux.Close
	}
	s.api = webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
	s.started = true
	return nil
}

// registerCodecs registers the codecs the SFU forwards. No header extension
// is registered, so publishers send none that a subscriber could misread.
func registerCodecs(m *webrtc.MediaEngine) error {
	fb := []webrtc.RTCPFeedback{{Type: "ccm", Parameter: "fir"}, {Type: "nack"}, {Type: "nack", Parameter: "pli"}}
	audio := []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"}, PayloadType: 111},
	}
	video := []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000, RTCPFeedback: fb}, PayloadType: 96},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP9, ClockRate: 90000, SDPFmtpLine: "profile-id=0", RTCPFeedback: fb}, PayloadType: 98},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f", RTCPFeedback: fb}, PayloadType: 102},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeAV1, ClockRate: 90000, RTCPFeedback: fb}, PayloadType: 45},
	}
	for _, c := range audio {
		if err := m.RegisterCodec(c, webrtc.RTPCodecTypeAudio); err != nil {
			return err
		}
	}
	for _, c := range video {
		if err := m.RegisterCodec(c, webrtc.RTPCodecTypeVideo); err != nil {
			return err
		}
	}
	return nil
}

// Counts is a snapshot of the node's connection counts.
type Counts struct {
	Total    int            // all connections of the node
	Channels map[string]int // connections per channel id, channels with none omitted
}

// Counts returns the node's current connection counts.
func (s *SFU) Counts() Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := Counts{Total: s.total, Channels: make(map[string]int, len(s.counts))}
	for id, n := range s.counts {
		c.Channels[id] = n
	}
	return c
}

// Channel returns the channel with this id, creating it if needed. A channel
// lives while it has connections, remote tracks or observers; a handle kept
// after that returns errors wrapping net.ErrClosed (call Channel again).
func (s *SFU) Channel(id string) (*Channel, error) {
	if id == "" || len(id) > MaxChannelIDLen {
		return nil, fmt.Errorf("%w: channel id must be 1 to %d bytes, got %d", ErrInvalidRequest, MaxChannelIDLen, len(id))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("sfu: channel: %w", net.ErrClosed)
	}
	ch := s.channels[id]
	if ch == nil || ch.dead.Load() {
		ch = newChannel(s, id)
		s.channels[id] = ch
	}
	return ch, nil
}

// dropChannel forgets ch if it is still the channel of its id.
func (s *SFU) dropChannel(ch *Channel) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.channels[ch.id] == ch {
		delete(s.channels, ch.id)
	}
}

// CloseChannel disconnects every connection of the channel (their Err is
// ErrChannelClosed), removes its remote tracks and ends its observers. A
// channel unknown to the node is not an error.
func (s *SFU) CloseChannel(id string) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("sfu: close channel: %w", net.ErrClosed)
	}
	ch := s.channels[id]
	delete(s.channels, id)
	s.mu.Unlock()
	if ch != nil {
		ch.close(ErrChannelClosed)
	}
	return nil
}

// DisconnectAll closes every connection of the node, with Err
// ErrDisconnected; used when the node loses the cluster majority. New Joins
// are still accepted.
func (s *SFU) DisconnectAll() {
	s.mu.Lock()
	conns := make([]*Connection, 0, len(s.conns))
	for _, c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.closeWith(ErrDisconnected)
	}
}

// Close closes every connection and channel and the UDP mux. It is safe to
// call more than once; later calls on the SFU return errors wrapping
// net.ErrClosed.
func (s *SFU) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	chans := make([]*Channel, 0, len(s.channels))
	for _, ch := range s.channels {
		chans = append(chans, ch)
	}
	s.channels = map[string]*Channel{}
	conns := make([]*Connection, 0, len(s.conns))
	for _, c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.closeWith(net.ErrClosed)
	}
	for _, ch := range chans {
		ch.close(net.ErrClosed)
	}
	var err error
	if s.muxClose != nil {
		err = s.muxClose()
		_ = s.mux.Close()
	}
	return err
}

// reserve counts a new connection, refusing beyond capacity.
func (s *SFU) reserve(c *Connection) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("sfu: join: %w", net.ErrClosed)
	}
	if s.cfg.MaxConnections > 0 && s.total >= s.cfg.MaxConnections {
		return &CapacityError{Max: s.cfg.MaxConnections}
	}
	if _, dup := s.conns[c.id]; dup {
		return fmt.Errorf("%w: %q", ErrDuplicateConnection, c.id)
	}
	if err := s.start(); err != nil {
		return err
	}
	s.conns[c.id] = c
	s.counts[c.channelID]++
	s.total++
	return nil
}

// release undoes reserve.
func (s *SFU) release(c *Connection) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns[c.id] != c {
		return
	}
	delete(s.conns, c.id)
	s.total--
	if s.counts[c.channelID]--; s.counts[c.channelID] <= 0 {
		delete(s.counts, c.channelID)
	}
}

// NewConnectionID returns a random 26-character connection id in the style
// of the seed SFU (base32, upper case).
func NewConnectionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:])[:26]
}
