package relay

import (
	"context"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// blackHole is a test seam: a network black hole on one link, as if its
// cable were pulled without a FIN or an RST. While a link's hole is open,
// its control stream neither delivers nor sends (writes vanish, reads wait
// for their deadline or for the hole to close), a dial towards the peer
// gets no answer (it times out as an unanswered SYN would) and its UDP
// datagrams are dropped both ways. The relay is not told: it has to notice
// the silence itself (LinkTimeout), as on a real network.
//
// Only tests open one (link.openHole). Unused, it costs one atomic load per
// received datagram, per send batch and per control-stream read or write,
// and nothing else: no lock and no allocation on the per-packet path.
type blackHole struct {
	shut chan struct{} // closed when the hole closes
}

// openHole opens a black hole on the link (a test seam). Opening an open
// hole does nothing.
func (l *link) openHole() {
	l.hole.CompareAndSwap(nil, &blackHole{shut: make(chan struct{})})
}

// closeHole closes the link's black hole; traffic flows again.
func (l *link) closeHole() {
	if h := l.hole.Swap(nil); h != nil {
		close(h.shut)
	}
}

// holeDial stands for the TCP connect of a dial into the black hole: no
// answer until timeout (an error like the dialer's own "i/o timeout"), or
// until the hole closes (a retransmitted SYN gets through). Without a hole
// it returns at once.
func (l *link) holeDial(ctx context.Context, timeout time.Duration) error {
	h := l.hole.Load()
	if h == nil {
		return nil
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-h.shut:
		return nil
	case <-ctx.Done():
		return &net.OpError{Op: "dial", Net: "tcp", Err: ctx.Err()}
	case <-t.C:
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.ErrDeadlineExceeded}
	}
}

// holeConn is a link's control connection under TLS, passing through
// unless the link's black hole is open. The accepting side learns the link
// from the peer's hello: until then the connection is no link's and never
// in a hole.
type holeConn struct {
	net.Conn
	link     atomic.Pointer[link]
	deadline atomic.Int64  // read deadline in Unix nanoseconds; 0: none
	moved    chan struct{} // the read deadline changed (buffered 1)
	closed   chan struct{}
	once     sync.Once
}

func newHoleConn(c net.Conn, l *link) *holeConn {
	hc := &holeConn{Conn: c, moved: make(chan struct{}, 1), closed: make(chan struct{})}
	if l != nil {
		hc.link.Store(l)
	}
	return hc
}

func (c *holeConn) hole() *blackHole {
	if l := c.link.Load(); l != nil {
		return l.hole.Load()
	}
	return nil
}

// Read reads from the connection, or, while the hole is open, waits for the
// read deadline (a timeout, as from a silent peer) or for the hole to close.
// What a read already under way when the hole opened brings in (bytes, or
// the EOF of a peer that gave up) is held back the same way: it arrived
// through the hole, so it counts only once the hole has closed.
func (c *holeConn) Read(b []byte) (int, error) {
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

// wait blocks while h is open; nil means look again (the hole closed or the
// deadline moved).
func (c *holeConn) wait(h *blackHole) error {
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

// Write sends b, or, while the hole is open, reports it sent: the bytes
// vanish, as into the send buffer of a socket whose cable was pulled.
func (c *holeConn) Write(b []byte) (int, error) {
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

func (c *holeConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

func (c *holeConn) SetDeadline(t time.Time) error {
	c.setReadDeadline(t)
	return c.Conn.SetDeadline(t)
}

func (c *holeConn) SetReadDeadline(t time.Time) error {
	c.setReadDeadline(t)
	return c.Conn.SetReadDeadline(t)
}

func (c *holeConn) setReadDeadline(t time.Time) {
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

func (c *holeConn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
