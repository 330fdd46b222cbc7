package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-sfu/shoal/internal/clusterkey"
)

// DefaultPort is the relay's TCP and UDP port when Config.ListenAddr has
// none: the top of the cluster's node-to-node range (49010–49020, SPEC §2),
// whose bottom the cluster layer uses.
const DefaultPort = 49020

// Defaults for the zero values of Config.
const (
	DefaultNACKBuffer        = 256
	DefaultKeyframeInterval  = 500 * time.Millisecond
	DefaultHeartbeatInterval = time.Second
	DefaultLinkTimeout       = 5 * time.Second
	DefaultReconnectMin      = 100 * time.Millisecond
	DefaultReconnectMax      = 5 * time.Second
	DefaultQueueLen          = 1024
)

// maxPacket is the largest RTP packet the relay carries (a loopback or LAN
// MTU); larger ones are dropped and counted.
const maxPacket = 1500

// Errors.
var (
	// ErrUnknownPeer: the node was not given with SetPeer.
	ErrUnknownPeer = errors.New("relay: unknown peer")
	// ErrNotRelayed: the channel is not relayed on this node.
	ErrNotRelayed = errors.New("relay: channel is not relayed")
	// ErrTooLarge: an RTP packet larger than the relay carries.
	ErrTooLarge = errors.New("relay: packet too large")

	errClosed = fmt.Errorf("relay: %w", net.ErrClosed)
)

// Local is the local SFU as the relay sees it (package sfu through a thin
// adapter, or a test double).
type Local interface {
	// RelayChannel is called once when this node starts relaying channel,
	// because OpenChannel was called here or a peer opened it towards this
	// node. The implementation starts feeding the channel's local tracks
	// (AddLocalTrack) and messages (SendMessage), and returns where the
	// peers' tracks and messages go. It is called from the relay's
	// goroutines, never twice for one channel at once; it may call into the
	// relay (r is the relay asking) and should return promptly.
	RelayChannel(r *Relay, channel string) (ChannelSink, error)
}

// ChannelSink receives what peers relay for one channel. Its methods are
// called from one link goroutine per peer (so concurrently across peers);
// they must not block.
type ChannelSink interface {
	// AddRemoteTrack adds a peer's track to the local channel. Requests of
	// local subscribers for a keyframe go to keyframe, which coalesces them
	// and sends at most one per Config.KeyframeInterval across the hop.
	// The relay knows the track before it calls AddRemoteTrack: packets
	// that arrive while AddRemoteTrack runs are dropped and counted
	// (LinkStats.Drops and ChannelStats.Drops), and every packet that
	// arrives once it has returned goes to the returned TrackWriter. A
	// keyframe is requested right after it returns, so a video track starts
	// decodable. A sender that must not lose the first packets resends
	// until one arrives, or waits for that keyframe request.
	AddRemoteTrack(from string, info TrackInfo, keyframe KeyframeRequester) (TrackWriter, error)
	// DeliverMessage hands over a message a peer relayed; m.Data is owned
	// by the callee.
	DeliverMessage(from string, m Message)
	// Close says the channel's relay ended on this node (its remote tracks
	// have been closed already).
	Close()
}

// TrackWriter takes the RTP packets of a remote track. WriteRTP is called
// from the relay's single receive goroutine: it must not block or keep pkt.
// *sfu.TrackWriter is one.
type TrackWriter interface {
	WriteRTP(pkt []byte) error
	Close() error
}

// KeyframeRequester asks a track's publisher for a keyframe. It must not
// block.
type KeyframeRequester interface {
	RequestKeyframe()
}

// KeyframeFunc adapts a function to a KeyframeRequester.
type KeyframeFunc func()

// RequestKeyframe calls f.
func (f KeyframeFunc) RequestKeyframe() { f() }

var _ KeyframeRequester = KeyframeFunc(nil)

