package multiclustertest

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/shoal-sfu/shoal/relay"
)

// delayNet is a relay.Network that delays what crosses between regions:
// each datagram is sent d later (a copy, on a timer), and each write of a
// control stream reaches the wire d later, in order. Within a region nothing is delayed. It
// stands in for netem, which this kernel lacks; it delays the relay only,
// not the gossip.
type delayNet struct {
	inner relay.Network
	d     time.Duration
	far   func(a, b netip.Addr) bool
}

func (n *delayNet) ListenUDP(laddr netip.AddrPort) (net.PacketConn, error) {
	pc, err := n.inner.ListenUDP(laddr)
	if err != nil {
		return nil, err
	}
	return &delayPacketConn{PacketConn: pc, n: n, local: laddr.Addr()}, nil
}

func (n *delayNet) ListenTCP(laddr netip.AddrPort) (net.Listener, error) {
	ln, err := n.inner.ListenTCP(laddr)
	if err != nil {
		return nil, err
	}
	return delayListener{Listener: ln, n: n}, nil
}

func (n *delayNet) DialTCP(ctx context.Context, laddr, raddr netip.AddrPort) (net.Conn, error) {
	c, err := n.inner.DialTCP(ctx, laddr, raddr)
	if err != nil {
		return nil, err
	}
	return n.wrap(c), nil
}

func (n *delayNet) wrap(c net.Conn) net.Conn {
	l, _ := netip.ParseAddrPort(c.LocalAddr().String())
	r, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	if !n.far(l.Addr().Unmap(), r.Addr().Unmap()) {
		return c
	}
	return newDelayConn(c, n.d)
}

type delayListener struct {
	net.Listener
	n *delayNet
}

func (l delayListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.n.wrap(c), nil
}

// delayConn delays its writes by d without limiting its throughput: each
// write is queued with its due time, and one goroutine (ended by Close)
// writes them when due.
type delayConn struct {
	net.Conn
	d    time.Duration
	q    chan delayed
	done chan struct{}
	once sync.Once
}

type delayed struct {
	b  []byte
	at time.Time
}

func newDelayConn(c net.Conn, d time.Duration) *delayConn {
	dc := &delayConn{Conn: c, d: d, q: make(chan delayed, 4096), done: make(chan struct{})}
	go dc.pump()
	return dc
}

func (c *delayConn) Write(b []byte) (int, error) {
	select {
	case c.q <- delayed{bytes.Clone(b), time.Now().Add(c.d)}:
		return len(b), nil
	case <-c.done:
		return 0, net.ErrClosed
	}
}

func (c *delayConn) pump() {
	for {
		select {
		case <-c.done:
			return
		case w := <-c.q:
			t := time.NewTimer(time.Until(w.at))
			select {
			case <-c.done:
				t.Stop()
				return
			case <-t.C:
			}
			if _, err := c.Conn.Write(w.b); err != nil {
				c.Conn.Close() // the reader sees it, as with a broken connection
				return
			}
		}
	}
}

func (c *delayConn) Close() error {
	c.once.Do(func() { close(c.done) })
	return c.Conn.Close()
}

type delayPacketConn struct {
	net.PacketConn
	n     *delayNet
	local netip.Addr
}

func (c *delayPacketConn) WriteTo(b []byte, to net.Addr) (int, error) {
	ap, err := netip.ParseAddrPort(to.String())
	if err != nil || !c.n.far(c.local, ap.Addr().Unmap()) {
		return c.PacketConn.WriteTo(b, to)
	}
	cp := bytes.Clone(b)
	time.AfterFunc(c.n.d, func() { _, _ = c.PacketConn.WriteTo(cp, to) })
	return len(b), nil
}
