package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-sfu/shoal/internal/clusterkey"
)

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

// now is the wire clock: nanoseconds since the relay was made.
func (r *Relay) now() int64 { return int64(time.Since(r.epoch)) }
