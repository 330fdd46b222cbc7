//go:build !linux

package udpbatch

import "net"

// New returns an IO on c; elsewhere than Linux, batches are of one datagram
// per system call.
func New(c net.PacketConn, _ int) (IO, error) { return newSingleIO(c), nil }
