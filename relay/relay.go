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

	"golang.org/x/sync/errgroup"

	"github.com/shoal-sfu/shoal/internal/clusterkey"
	"github.com/shoal-sfu/shoal/internal/lifecycle"
	"github.com/shoal-sfu/shoal/internal/lograte"
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
	cfg Config
	log *slog.Logger
	// refusedLog limits the lines of refused control frames, which a
	// peer causes at will (control.go).
	refusedLog *lograte.Limiter
	id         *clusterkey.Identity
	epoch      time.Time       // timestamps on the wire are nanoseconds since epoch
	state      lifecycle.State // Listen starts it, Close closes it

	mu       sync.Mutex
	serving  bool
	runCtx   context.Context // set while Serve serves; parent of the links' goroutines
	cancel   context.CancelFunc
	peers    map[string]*link
	channels map[string]*channel
	udp      net.PacketConn // bound by Listen
	tcp      net.Listener
	addr     netip.AddrPort
	wg       sync.WaitGroup // every link goroutine Serve starts, directly or not
	stopped  chan struct{}  // closed when Serve returns

	chMu   sync.RWMutex // guards channels for the receive path
	byAddr atomic.Pointer[map[netip.AddrPort]*link]

	// fanOuts holds a token per remote track's fan-out running now: at
	// most this many run at once (inbound.go).
	fanOuts chan struct{}

	handshakeFailures atomic.Uint64
	unknownSource     atomic.Uint64
	drops             dropCounters // what no link was involved in (TooLarge)
}

// New checks cfg and returns a relay. It starts nothing: call Listen, then
// Serve (or Run, which does both).
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
		cfg:        cfg,
		log:        cfg.Logger.With("component", "relay", "node", cfg.NodeName),
		refusedLog: lograte.New(lograte.DefaultBurst, lograte.DefaultInterval),
		id:         id,
		epoch:      time.Now(),
		peers:      map[string]*link{},
		channels:   map[string]*channel{},
		stopped:    make(chan struct{}),
		fanOuts:    make(chan struct{}, fanOutSlots(cfg)),
	}
	empty := map[netip.AddrPort]*link{}
	r.byAddr.Store(&empty)
	return r, nil
}

// Addr returns the address the relay listens on once Listen has returned
// nil; before, the zero AddrPort.
func (r *Relay) Addr() netip.AddrPort {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.addr
}

// Listen binds the relay's UDP and TCP sockets on Config.ListenAddr (one
// port for both); when it returns nil, Addr is valid and peers may dial
// in, though links are served only once Serve runs. It may be called
// once: a second call fails ("already started"), as does one after Close
// (with an error wrapping net.ErrClosed).
func (r *Relay) Listen() error {
	if err := r.state.Start("relay: Listen"); err != nil {
		return err
	}
	udp, tcp, err := listen(r.cfg.Net, r.cfg.ListenAddr)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state.Closed() { // Close ran meanwhile
		udp.Close()
		tcp.Close()
		return errClosed
	}
	r.udp, r.tcp = udp, tcp
	r.addr = netip.AddrPortFrom(r.cfg.ListenAddr.Addr(), portOf(udp.LocalAddr()))
	r.log.Info("relay listening", "addr", r.addr)
	return nil
}

// Serve serves links on the sockets Listen bound until ctx ends or Close
// is called, and returns nil then. If a socket fails first (the UDP socket
// or the TCP listener is closed under it, or accepting fails), Serve stops
// every link and returns that error. It may be called once, after a
// successful Listen; it fails at once otherwise, and after Close with an
// error wrapping net.ErrClosed.
func (r *Relay) Serve(ctx context.Context) error {
	r.mu.Lock()
	switch {
	case r.state.Closed():
		r.mu.Unlock()
		return errClosed
	case r.udp == nil:
		r.mu.Unlock()
		return errors.New("relay: Serve needs a successful Listen first")
	case r.serving:
		r.mu.Unlock()
		return errors.New("relay: Serve called twice")
	}
	r.serving = true
	defer close(r.stopped)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, ctx := errgroup.WithContext(ctx)
	r.runCtx, r.cancel = ctx, cancel
	udp, tcp := r.udp, r.tcp
	for _, l := range r.peers {
		r.startLink(l)
	}
	r.mu.Unlock()

	g.Go(func() error { return r.readDatagrams(ctx, udp) })
	g.Go(func() error { return r.accept(ctx, tcp) })
	g.Go(func() error {
		<-ctx.Done() // Close, the caller's ctx, or a socket failed
		r.mu.Lock()
		r.runCtx = nil // no new links from now on
		r.mu.Unlock()
		udp.Close()
		tcp.Close()
		return nil
	})
	err := g.Wait()
	r.wg.Wait()
	return err
}

// Run is Listen then Serve.
func (r *Relay) Run(ctx context.Context) error {
	if err := r.Listen(); err != nil {
		return err
	}
	return r.Serve(ctx)
}

// Close stops the relay: its sockets close, links close, relayed channels
// end (their remote tracks are closed and their sinks told). It waits for
// Serve to return. It is safe to call more than once.
func (r *Relay) Close() error {
	if first, _ := r.state.Close(); !first {
		return nil
	}
	r.mu.Lock()
	serving := r.serving
	if r.cancel != nil {
		r.cancel()
	}
	if !serving && r.udp != nil { // bound but never served
		r.udp.Close()
		r.tcp.Close()
	}
	chans := make([]*channel, 0, len(r.channels))
	for _, ch := range r.channels {
		chans = append(chans, ch)
	}
	r.mu.Unlock()
	if serving {
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
	if r.state.Closed() {
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
	if r.state.Closed() {
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

// peer returns the link to node, or an error if SetPeer has not named it
// or the relay is closed.
func (r *Relay) peer(node string) (*link, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state.Closed() {
		return nil, errClosed
	}
	l := r.peers[node]
	if l == nil {
		return nil, fmt.Errorf("%w: %s", ErrUnknownPeer, node)
	}
	return l, nil
}