// Config configures a Relay. The zero value of each optional field is
// useful.
type Config struct {
	// NodeName is this node's name (SPEC §2, NAME@HOST). Required.
	NodeName string
	// ClusterKey is the secret every node of the cluster holds, at least
	// MinClusterKeyLen bytes. Link identities and media keys derive from
	// it. Required.
	ClusterKey []byte
	// ListenAddr is where the relay listens, TCP (control) and UDP (media)
	// on the same port. Zero: all addresses, DefaultPort. Port 0 picks a
	// free port (see Addr). A specific IP is also the source of dialled
	// links, so that peers see the right address.
	ListenAddr netip.AddrPort
	// Local is the local SFU. Required.
	Local Local
	// NACKBuffer is how many recent packets of each outgoing track are kept
	// to answer NACKs (1,500 bytes each, allocated with the track: 384 KB
	// at the default, about 2.5 s of 1 Mbit/s video). 0: DefaultNACKBuffer;
	// negative: none.
	NACKBuffer int
	// KeyframeInterval is the least time between two keyframe requests for
	// one track crossing a link. 0: DefaultKeyframeInterval.
	KeyframeInterval time.Duration
	// HeartbeatInterval is how often a link pings (round-trip time) and
	// proves it is alive. 0: DefaultHeartbeatInterval.
	HeartbeatInterval time.Duration
	// LinkTimeout: a link that has heard nothing on its control stream for
	// this long is broken and reconnects. 0: DefaultLinkTimeout.
	LinkTimeout time.Duration
	// ReconnectMin and ReconnectMax bound the jittered exponential backoff
	// between attempts to re-establish a link. 0: DefaultReconnectMin,
	// DefaultReconnectMax.
	ReconnectMin, ReconnectMax time.Duration
	// QueueLen is how many control frames (messages, track changes) wait
	// per link; beyond it they are dropped and counted. 0: DefaultQueueLen.
	QueueLen int
	// OnLinkChange, when not nil, is told each time the link to a peer
	// comes up (err nil) or goes down (err says why), e.g. for the cluster
	// layer to mark a node unfit (SPEC §3.10). It is called from the link's
	// goroutine, never concurrently for one peer, and must not block.
	OnLinkChange func(peer string, up bool, err error)
	// Logger receives the relay's logs; nil means slog.Default().
	Logger *slog.Logger
}

// FastConfig returns cfg with short heartbeats, timeouts and backoff, for
// tests and loopback clusters.
func FastConfig(cfg Config) Config {
	cfg.HeartbeatInterval = 100 * time.Millisecond
	cfg.LinkTimeout = time.Second
	cfg.ReconnectMin = 20 * time.Millisecond
	cfg.ReconnectMax = 200 * time.Millisecond
	return cfg
}

var nodeNameRE = regexp.MustCompile(`^[0-9A-Za-z_\-]+@[^@\s]+$`)

