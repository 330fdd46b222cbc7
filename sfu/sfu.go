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

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"

	"github.com/shoal-sfu/shoal/internal/lifecycle"
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

// receiveMTU is the largest datagram the SFU's peer connections read
// whole: pion's ICE reads up to 8192 bytes.
const receiveMTU = 8192

// SFU is one node's media core: channels of connections whose tracks and
// messages fan out to each other. Create it with New.
type SFU struct {
	cfg    Config
	logger *slog.Logger

	mu       sync.Mutex
	state    lifecycle.State // read and changed only with mu held, with the maps
	api      *webrtc.API
	mux      net.PacketConn // UDP mux socket, if any
	muxClose func() error
	send     sendState   // the mux's batched sends, spread fan-out drops (mux.go)
	muxRecv  *recvConn   // the mux socket as pion reads it (directrecv.go); nil: not wrapped
	cc       *ccRegistry // nil with Config.DisableCongestionControl
	// What each connection's own API is made of when it sends directly
	// (direct.go): the media engine, interceptors and settings of api.
	me       *webrtc.MediaEngine
	ir       *interceptor.Registry
	se       webrtc.SettingEngine
	srs      *srRegistries      // the sender reports' streams (sr.go); nil: pion's
	upsw     *recvSwitchFactory // publishers' streams switched to the direct receive path (recvswitch.go); nil: pion's
	channels map[string]*Channel
	conns    map[string]*Connection
	counts   map[string]int // connections per channel
	total    int
	drops    dropCounters // drops.go
	// testSettings, set by a test before the first Join, adjusts the
	// setting engine (shorter ICE timeouts).
	testSettings func(*webrtc.SettingEngine)
}

// New validates cfg and returns an SFU. It opens no socket and starts no
// goroutine; the first Join does.
func New(cfg Config) (*SFU, error) {
	cfg, err := cfg.check()
	if err != nil {
		return nil, err
	}
	return &SFU{
		cfg:      cfg,
		logger:   cfg.Logger.With("component", "sfu"),
		channels: make(map[string]*Channel),
		conns:    make(map[string]*Connection),
		counts:   make(map[string]int),
	}, nil
}

// start builds the pion API and opens the UDP mux, once. Called with s.mu
// held, the SFU open.
func (s *SFU) start() error {
	if s.state.Started() {
		return nil
	}
	lf := slogpion.New(s.cfg.Logger)
	if !s.cfg.DisableCongestionControl {
		s.cc = &ccRegistry{}
	}
	if !s.cfg.DisableDirectSend {
		s.srs = &srRegistries{}
		if s.cc != nil {
			s.upsw = &recvSwitchFactory{stats: &s.send, drops: &s.drops.upstreamQueueFull}
		}
	}
	m, ir, err := newMediaEngine(s.cc, s.srs, s.upsw)
	if err != nil {
		return err
	}
	se := webrtc.SettingEngine{LoggerFactory: lf}
	n := s.cfg.Network
	if s.cfg.Net != nil {
		se.SetNet(s.cfg.Net)
	}
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	// As DTLS server the SFU picks the SRTP profile from the client's
	// offer in this order: AES-128-GCM is the cheapest per packet with
	// AES-NI (pion's own order puts AES-256-GCM first; AES-CM with
	// HMAC-SHA1 costs an AES pass and a SHA-1 pass).
	se.SetSRTPProtectionProfiles(srtpProfiles...)
	// Read whole datagrams up to what pion's ICE reads (8192 bytes): with
	// pion's default of 1460, a larger RTCP compound (transport-cc feedback
	// of many packets, as pion clients send under a burst) was dropped
	// before SRTCP, with an error line each time.
	se.SetReceiveMTU(receiveMTU)
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
		addr := net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(n.UDPPort)))
		var conn net.PacketConn
		var err error
		if s.cfg.Net != nil {
			conn, err = s.cfg.Net.ListenUDP("udp", addr)
		} else {
			conn, err = net.ListenUDP("udp", addr)
		}
		if err != nil {
			return fmt.Errorf("sfu: open the ICE UDP port: %w", err)
		}
		conn = s.muxSocket(conn)
		read := conn
		if !s.cfg.DisableDirectSend && s.cc != nil {
			// Datagrams of connections on the direct path are taken before
			// pion's mux sees them (directrecv.go).
			if s.muxRecv = newRecvConn(conn); s.muxRecv != nil {
				read = s.muxRecv
			}
		}
		// What webrtc.NewICEUDPMux makes, with the network that lists the
		// mux's addresses when it listens on all of them.
		mux := ice.NewUDPMuxDefault(ice.UDPMuxParams{Logger: lf.NewLogger("udpmux"), UDPConn: read, Net: s.cfg.Net})
		se.SetICEUDPMux(mux)
		s.mux = conn
		s.muxClose = mux.Close
	}
	if s.testSettings != nil {
		s.testSettings(&se)
	}
	s.api = webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
	s.me, s.ir, s.se = m, ir, se
	return s.state.Start("sfu")
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
	if err := s.state.Err("sfu: channel"); err != nil {
		return nil, err
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
	if err := s.state.Err("sfu: close channel"); err != nil {
		s.mu.Unlock()
		return err
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
	if first, _ := s.state.Close(); !first {
		s.mu.Unlock()
		return nil
	}
	chans := make([]*Channel, 0, len(s.channels))
	for _, ch := range s.channels {
		chans = append(chans, ch)
	}
	s.channels = map[string]*Channel{}
	conns := make([]*Connection, 0, len(s.conns))
	for _, c := range s.conns {
		conns = append(conns, c)
	}
	cc, srs := s.cc, s.srs
	s.mu.Unlock()
	for _, c := range conns {
		c.closeWith(net.ErrClosed)
	}
	for _, ch := range chans {
		ch.close(net.ErrClosed)
	}
	if cc != nil {
		cc.clock.close()
	}
	if srs != nil {
		srs.clock.close()
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
	if err := s.state.Err("sfu: join"); err != nil {
		return err
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

// NewConnectionID returns a random 26-character connection id in Sora's
// style (base32, upper case).
func NewConnectionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:])[:26]
}
