package relay

import (
	"context"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-sfu/shoal/internal/faultpair"
)

// FaultNet is a Network for tests that pulls cables: between two blocked
// addresses traffic vanishes both ways without a FIN or an RST, until they
// are unblocked. While a pair is blocked, the TCP connections between them
// stay open but silent (writes report success and vanish; reads wait for
// their deadline or for the block to end), a dial from one to the other
// gets no answer (it fails when its context ends, as an unanswered SYN
// times out) and their UDP datagrams are dropped. The relay is not told:
// it has to notice the silence itself (Config.LinkTimeout), as on a real
// network.
//
// Give the same FaultNet to the nodes of a test through Config.Net; each
// needs its own IP in Config.ListenAddr (testutil.LoopbackIP). Its sockets
// are the host's, wrapped: the UDP one is read and written one datagram
// per call. Its methods are safe for concurrent use.
type FaultNet struct {
	inner Network
	mu    sync.Mutex
	holes map[faultpair.Key]*hole
}

var _ Network = (*FaultNet)(nil)

// hole is one blocked pair; shut closes when it is unblocked.
type hole struct{ shut chan struct{} }

// NewFaultNet returns a FaultNet over the host's network that blocks
// nothing.
func NewFaultNet() *FaultNet {
	return &FaultNet{inner: hostNet{}, holes: map[faultpair.Key]*hole{}}
}

// Block makes all traffic between a and b vanish, both ways. Blocking a
// blocked pair does nothing.
func (f *FaultNet) Block(a, b netip.Addr) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if k := faultpair.Of(a, b); f.holes[k] == nil {
		f.holes[k] = &hole{shut: make(chan struct{})}
	}
}

// Unblock lets traffic between a and b flow again. What was written while
// they were blocked stays lost.
func (f *FaultNet) Unblock(a, b netip.Addr) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := faultpair.Of(a, b)
	if h := f.holes[k]; h != nil {
		close(h.shut)
		delete(f.holes, k)
	}
}

// Heal unblocks every pair.
func (f *FaultNet) Heal() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, h := range f.holes {
		close(h.shut)
		delete(f.holes, k)
	}
}

// Blocked reports whether traffic between a and b vanishes.
func (f *FaultNet) Blocked(a, b netip.Addr) bool { return f.hole(a, b) != nil }

func (f *FaultNet) hole(a, b netip.Addr) *hole {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.holes[faultpair.Of(a, b)]
}

// ListenUDP implements Network.
func (f *FaultNet) ListenUDP(laddr netip.AddrPort) (net.PacketConn, error) {
	c, err := f.inner.ListenUDP(laddr)
	if err != nil {
		return nil, err
	}
	return &faultPacketConn{PacketConn: c, f: f, local: addrPortOf(c.LocalAddr()).Addr()}, nil
}

// ListenTCP implements Network.
func (f *FaultNet) ListenTCP(laddr netip.AddrPort) (net.Listener, error) {
	ln, err := f.inner.ListenTCP(laddr)
	if err != nil {
		return nil, err
	}
	return faultListener{Listener: ln, f: f}, nil
}

// DialTCP implements Network. A dial between blocked addresses waits,
// unanswered, until ctx ends or the block does.
func (f *FaultNet) DialTCP(ctx context.Context, laddr, raddr netip.AddrPort) (net.Conn, error) {
	for h := f.hole(laddr.Addr(), raddr.Addr()); h != nil; h = f.hole(laddr.Addr(), raddr.Addr()) {
		select {
		case <-h.shut: // a retransmitted SYN gets through
		case <-ctx.Done():
			err := ctx.Err()
			if err == context.DeadlineExceeded {
				err = os.ErrDeadlineExceeded // as the host's dialer says it
			}
			return nil, &net.OpError{Op: "dial", Net: "tcp", Source: net.TCPAddrFromAddrPort(laddr), Addr: net.TCPAddrFromAddrPort(raddr), Err: err}
		}
	}
	c, err := f.inner.DialTCP(ctx, laddr, raddr)
	if err != nil {
		return nil, err
	}
	return f.wrap(c), nil
}

