//go:build !linux

package relay

import "net"

// Elsewhere than Linux, batches are of one datagram per system call.
func newBatchIO(c net.PacketConn, _ int) (batchIO, error) { return newSingleIO(c), nil }
