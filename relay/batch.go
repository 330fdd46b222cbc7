package relay

import (
	"net"
	"net/netip"

	"github.com/shoal-sfu/shoal/internal/udpbatch"
)

// batchIO is one goroutine's batch reader or writer on the relay's UDP
// socket: internal/udpbatch's IO, which the SFU's mux socket shares. On
// Linux a *net.UDPConn gets sendmmsg and recvmmsg, with GSO and GRO;
// anything else, one datagram per call.
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

// newBatchIO batches up to n datagrams per system call on c.
func newBatchIO(c net.PacketConn, n int) (batchIO, error) {
	b, err := udpbatch.New(c, n)
	if err != nil {
		return nil, err
	}
	return ioAdapter{b}, nil
}

type ioAdapter struct{ b udpbatch.IO }

func (a ioAdapter) setDest(ap netip.AddrPort)             { a.b.SetDest(ap) }
func (a ioAdapter) writeBatch(bufs [][]byte) (int, error) { return a.b.WriteBatch(bufs) }
func (a ioAdapter) enableGRO()                            { a.b.EnableGRO() }
func (a ioAdapter) segSize(i int) int                     { return a.b.SegSize(i) }
func (a ioAdapter) readBatch(bufs [][]byte, sizes []int, from []netip.AddrPort) (int, error) {
	return a.b.ReadBatch(bufs, sizes, from)
}
