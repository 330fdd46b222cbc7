package udpbatch

import (
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"
)

// A Conn is a UDP socket whose sends are gathered into batches while a
// burst is held (Hold, Release) and sent with one system call each
// (sendmmsg on Linux), every datagram to its own destination: what an SFU's
// single media port needs, whose fan-out sends one packet to each of many
// subscribers. Outside a burst a datagram goes out at once, as with the
// socket itself.
//
// It is a net.PacketConn, and has ReadFromAddrPort and WriteToAddrPort (the
// allocation-free pair pion's ICE UDP mux uses). A datagram is copied into
// a preallocated slot of the batch being filled; a full batch, or the
// release of a burst, sends it from the goroutine that filled it, while
// other goroutines fill another batch. There are Batches batches of
// BatchLen slots: when all are being sent, a writer waits for one, so the
// memory is bounded and nothing is dropped for want of room. Datagrams
// larger than a slot go out alone.
//
// Batching costs a copy per datagram (about 1.2 KB, tens of nanoseconds)
// and saves, per datagram, most of a system call (a few microseconds on a
// VM). Sends from concurrent bursts may be reordered against each other
// (not the datagrams of one goroutine to one destination, which keep their
// order).
type Conn struct {
	c    *net.UDPConn
	impl *sender // the platform's batches, nil where there are none

	holds atomic.Int32

	// Counters: system calls that sent batches, datagrams sent in them,
	// datagrams that failed (dropped, counted).
	calls, datagrams, failed atomic.Uint64
}

const (
	// BatchLen is the datagrams per batch (and per sendmmsg).
	BatchLen = 64
	// Batches is the number of batches: one filling, the rest in flight.
	Batches = 4
	// SlotSize is the largest datagram that is batched.
	SlotSize = 1500
)

var _ net.PacketConn = (*Conn)(nil)

// NewConn wraps c. Where the system has no batched sends (not Linux) it
// returns ErrUnsupported; the caller keeps using c.
func NewConn(c *net.UDPConn) (*Conn, error) {
	impl, err := newSender(c)
	if err != nil {
		return nil, err
	}
	return &Conn{c: c, impl: impl}, nil
}

// Hold starts a burst: the datagrams written until the matching Release
// are gathered into batches. Bursts of several goroutines may overlap; a
// datagram written by anyone while one is held waits for a Release or a
// full batch. A nil Conn ignores it.
func (c *Conn) Hold() {
	if c != nil {
		c.holds.Add(1)
	}
}

// Release ends a burst and sends what was gathered. A nil Conn ignores it.
func (c *Conn) Release() {
	if c == nil {
		return
	}
	c.holds.Add(-1)
	c.impl.flush(c)
}

// Flush sends what was gathered.
func (c *Conn) Flush() { c.impl.flush(c) }

// Stats are a Conn's counters.
type Stats struct {
	// Calls is the system calls that sent batches, Datagrams the
	// datagrams they sent (Datagrams/Calls is the mean batch).
	Calls, Datagrams uint64
	// Failed counts datagrams the system refused (dropped).
	Failed uint64
}

// Stats returns the counters.
func (c *Conn) Stats() Stats {
	return Stats{Calls: c.calls.Load(), Datagrams: c.datagrams.Load(), Failed: c.failed.Load()}
}

// WriteToAddrPort sends (or batches) b to addr. An error is returned for a
// datagram sent at once; one sent in a batch is counted in Stats.Failed if
// it fails.
func (c *Conn) WriteToAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	if len(b) == 0 || len(b) > SlotSize {
		c.Flush() // keep the order of what was gathered before it
		return c.c.WriteToUDPAddrPort(b, addr)
	}
	return c.impl.write(c, b, addr)
}

// WriteTo is WriteToAddrPort for a *net.UDPAddr; other addresses go out at
// once.
func (c *Conn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if a, ok := addr.(*net.UDPAddr); ok {
		return c.WriteToAddrPort(b, a.AddrPort())
	}
	c.Flush()
	return c.c.WriteTo(b, addr)
}

// ReadFromAddrPort reads a datagram (on Linux with a raw system call,
// conn_linux.go), allocating nothing.
func (c *Conn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	return c.impl.read(c, b)
}

// ReadFrom reads a datagram.
func (c *Conn) ReadFrom(b []byte) (int, net.Addr, error) { return c.c.ReadFrom(b) }

// Close sends what was gathered and closes the socket.
func (c *Conn) Close() error {
	c.Flush()
	return c.c.Close()
}

// SyscallConn returns the wrapped socket's raw connection, so that what
// checks a system socket (the SFU's media socket health, for one) sees
// through the wrapper.
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return c.c.SyscallConn() }

// LocalAddr is the socket's address.
func (c *Conn) LocalAddr() net.Addr { return c.c.LocalAddr() }

// SetDeadline sets the socket's deadlines; a batch's send waits at most
// until the write deadline.
func (c *Conn) SetDeadline(t time.Time) error { return c.c.SetDeadline(t) }

// SetReadDeadline sets the socket's read deadline.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.c.SetReadDeadline(t) }

// SetWriteDeadline sets the socket's write deadline.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.c.SetWriteDeadline(t) }