func (c *Config) validate() error {
	if !nodeNameRE.MatchString(c.NodeName) || len(c.NodeName) > 255 {
		return fmt.Errorf("relay: NodeName %q must be NAME@HOST (NAME of [0-9A-Za-z_-], at most 255 bytes in all)", c.NodeName)
	}
	if len(c.ClusterKey) < MinClusterKeyLen {
		return fmt.Errorf("relay: ClusterKey must be at least %d bytes, got %d", MinClusterKeyLen, len(c.ClusterKey))
	}
	if c.Local == nil {
		return errors.New("relay: Local is required (the local SFU, e.g. relay.NewSFULocal(s))")
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"KeyframeInterval", &c.KeyframeInterval, DefaultKeyframeInterval},
		{"HeartbeatInterval", &c.HeartbeatInterval, DefaultHeartbeatInterval},
		{"LinkTimeout", &c.LinkTimeout, DefaultLinkTimeout},
		{"ReconnectMin", &c.ReconnectMin, DefaultReconnectMin},
		{"ReconnectMax", &c.ReconnectMax, DefaultReconnectMax},
	} {
		if *d.v < 0 {
			return fmt.Errorf("relay: %s must not be negative, got %v", d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if c.ReconnectMax < c.ReconnectMin {
		return fmt.Errorf("relay: ReconnectMax %v is below ReconnectMin %v", c.ReconnectMax, c.ReconnectMin)
	}
	if c.LinkTimeout <= c.HeartbeatInterval {
		return fmt.Errorf("relay: LinkTimeout %v must exceed HeartbeatInterval %v", c.LinkTimeout, c.HeartbeatInterval)
	}
	if c.NACKBuffer == 0 {
		c.NACKBuffer = DefaultNACKBuffer
	}
	if c.NACKBuffer < 0 {
		c.NACKBuffer = 0
	}
	if c.QueueLen < 0 {
		return fmt.Errorf("relay: QueueLen must not be negative, got %d", c.QueueLen)
	}
	if c.QueueLen == 0 {
		c.QueueLen = DefaultQueueLen
	}
	if !c.ListenAddr.IsValid() {
		c.ListenAddr = netip.AddrPortFrom(netip.IPv4Unspecified(), DefaultPort)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Relay is one node's end of the relay: one link to each peer node,
// multiplexing every relayed channel. See the package documentation.
type Relay struct {
	cfg   Config
	log   *slog.Logger
	id    *clusterkey.Identity
	epoch time.Time // timestamps on the wire are nanoseconds since epoch

	mu       sync.Mutex
	closed   bool
	running  bool
	runCtx   context.Context // set by Run; parent of the links' goroutines
	cancel   context.CancelFunc
	peers    map[string]*link
	channels map[string]*channel
	udp      *net.UDPConn
	addr     netip.AddrPort
	wg       sync.WaitGroup // every goroutine Run starts, directly or not
	stopped  chan struct{}  // closed when Run returns

	chMu   sync.RWMutex // guards channels for the receive path
	byAddr atomic.Pointer[map[netip.AddrPort]*link]

	handshakeFailures atomic.Uint64
	unknownSource     atomic.Uint64
}

// New checks cfg and returns a relay. It starts nothing: call Run.
func New(cfg Config) (*Relay, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	id, err := clusterkey.Derive(cfg.ClusterKey, "relay")
	if err != nil {
		return nil, err
	}
	cfg.ClusterKey = append([]byte(nil), cfg.ClusterKey...)
	r := &Relay{
		cfg:      cfg,
		log:      cfg.Logger.With("component", "relay", "node", cfg.NodeName),
		id:       id,
		epoch:    time.Now(),
		peers:    map[string]*link{},
		channels: map[string]*channel{},
		stopped:  make(chan struct{}),
	}
	empty := map[netip.AddrPort]*link{}
	r.byAddr.Store(&empty)
	return r, nil
}

// Addr returns the address the relay listens on, once Run has bound it;
// before, the zero AddrPort.
func (r *Relay) Addr() netip.AddrPort {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.addr
}

// Run binds the relay's sockets and serves links until ctx ends or Close is
// called; it returns nil then, or the error that stopped it. It may be
// called once.
func (r *Relay) Run(ctx context.Context) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return errClosed
	}
	if r.running {
		r.mu.Unlock()
		return errors.New("relay: Run called twice")
	}
	r.running = true
	defer close(r.stopped)
	udp, tcp, err := listen(r.cfg.ListenAddr)
	if err != nil {
		r.mu.Unlock()
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.runCtx, r.cancel, r.udp = ctx, cancel, udp
	r.addr = netip.AddrPortFrom(r.cfg.ListenAddr.Addr(), uint16(udp.LocalAddr().(*net.UDPAddr).Port))
	for _, l := range r.peers {
		r.startLink(l)
	}
	r.mu.Unlock()
	r.log.Info("relay listening", "addr", r.addr)

	r.wg.Add(2)
	go func() {
		defer r.wg.Done()
		r.readDatagrams(udp)
	}()
	go func() {
		defer r.wg.Done()
		r.accept(ctx, tcp)
	}()
	<-ctx.Done()
	r.mu.Lock()
	r.runCtx = nil // no new links from now on
	r.mu.Unlock()
	udp.Close()
	tcp.Close()
	r.wg.Wait()
	return nil
}

// listen binds UDP and TCP on one port; with port 0 the UDP port is picked
// first and TCP takes the same.
func listen(ap netip.AddrPort) (*net.UDPConn, net.Listener, error) {
	for attempt := 0; ; attempt++ {
		udp, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
		if err != nil {
			return nil, nil, fmt.Errorf("relay: listen udp %v: %w", ap, err)
		}
		_ = udp.SetReadBuffer(4 << 20)
		_ = udp.SetWriteBuffer(4 << 20)
		port := udp.LocalAddr().(*net.UDPAddr).Port
		tcp, err := net.Listen("tcp", netip.AddrPortFrom(ap.Addr(), uint16(port)).String())
		if err == nil {
			return udp, tcp, nil
		}
		udp.Close()
		if ap.Port() != 0 || attempt == 10 {
			return nil, nil, fmt.Errorf("relay: listen tcp %v: %w", ap, err)
		}
	}
}

// Close stops the relay: links close, relayed channels end (their remote
// tracks are closed and their sinks told). It waits for Run to return. It
// is safe to call more than once.
func (r *Relay) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	running := r.running
	if r.cancel != nil {
		r.cancel()
	}
	chans := make([]*channel, 0, len(r.channels))
	for _, ch := range r.channels {
		chans = append(chans, ch)
	}
	r.mu.Unlock()
	if running {
		<-r.stopped
	}
	for _, ch := range chans {
		r.dropChannel(ch)
	}
	return nil
}

// SetPeer tells the relay where node listens (its relay host:port), or
// where it moved to. The link between two nodes is dialled by the one
// whose name sorts first; the other accepts it.
func (r *Relay) SetPeer(node string, addr netip.AddrPort) error {
	if node == r.cfg.NodeName {
		return fmt.Errorf("relay: SetPeer: %q is this node", node)
	}
	if !nodeNameRE.MatchString(node) || len(node) > 255 {
		return fmt.Errorf("relay: SetPeer: bad node name %q", node)
	}
	if !addr.IsValid() || addr.Port() == 0 {
		return fmt.Errorf("relay: SetPeer %s: address %v needs an IP and a port", node, addr)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errClosed
	}
	l := r.peers[node]
	if l == nil {
		l = r.newLink(node)
		r.peers[node] = l
	}
	old := l.addr
	l.addr = addr
	if l.dialer && r.runCtx != nil {
		if !l.dialing {
			r.startLink(l)
		} else if old != addr {
			l.redial()
		}
	}
	return nil
}

// RemovePeer closes the link to node and forgets it; channels stop
// relaying to it.
func (r *Relay) RemovePeer(node string) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return errClosed
	}
	l := r.peers[node]
	if l == nil {
		r.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrUnknownPeer, node)
	}
	delete(r.peers, node)
	chans := r.channelsOf(l)
	r.mu.Unlock()
	r.setAddr(netip.AddrPort{}, l) // forget its UDP address
	l.stop()
	for _, ch := range chans {
		r.detach(ch, l)
	}
	return nil
}

