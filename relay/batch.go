package relay

import (
	"net"
	"net/netip"
)

// batchIO is one goroutine's batch reader or writer on the relay's UDP
// socket. On Linux a *net.UDPConn gets sendmmsg and recvmmsg, with GSO and
// GRO (batch_linux.go); anything else, one datagram per call (singleIO).
type batchIO interface {
	// setDest sets where writeBatch sends.
	setDest(ap netip.AddrPort)
	// writeBatch sends bufs to the destination and returns how many went.
	writeBatch(bufs [][]byte) (int, error)
	// readBatch receives up to len(bufs) datagrams, waiting for the
	// first; sizes and from are filled for each.
	readBatch(bufs [][]byte, sizes []int, from []netip.AddrPort) (int, error)
	// enableGRO lets readBatch take runs of equal-sized datagrams from one
	// source as one buffer, where the system can.
	enableGRO()
	// segSize is the size of each datagram in readBatch's buffer i (the
	// last may be shorter), or 0 if the buffer holds one datagram.
	segSize(i int) int
}

// singleIO reads and writes one datagram per call.
type singleIO struct {
	c   net.PacketConn
	ap  addrPortConn // c, if it has the allocation-free methods
	dst netip.AddrPort
	to  net.Addr // dst, for a c without them
}

// addrPortConn is the part of *net.UDPConn that reads and writes without
// allocating.
type addrPortConn interface {
	ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error)
	WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error)
}

func newSingleIO(c net.PacketConn) *singleIO {
	b := &singleIO{c: c}
	b.ap, _ = c.(addrPortConn)
	return b
}

func (b *singleIO) enableGRO() {}

func (b *singleIO) segSize(int) int { return 0 }

func (b *singleIO) setDest(ap netip.AddrPort) {
	b.dst, b.to = ap, net.UDPAddrFromAddrPort(ap)
}

func (b *singleIO) writeBatch(bufs [][]byte) (int, error) {
	for i, p := range bufs {
		var err error
		if b.ap != nil {
			_, err = b.ap.WriteToUDPAddrPort(p, b.dst)
		} else {
			_, err = b.c.WriteTo(p, b.to)
		}
		if err != nil {
			return i, err
		}
	}
	return len(bufs), nil
}

func (b *singleIO) readBatch(bufs [][]byte, sizes []int, from []netip.AddrPort) (int, error) {
	var n int
	var ap netip.AddrPort
	var err error
	if b.ap != nil {
		n, ap, err = b.ap.ReadFromUDPAddrPort(bufs[0])
	} else {
		var a net.Addr
		n, a, err = b.c.ReadFrom(bufs[0])
		ap = addrPortOf(a)
	}
	if err != nil {
		return 0, err
	}
	sizes[0], from[0] = n, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	return 1, nil
}
