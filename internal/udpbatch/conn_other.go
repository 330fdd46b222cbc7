//go:build !linux

package udpbatch

import (
	"errors"
	"net"
	"net/netip"
)

// ErrUnsupported is NewConn's error where the system has no batched sends.
var ErrUnsupported = errors.New("udpbatch: batched sends need Linux")

type sender struct{}

func newSender(*net.UDPConn) (*sender, error) { return nil, ErrUnsupported }

func (*sender) flush(*Conn) {}

func (*sender) write(c *Conn, b []byte, addr netip.AddrPort) (int, error) {
	return c.c.WriteToUDPAddrPort(b, addr)
}

func (*sender) read(c *Conn, b []byte) (int, netip.AddrPort, error) {
	return c.c.ReadFromUDPAddrPort(b)
}