// faultPacketConn drops the datagrams to and from blocked addresses.
type faultPacketConn struct {
	net.PacketConn
	f     *FaultNet
	local netip.Addr
}

func (c *faultPacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, from, err := c.PacketConn.ReadFrom(b)
		if err == nil && c.f.Blocked(c.local, addrPortOf(from).Addr()) {
			continue // lost on the way: never arrived
		}
		return n, from, err
	}
}

func (c *faultPacketConn) WriteTo(b []byte, to net.Addr) (int, error) {
	if c.f.Blocked(c.local, addrPortOf(to).Addr()) {
		return len(b), nil // gone without a trace
	}
	return c.PacketConn.WriteTo(b, to)
}

type faultListener struct {
	net.Listener
	f *FaultNet
}

func (l faultListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.f.wrap(c), nil
}

// faultConn is a TCP connection that falls silent while its ends are
// blocked.
type faultConn struct {
	net.Conn
	f             *FaultNet
	local, remote netip.Addr
	deadline      atomic.Int64  // read deadline in Unix nanoseconds; 0: none
	moved         chan struct{} // the read deadline changed (buffered 1)
	closed        chan struct{}
	once          sync.Once
}

func (f *FaultNet) wrap(c net.Conn) *faultConn {
	return &faultConn{Conn: c, f: f,
		local: addrPortOf(c.LocalAddr()).Addr(), remote: addrPortOf(c.RemoteAddr()).Addr(),
		moved: make(chan struct{}, 1), closed: make(chan struct{})}
}

func (c *faultConn) hole() *hole { return c.f.hole(c.local, c.remote) }

// Read reads from the connection, or, while blocked, waits for the read
// deadline (a timeout, as from a silent peer) or for the block to end.
// What a read already under way when the block began brings in (bytes, or
// the EOF of a peer that gave up) is held back the same way: it arrived
// through the block, so it counts only once the block has ended.
func (c *faultConn) Read(b []byte) (int, error) {
	for {
		if h := c.hole(); h != nil {
			if err := c.wait(h); err != nil {
				return 0, err
			}
			continue
		}
		n, err := c.Conn.Read(b)
		for h := c.hole(); h != nil; h = c.hole() {
			if werr := c.wait(h); werr != nil {
				return n, werr // the bytes stay in b; the read ends with the timeout
			}
		}
		return n, err
	}
}

// wait blocks while h lasts; nil means look again (the block ended or the
// deadline moved).
func (c *faultConn) wait(h *hole) error {
	var expired <-chan time.Time
	if d := c.deadline.Load(); d != 0 {
		left := time.Until(time.Unix(0, d))
		if left <= 0 {
			return c.opError("read", os.ErrDeadlineExceeded)
		}
		t := time.NewTimer(left)
		defer t.Stop()
		expired = t.C
	}
	select {
	case <-h.shut:
		return nil
	case <-c.moved:
		return nil
	case <-expired:
		return c.opError("read", os.ErrDeadlineExceeded)
	case <-c.closed:
		return c.opError("read", net.ErrClosed)
	}
}

// Write sends b, or, while blocked, reports it sent: the bytes vanish, as
// into the send buffer of a socket whose cable was pulled.
func (c *faultConn) Write(b []byte) (int, error) {
	if c.hole() != nil {
		select {
		case <-c.closed:
			return 0, c.opError("write", net.ErrClosed)
		default:
			return len(b), nil
		}
	}
	return c.Conn.Write(b)
}

func (c *faultConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

func (c *faultConn) SetDeadline(t time.Time) error {
	c.setReadDeadline(t)
	return c.Conn.SetDeadline(t)
}

func (c *faultConn) SetReadDeadline(t time.Time) error {
	c.setReadDeadline(t)
	return c.Conn.SetReadDeadline(t)
}

func (c *faultConn) setReadDeadline(t time.Time) {
	var d int64
	if !t.IsZero() {
		d = t.UnixNano()
	}
	c.deadline.Store(d)
	select {
	case c.moved <- struct{}{}:
	default:
	}
}

func (c *faultConn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
