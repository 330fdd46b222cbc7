package relay

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/shoal-sfu/shoal/internal/lifecycle"
	"github.com/shoal-sfu/shoal/internal/testutil"
)

// Addr is valid as soon as Listen returns, and the ports are bound then:
// a peer may dial in before Serve runs. Serve ends with nil when its
// context does.
func TestListenThenServe(t *testing.T) {
	testutil.CheckLeaks(t)
	n := newNode(t, "a", testKey, func(c *Config) { c.ListenAddr = netip.AddrPortFrom(c.ListenAddr.Addr(), 0) })
	defer n.Close()
	if ap := n.Addr(); ap.IsValid() {
		t.Fatalf("Addr before Listen: %v", ap)
	}
	if err := n.Listen(); err != nil {
		t.Fatal(err)
	}
	ap := n.Addr()
	if !ap.IsValid() || ap.Port() == 0 || ap.Addr() != n.cfg.ListenAddr.Addr() {
		t.Fatalf("Addr right after Listen: %v, want %v with a port", ap, n.cfg.ListenAddr.Addr())
	}
	c, err := net.DialTimeout("tcp", ap.String(), 5*time.Second)
	if err != nil {
		t.Fatalf("dial the relay's TCP port after Listen: %v", err)
	}
	c.Close()
	if u, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap)); err == nil {
		u.Close()
		t.Fatalf("UDP port %v free after Listen", ap)
	}
	if err := n.Listen(); !errors.Is(err, lifecycle.ErrStarted) {
		t.Errorf("second Listen: %v, want lifecycle.ErrStarted", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Serve(ctx) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve after its context ended: %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return when its context ended")
	}
	if err := n.Serve(context.Background()); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("second Serve: %v", err)
	}
}

// Serve needs Listen first; Listen and Serve after Close fail with
// net.ErrClosed; Close after Listen alone releases the ports.
func TestLifecycleOrder(t *testing.T) {
	testutil.CheckLeaks(t)
	n := newNode(t, "a", testKey)
	err := n.Serve(context.Background())
	if err == nil || !strings.Contains(err.Error(), "Listen") {
		t.Errorf("Serve before Listen: %v, want an error that says Listen comes first", err)
	}
	n.Close()
	if err := n.Listen(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Listen after Close: %v, want net.ErrClosed", err)
	}
	if err := n.Serve(context.Background()); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Serve after Close: %v, want net.ErrClosed", err)
	}
	if ap := n.Addr(); ap.IsValid() {
		t.Errorf("Addr after Listen failed: %v", ap)
	}

	m := newNode(t, "b", testKey)
	if err := m.Listen(); err != nil {
		t.Fatal(err)
	}
	ap := m.Addr()
	m.Close()
	u, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
	if err != nil {
		t.Fatalf("UDP port still bound after Close without Serve: %v", err)
	}
	u.Close()
	ln, err := net.Listen("tcp", ap.String())
	if err != nil {
		t.Fatalf("TCP port still bound after Close without Serve: %v", err)
	}
	ln.Close()
}

// sockets is a host network that keeps the sockets the relay binds, so
// that a test can break them under it. Read them once Listen has returned.
type sockets struct {
	hostNet
	udp net.PacketConn
	tcp net.Listener
}

func (s *sockets) ListenUDP(laddr netip.AddrPort) (_ net.PacketConn, err error) {
	s.udp, err = s.hostNet.ListenUDP(laddr)
	return s.udp, err
}

func (s *sockets) ListenTCP(laddr netip.AddrPort) (_ net.Listener, err error) {
	s.tcp, err = s.hostNet.ListenTCP(laddr)
	return s.tcp, err
}

// A socket that fails while the relay serves (closed under it) ends Serve
// with that error, and its links with it; Close still works after.
func TestSocketFailureEndsServe(t *testing.T) {
	for _, tc := range []struct {
		name string
		cut  func(s *sockets) error
	}{
		{"udp", func(s *sockets) error { return s.udp.Close() }},
		{"tcp", func(s *sockets) error { return s.tcp.Close() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testutil.CheckLeaks(t)
			socks := &sockets{}
			a := newNode(t, "a", testKey, func(c *Config) { c.Net = socks })
			defer a.Close()
			if err := a.Listen(); err != nil {
				t.Fatal(err)
			}
			if _, ok := socks.udp.(*net.UDPConn); !ok {
				t.Fatalf("UDP socket %T, want the host's *net.UDPConn (batched)", socks.udp)
			}
			done := make(chan error, 1)
			go func() { done <- a.Serve(context.Background()) }()
			b := startNode(t, "b", testKey)
			meet(t, a, b)
			testutil.Eventually(t, func() bool { return a.link(b).Connected && b.link(a).Connected }, 5*time.Second, "link up")

			if err := tc.cut(socks); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				if err == nil || !errors.Is(err, net.ErrClosed) {
					t.Fatalf("Serve after its %s socket closed: %v, want that error", tc.name, err)
				}
				t.Logf("Serve: %v", err)
			case <-time.After(5 * time.Second):
				t.Fatalf("Serve still running after its %s socket closed", tc.name)
			}
			if a.link(b).Connected {
				t.Error("link still up after Serve returned")
			}
			if err := a.Close(); err != nil {
				t.Errorf("Close after Serve failed: %v", err)
			}
		})
	}
}
