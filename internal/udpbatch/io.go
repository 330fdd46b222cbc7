package udpbatch

import (
	"net"
	"net/netip"
)

// IO is one goroutine's batch reader or writer on a UDP socket, for one
// destination. On Linux a *net.UDPConn gets sendmmsg and recvmmsg, with GSO
// and GRO (io_linux.go); anything else, one datagram per call.
type IO interface {
	// SetDest sets where WriteBatch sends.
	SetDest(ap netip.AddrPort)
	// WriteBatch sends bufs to the destination and returns how many went.
	WriteBatch(bufs [][]byte) (int, error)
	// ReadBatch receives up to len(bufs) datagrams, waiting for the
	// first; sizes and from are filled for each.
	ReadBatch(bufs [][]byte, sizes []int, from []netip.AddrPort) (int, error)
	// EnableGRO lets ReadBatch take runs of equal-sized datagrams from one
	// source as one buffer, where the system can.
	EnableGRO()
	// segSize is the size of each datagram in ReadBatch's buffer i (the
	// last may be shorter), or 0 if the buffer holds one datagram.
	SegSize(i int) int
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

func (b *singleIO) EnableGRO() {}

func (b *singleIO) SegSize(int) int { return 0 }

func (b *singleIO) SetDest(ap netip.AddrPort) {
	b.dst, b.to = ap, net.UDPAddrFromAddrPort(ap)
}

func (b *singleIO) WriteBatch(bufs [][]byte) (int, error) {
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

func (b *singleIO) ReadBatch(bufs [][]byte, sizes []int, from []netip.AddrPort) (int, error) {
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

// addrPortOf returns a's IP (unmapped) and port, or the zero AddrPort for
// an address that is not UDP.
func addrPortOf(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case nil:
		return ap
	case *net.UDPAddr:
		ap = a.AddrPort()
	default:
		ap, _ = netip.ParseAddrPort(a.String())
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
