package relay

import (
	"context"
	"fmt"
	"net"
	"net/netip"
)

// Network is what the relay binds its sockets on and dials its peers
// with. Config.Net nil is the host's network; tests pass a FaultNet to
// make links go silent.
type Network interface {
	// ListenUDP binds the datagram socket on laddr (port 0: any free
	// port). A *net.UDPConn gets batched system calls on Linux (sendmmsg,
	// recvmmsg, UDP GSO and GRO); any other PacketConn is read and
	// written one datagram per call.
	ListenUDP(laddr netip.AddrPort) (net.PacketConn, error)
	// ListenTCP binds the control-stream listener on laddr.
	ListenTCP(laddr netip.AddrPort) (net.Listener, error)
	// DialTCP connects to raddr from laddr (an invalid laddr: any local
	// address) and gives up when ctx ends, as net.Dialer.DialContext does.
	DialTCP(ctx context.Context, laddr, raddr netip.AddrPort) (net.Conn, error)
}

// hostNet is the host's network, Config.Net's default.
type hostNet struct{}

func (hostNet) ListenUDP(laddr netip.AddrPort) (net.PacketConn, error) {
	return net.ListenUDP("udp", net.UDPAddrFromAddrPort(laddr))
}

func (hostNet) ListenTCP(laddr netip.AddrPort) (net.Listener, error) {
	return net.Listen("tcp", laddr.String())
}

func (hostNet) DialTCP(ctx context.Context, laddr, raddr netip.AddrPort) (net.Conn, error) {
	var d net.Dialer
	if laddr.IsValid() {
		d.LocalAddr = net.TCPAddrFromAddrPort(laddr)
	}
	return d.DialContext(ctx, "tcp", raddr.String())
}

// listen binds UDP and TCP on one port; with port 0 the UDP port is picked
// first and TCP takes the same.
func listen(nw Network, ap netip.AddrPort) (net.PacketConn, net.Listener, error) {
	for attempt := 0; ; attempt++ {
		udp, err := nw.ListenUDP(ap)
		if err != nil {
			return nil, nil, fmt.Errorf("relay: listen udp %v: %w", ap, err)
		}
		if b, ok := udp.(interface {
			SetReadBuffer(int) error
			SetWriteBuffer(int) error
		}); ok {
			_ = b.SetReadBuffer(4 << 20)
			_ = b.SetWriteBuffer(4 << 20)
		}
		port := portOf(udp.LocalAddr())
		tcp, err := nw.ListenTCP(netip.AddrPortFrom(ap.Addr(), port))
		if err == nil {
			return udp, tcp, nil
		}
		udp.Close()
		if ap.Port() != 0 || attempt == 10 {
			return nil, nil, fmt.Errorf("relay: listen tcp %v: %w", ap, err)
		}
	}
}

// addrPortOf returns a's IP (unmapped) and port, or the zero AddrPort for
// an address that is neither UDP nor TCP.
func addrPortOf(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case nil:
		return ap
	case *net.UDPAddr:
		ap = a.AddrPort()
	case *net.TCPAddr:
		ap = a.AddrPort()
	default:
		ap, _ = netip.ParseAddrPort(a.String())
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func portOf(a net.Addr) uint16 { return addrPortOf(a).Port() }