// OpenChannel starts relaying channel between this node and peer (which
// SetPeer named), both ways, until CloseChannel or until peer closes it.
// The first call for a channel calls Local.RelayChannel. Opening again is
// harmless.
func (r *Relay) OpenChannel(channel, peer string) error {
	if channel == "" || len(channel) > 255 {
		return fmt.Errorf("relay: channel id %q must be 1 to 255 bytes", channel)
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return errClosed
	}
	l := r.peers[peer]
	r.mu.Unlock()
	if l == nil {
		return fmt.Errorf("%w: %s", ErrUnknownPeer, peer)
	}
	ch, err := r.ensureChannel(channel)
	if err != nil {
		return err
	}
	if ch.attach(l) {
		if s := l.sess.Load(); s != nil {
			s.announce(ch)
		}
	}
	return nil
}

// CloseChannel ends the relay of channel on this node (its session ended):
// peers are told, remote tracks close and the sink's Close is called.
func (r *Relay) CloseChannel(channel string) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return errClosed
	}
	ch := r.channels[channel]
	r.mu.Unlock()
	if ch == nil {
		return fmt.Errorf("%w: %s", ErrNotRelayed, channel)
	}
	for _, l := range ch.linkList() {
		if s := l.sess.Load(); s != nil {
			s.control(KindChannelClose, channel, "", nil)
		}
	}
	r.dropChannel(ch)
	return nil
}

