package cluster

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/shoal-sfu/shoal/internal/faultpair"
)

// FaultNet is a fault-injecting network for tests: it drops all traffic
// between chosen pairs of node addresses (gossip packets and streams, Raft
// and the cluster RPC) until healed, and cuts the connections open between
// them when a pair is blocked. Give the same FaultNet to every node of a
// test cluster through Config.Faults; nodes must have distinct addresses
// (testutil.LoopbackIP). Its methods are safe for concurrent use.
type FaultNet struct {
	mu      sync.Mutex
	blocked map[faultpair.Key]bool
	conns   map[*faultConn]struct{}
}

// NewFaultNet returns a FaultNet that blocks nothing.
func NewFaultNet() *FaultNet {
	return &FaultNet{blocked: map[faultpair.Key]bool{}, conns: map[*faultConn]struct{}{}}
}

// errBlocked is what a dial between blocked nodes fails with.
var errBlocked = errors.New("cluster: faultnet: traffic blocked")

// Block drops all traffic between a and b, both ways, and closes the
// connections open between them.
func (f *FaultNet) Block(a, b netip.Addr) {
	f.mu.Lock()
	f.blocked[faultpair.Of(a, b)] = true
	var cut []*faultConn
	for c := range f.conns {
		if faultpair.Of(c.local, c.remote) == faultpair.Of(a, b) {
			cut = append(cut, c)
			delete(f.conns, c)
		}
	}
	f.mu.Unlock()
	for _, c := range cut {
		c.Conn.Close()
	}
}

// Partition blocks every pair of addresses taken from two different groups.
func (f *FaultNet) Partition(groups ...[]netip.Addr) {
	for i, g := range groups {
		for _, h := range groups[i+1:] {
			for _, a := range g {
				for _, b := range h {
					f.Block(a, b)
				}
			}
		}
	}
}

// Unblock lets traffic between a and b flow again.
func (f *FaultNet) Unblock(a, b netip.Addr) {
	f.mu.Lock()
	delete(f.blocked, faultpair.Of(a, b))
	f.mu.Unlock()
}

// Heal unblocks every pair.
func (f *FaultNet) Heal() {
	f.mu.Lock()
	clear(f.blocked)
	f.mu.Unlock()
}

// Blocked reports whether traffic between a and b is dropped.
func (f *FaultNet) Blocked(a, b netip.Addr) bool {
	if f == nil {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.blocked[faultpair.Of(a, b)]
}

// track registers c so that Block can cut it, and removes it when closed.
func (f *FaultNet) track(local, remote netip.Addr, c net.Conn) net.Conn {
	if f == nil {
		return c
	}
	fc := &faultConn{Conn: c, f: f, local: local, remote: remote}
	f.mu.Lock()
	blocked := f.blocked[faultpair.Of(local, remote)]
	if !blocked {
		f.conns[fc] = struct{}{}
	}
	f.mu.Unlock()
	if blocked {
		c.Close()
	}
	return fc
}

type faultConn struct {
	net.Conn
	f             *FaultNet
	local, remote netip.Addr
}

func (c *faultConn) Close() error {
	c.f.mu.Lock()
	delete(c.f.conns, c)
	c.f.mu.Unlock()
	return c.Conn.Close()
}

func addrOf(s string) netip.Addr {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// faultTransport wraps memberlist's transport with a FaultNet.
type faultTransport struct {
	inner   *memberlist.NetTransport
	f       *FaultNet
	local   netip.Addr
	packets chan *memberlist.Packet
	done    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
}

var _ memberlist.NodeAwareTransport = (*faultTransport)(nil)

func newFaultTransport(inner *memberlist.NetTransport, f *FaultNet, local netip.Addr) *faultTransport {
	t := &faultTransport{inner: inner, f: f, local: local.Unmap(),
		packets: make(chan *memberlist.Packet), done: make(chan struct{})}
	t.wg.Add(1)
	go t.filter()
	return t
}

// filter passes on the packets whose sender is not blocked from us. It
// ends at Shutdown.
func (t *faultTransport) filter() {
	defer t.wg.Done()
	in := t.inner.PacketCh()
	for {
		select {
		case p := <-in:
			if ua, ok := p.From.(*net.UDPAddr); ok {
				if a, ok := netip.AddrFromSlice(ua.IP); ok && t.f.Blocked(t.local, a.Unmap()) {
					continue
				}
			}
			select {
			case t.packets <- p:
			case <-t.done:
				return
			}
		case <-t.done:
			return
		}
	}
}

func (t *faultTransport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	return t.inner.FinalAdvertiseAddr(ip, port)
}

func (t *faultTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if t.f.Blocked(t.local, addrOf(addr)) {
		return time.Now(), nil // dropped, as a lossy network does
	}
	return t.inner.WriteTo(b, addr)
}

func (t *faultTransport) WriteToAddress(b []byte, addr memberlist.Address) (time.Time, error) {
	return t.WriteTo(b, addr.Addr)
}

func (t *faultTransport) PacketCh() <-chan *memberlist.Packet { return t.packets }

func (t *faultTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	remote := addrOf(addr)
	if t.f.Blocked(t.local, remote) {
		return nil, errBlocked
	}
	c, err := t.inner.DialTimeout(addr, timeout)
	if err != nil {
		return nil, err
	}
	return t.f.track(t.local, remote, c), nil
}

func (t *faultTransport) DialAddressTimeout(addr memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return t.DialTimeout(addr.Addr, timeout)
}

func (t *faultTransport) StreamCh() <-chan net.Conn { return t.inner.StreamCh() }

// Shutdown stops the inner transport first: its listeners block until
// their last packet is taken, so the filter must still be running.
func (t *faultTransport) Shutdown() error {
	err := t.inner.Shutdown()
	t.once.Do(func() { close(t.done) })
	t.wg.Wait()
	return err
}
