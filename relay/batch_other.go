//go:build !linux

package relay

import (
	"net"
	"net/netip"
)

// Elsewhere than Linux, batches are of one datagram per system call.
type batchIO struct {
	c   *net.UDPConn
	dst netip.AddrPort
}

func newBatchIO(c *net.UDPConn, _ int) (*batchIO, error) { return &batchIO{c: c}, nil }

func (b *batchIO) enableGRO() {}

func (b *batchIO) segSize(int) int { return 0 }

func (b *batchIO) setDest(ap netip.AddrPort) { b.dst = ap }

func (b *batchIO) writeBatch(bufs [][]byte) (int, error) {
	for i, p := range bufs {
		if _, err := b.c.WriteToUDPAddrPort(p, b.dst); err != nil {
			return i, err
		}
	}
	return len(bufs), nil
}

func (b *batchIO) readBatch(bufs [][]byte, sizes []int, from []netip.AddrPort) (int, error) {
	n, ap, err := b.c.ReadFromUDPAddrPort(bufs[0])
	if err != nil {
		return 0, err
	}
	sizes[0], from[0] = n, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	return 1, nil
}