// AddLocalTrack starts relaying a local track of channel to every peer the
// channel is open with, now and later. keyframe is called (rate-limited)
// when a peer's subscribers need a keyframe; it must not block.
func (r *Relay) AddLocalTrack(channel string, info TrackInfo, keyframe KeyframeRequester) (*LocalTrack, error) {
	if err := info.validate(); err != nil {
		return nil, err
	}
	ch, err := r.channel(channel)
	if err != nil {
		return nil, err
	}
	t := &LocalTrack{r: r, ch: ch, info: info, keyframe: keyframe}
	if r.cfg.NACKBuffer > 0 {
		t.ring = newRing(r.cfg.NACKBuffer, maxPacket)
	}
	ch.mu.Lock()
	if ch.closed {
		ch.mu.Unlock()
		return nil, fmt.Errorf("%w: %s", ErrNotRelayed, channel)
	}
	if old := ch.out[info.ID]; old != nil {
		old.closed.Store(true)
	}
	ch.out[info.ID] = t
	ch.mu.Unlock()
	open := trackOpenFrame(channel, info)
	for _, l := range ch.linkList() {
		if s := l.sess.Load(); s != nil {
			s.enqueue(open)
		}
	}
	return t, nil
}

// SendMessage relays a local message of channel to every peer the channel
// is open with. It does not block: a link whose queue is full drops it
// (counted in LinkStats.Drops).
func (r *Relay) SendMessage(channel string, m Message) error {
	ch, err := r.channel(channel)
	if err != nil {
		return err
	}
	p, err := appendMessage(nil, m)
	if err != nil {
		return err
	}
	b := controlFrame(KindMessage, channel, "", p)
	for _, l := range ch.linkList() {
		if s := l.sess.Load(); s != nil && s.enqueue(b) {
			ch.stats.messagesOut.Add(1)
			continue
		}
		l.stats.drops.Add(1)
		ch.stats.drops.Add(1)
	}
	return nil
}

func (r *Relay) channel(name string) (*channel, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, errClosed
	}
	ch := r.channels[name]
	if ch == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotRelayed, name)
	}
	return ch, nil
}

// ensureChannel returns the channel, creating it and asking Local for its
// sink on first use.
func (r *Relay) ensureChannel(name string) (*channel, error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, errClosed
	}
	ch := r.channels[name]
	if ch == nil {
		ch = newChannel(name)
		r.chMu.Lock()
		r.channels[name] = ch
		r.chMu.Unlock()
	}
	r.mu.Unlock()
	ch.init.Do(func() {
		sink, err := r.cfg.Local.RelayChannel(r, name)
		if err != nil {
			ch.initErr = fmt.Errorf("relay: channel %s: %w", name, err)
			return
		}
		ch.mu.Lock()
		ch.sink = sink
		ch.mu.Unlock()
		r.log.Debug("channel relayed", "channel", name)
	})
	if ch.initErr != nil {
		r.removeChannel(ch)
		return nil, ch.initErr
	}
	return ch, nil
}

func (r *Relay) removeChannel(ch *channel) {
	r.mu.Lock()
	r.chMu.Lock()
	if r.channels[ch.name] == ch {
		delete(r.channels, ch.name)
	}
	r.chMu.Unlock()
	r.mu.Unlock()
}

// dropChannel ends a channel locally: its tracks stop, remote tracks close,
// the sink hears Close.
func (r *Relay) dropChannel(ch *channel) {
	r.removeChannel(ch)
	ch.mu.Lock()
	if ch.closed {
		ch.mu.Unlock()
		return
	}
	ch.closed = true
	for _, t := range ch.out {
		t.closed.Store(true)
	}
	sink := ch.sink
	ch.mu.Unlock()
	for _, l := range ch.linkList() {
		l.dropInbound(ch.name, nil)
	}
	ch.links.Store(&[]*link{})
	if sink != nil {
		sink.Close()
	}
	r.log.Debug("channel relay ended", "channel", ch.name)
}

// detach stops relaying ch with l (the peer closed it or went away); a
// channel left with no link ends.
func (r *Relay) detach(ch *channel, l *link) {
	l.dropInbound(ch.name, nil)
	if ch.detach(l) == 0 {
		r.dropChannel(ch)
	}
}

func (r *Relay) channelsOf(l *link) []*channel {
	var out []*channel
	for _, ch := range r.channels {
		for _, x := range ch.linkList() {
			if x == l {
				out = append(out, ch)
			}
		}
	}
	return out
}

