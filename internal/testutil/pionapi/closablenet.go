package pionapi

import (
	"net"
	"sync"

	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"
)

// ClosableNet is the host's network for pion (an sfu.Config.Net) that keeps
// the UDP sockets opened through it, so that a test can close them under
// their user with CloseUDP, as a socket that fails.
type ClosableNet struct {
	*stdnet.Net
	mu    sync.Mutex
	conns []net.PacketConn
}

// NewClosableNet returns a ClosableNet over the host's network.
func NewClosableNet() (*ClosableNet, error) {
	n, err := stdnet.NewNet()
	if err != nil {
		return nil, err
	}
	return &ClosableNet{Net: n}, nil
}

// ListenUDP opens a UDP socket of the host, and keeps it.
func (n *ClosableNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.Net.ListenUDP(network, laddr)
	if err == nil {
		n.mu.Lock()
		n.conns = append(n.conns, c)
		n.mu.Unlock()
	}
	return c, err
}

// CloseUDP closes every UDP socket opened so far and returns how many.
func (n *ClosableNet) CloseUDP() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, c := range n.conns {
		c.Close()
	}
	k := len(n.conns)
	n.conns = nil
	return k
}