// now is the wire clock: nanoseconds since the relay was made.
func (r *Relay) now() int64 { return int64(time.Since(r.epoch)) }

// channel is one relayed channel.
type channel struct {
	name    string
	init    sync.Once
	initErr error
	links   atomic.Pointer[[]*link] // copy on write; read per packet

	mu     sync.Mutex
	closed bool
	sink   ChannelSink
	out    map[string]*LocalTrack

	stats channelCounters
}

func newChannel(name string) *channel {
	ch := &channel{name: name, out: map[string]*LocalTrack{}}
	ch.links.Store(&[]*link{})
	return ch
}

func (ch *channel) linkList() []*link { return *ch.links.Load() }

// attach adds l and reports whether it was new.
func (ch *channel) attach(l *link) bool {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.closed {
		return false
	}
	cur := ch.linkList()
	for _, x := range cur {
		if x == l {
			return false
		}
	}
	next := append(append(make([]*link, 0, len(cur)+1), cur...), l)
	ch.links.Store(&next)
	return true
}

// detach removes l and returns how many links are left.
func (ch *channel) detach(l *link) int {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	cur := ch.linkList()
	next := make([]*link, 0, len(cur))
	for _, x := range cur {
		if x != l {
			next = append(next, x)
		}
	}
	ch.links.Store(&next)
	return len(next)
}

func (ch *channel) localTrack(id []byte) *LocalTrack {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.out[string(id)]
}

func (ch *channel) localTracks() []*LocalTrack {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	out := make([]*LocalTrack, 0, len(ch.out))
	for _, t := range ch.out {
		out = append(out, t)
	}
	return out
}

// LocalTrack is a local track the relay sends to the channel's peers. Get
// one from Relay.AddLocalTrack.
type LocalTrack struct {
	r        *Relay
	ch       *channel
	info     TrackInfo
	keyframe KeyframeRequester
	ring     *ring
	closed   atomic.Bool
}

// Info returns the track's description.
func (t *LocalTrack) Info() TrackInfo { return t.info }

// WriteRTP sends one RTP packet of the track to every peer the channel is
// open with, and keeps a copy to answer NACKs. It allocates nothing, does
// not block on the network and does not keep pkt; it is safe for
// concurrent use. A link that is down, or whose send queue is full, drops
// the packet (counted in the stats) and WriteRTP returns an error for it.
func (t *LocalTrack) WriteRTP(pkt []byte) error {
	if t.closed.Load() {
		return errClosed
	}
	if len(pkt) > maxPacket {
		t.ch.stats.drops.Add(1)
		return ErrTooLarge
	}
	if t.ring != nil {
		t.ring.put(pkt)
	}
	var err error
	for _, l := range t.ch.linkList() {
		if e := l.sendRTP(t.ch, t.info.ID, pkt, 0); e != nil && err == nil {
			err = e
		}
	}
	return err
}

// Close stops relaying the track; peers remove it. Safe to call twice.
func (t *LocalTrack) Close() error {
	if t.closed.Swap(true) {
		return nil
	}
	t.ch.mu.Lock()
	if t.ch.out[t.info.ID] == t {
		delete(t.ch.out, t.info.ID)
	}
	t.ch.mu.Unlock()
	b := controlFrame(KindTrackClose, t.ch.name, t.info.ID, nil)
	for _, l := range t.ch.linkList() {
		if s := l.sess.Load(); s != nil {
			s.enqueue(b)
		}
	}
	return nil
}

// requestKeyframe passes a peer's keyframe request to the publisher. Each
// peer already sends at most one per KeyframeInterval; the SFU coalesces
// the requests of several peers with its local subscribers' ones.
func (t *LocalTrack) requestKeyframe() {
	if t.keyframe != nil {
		t.keyframe.RequestKeyframe()
	}
}

// rateLimit reports whether an event at now may pass given the last one
// that did, and records it if so.
func rateLimit(last *atomic.Int64, now, interval int64) bool {
	for {
		prev := last.Load()
		if prev != 0 && now-prev < interval {
			return false
		}
		if now == 0 {
			now = 1 // 0 means never
		}
		if last.CompareAndSwap(prev, now) {
			return true
		}
	}
}
