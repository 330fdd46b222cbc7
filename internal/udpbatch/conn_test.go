//go:build linux

package udpbatch

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"
)

func listen(t testing.TB, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadBuffer(4 << 20)
	t.Cleanup(func() { c.Close() })
	return c
}

func newTestConn(t testing.TB, addr string) *Conn {
	t.Helper()
	c, err := NewConn(listen(t, addr))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func apOf(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

// recvN reads n datagrams from rx within a few seconds.
func recvN(t testing.TB, rx *net.UDPConn, n int) [][]byte {
	t.Helper()
	var got [][]byte
	buf := make([]byte, 4096)
	_ = rx.SetReadDeadline(time.Now().Add(5 * time.Second))
	for len(got) < n {
		k, err := rx.Read(buf)
		if err != nil {
			t.Fatalf("after %d of %d datagrams: %v", len(got), n, err)
		}
		got = append(got, bytes.Clone(buf[:k]))
	}
	return got
}

// nothingWithin reports whether rx receives nothing within d.
func nothingWithin(rx *net.UDPConn, d time.Duration) bool {
	_ = rx.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 4096)
	_, err := rx.Read(buf)
	return err != nil
}

func payload(dst, i, size int) []byte {
	p := bytes.Repeat([]byte{byte(i)}, size)
	copy(p, fmt.Sprintf("%d/%d", dst, i))
	return p
}

// Datagrams written inside a burst wait for its Release and then go in one
// sendmmsg, each to its own destination, in order; outside a burst each
// goes at once.
func TestConnBurst(t *testing.T) {
	c := newTestConn(t, "127.0.0.1:0")
	rx := []*net.UDPConn{listen(t, "127.0.0.1:0"), listen(t, "127.0.0.1:0")}
	c.Hold()
	var want [2][][]byte
	for i := range 10 {
		d := i % 2
		p := payload(d, i, 1000+i)
		want[d] = append(want[d], p)
		if n, err := c.WriteToAddrPort(p, apOf(rx[d])); err != nil || n != len(p) {
			t.Fatalf("write: %d, %v", n, err)
		}
	}
	if !nothingWithin(rx[0], 100*time.Millisecond) {
		t.Fatal("a datagram left before the burst's Release")
	}
	c.Release()
	for d := range rx {
		got := recvN(t, rx[d], len(want[d]))
		for i := range got {
			if !bytes.Equal(got[i], want[d][i]) {
				t.Fatalf("destination %d, datagram %d: got %q..., want %q...", d, i, got[i][:6], want[d][i][:6])
			}
		}
	}
	if s := c.Stats(); s.Calls != 1 || s.Datagrams != 10 || s.Failed != 0 {
		t.Errorf("stats %+v; want one call of 10 datagrams", s)
	}

	// Outside a burst: at once, one call each.
	for i := range 3 {
		if _, err := c.WriteTo(payload(0, i, 100), rx[0].LocalAddr()); err != nil {
			t.Fatal(err)
		}
		recvN(t, rx[0], 1)
	}
	if s := c.Stats(); s.Calls != 4 || s.Datagrams != 13 {
		t.Errorf("stats %+v; want 3 more calls of one datagram", s)
	}
}

// A full batch goes without waiting for the Release; a datagram too large
// for a slot goes alone, after what was gathered before it.
func TestConnFullAndLarge(t *testing.T) {
	c := newTestConn(t, "127.0.0.1:0")
	rx := listen(t, "127.0.0.1:0")
	c.Hold()
	defer c.Release()
	for i := range BatchLen {
		_, _ = c.WriteToAddrPort(payload(0, i, 200), apOf(rx))
	}
	recvN(t, rx, BatchLen)
	_, _ = c.WriteToAddrPort(payload(0, 1, 200), apOf(rx))
	big := payload(0, 2, 3000)
	if _, err := c.WriteToAddrPort(big, apOf(rx)); err != nil {
		t.Fatal(err)
	}
	got := recvN(t, rx, 2)
	if len(got[0]) != 200 || !bytes.Equal(got[1], big) {
		t.Errorf("got %d and %d bytes; want the gathered 200 first, then the 3000", len(got[0]), len(got[1]))
	}
}

// A destination the kernel refuses (port 0) is counted and skipped; the
// rest of the batch still goes.
func TestConnBadDestination(t *testing.T) {
	c := newTestConn(t, "127.0.0.1:0")
	rx := listen(t, "127.0.0.1:0")
	c.Hold()
	_, _ = c.WriteToAddrPort(payload(0, 0, 100), apOf(rx))
	_, _ = c.WriteToAddrPort(payload(0, 1, 100), netip.MustParseAddrPort("127.0.0.1:0"))
	_, _ = c.WriteToAddrPort(payload(0, 2, 100), apOf(rx))
	c.Release()
	got := recvN(t, rx, 2)
	if got[0][2] != '0' || got[1][2] != '2' {
		t.Errorf("got %q and %q; want datagrams 0 and 2", got[0][:3], got[1][:3])
	}
	if s := c.Stats(); s.Failed != 1 || s.Datagrams != 2 {
		t.Errorf("stats %+v; want 1 failed, 2 sent", s)
	}
	// Outside a burst the error is returned.
	if _, err := c.WriteToAddrPort(payload(0, 3, 100), netip.MustParseAddrPort("127.0.0.1:0")); err == nil {
		t.Error("a datagram to port 0 outside a burst: no error")
	}
}

// A dual-stack (AF_INET6) socket sends to IPv4 destinations as v4-mapped.
func TestConnDualStack(t *testing.T) {
	uc, err := net.ListenUDP("udp", &net.UDPAddr{})
	if err != nil {
		t.Skip("no dual-stack socket:", err)
	}
	t.Cleanup(func() { uc.Close() })
	c, err := NewConn(uc)
	if err != nil {
		t.Fatal(err)
	}
	if !c.impl.v6 {
		t.Skip("the unspecified address gave an IPv4 socket")
	}
	rx := listen(t, "127.0.0.1:0")
	c.Hold()
	_, _ = c.WriteToAddrPort(payload(0, 0, 100), apOf(rx))
	c.Release()
	recvN(t, rx, 1)
}

// Bursts of several goroutines at once lose nothing (run with -race).
func TestConnConcurrent(t *testing.T) {
	c := newTestConn(t, "127.0.0.1:0")
	rx := listen(t, "127.0.0.1:0")
	const writers, per = 4, 200
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range per {
				if i%10 == 0 {
					c.Hold()
				}
				_, _ = c.WriteToAddrPort(payload(w, i, 300), apOf(rx))
				if i%10 == 9 {
					c.Release()
				}
			}
		})
	}
	wg.Wait()
	recvN(t, rx, writers*per)
	if s := c.Stats(); s.Datagrams != writers*per || s.Failed != 0 {
		t.Errorf("stats %+v; want %d sent", s, writers*per)
	}
}

// A burst allocates nothing.
func TestConnAllocs(t *testing.T) {
	c := newTestConn(t, "127.0.0.1:0")
	rx := listen(t, "127.0.0.1:0")
	go func() { // drain
		buf := make([]byte, 2048)
		for {
			if _, err := rx.Read(buf); err != nil {
				return
			}
		}
	}()
	p, to := payload(0, 0, 1200), apOf(rx)
	allocs := testing.AllocsPerRun(100, func() {
		c.Hold()
		for range 20 {
			_, _ = c.WriteToAddrPort(p, to)
		}
		c.Release()
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per burst; want 0", allocs)
	}
}

// BenchmarkSend compares datagrams sent one sendto each with bursts of 25
// through a Conn (25 destinations, as a fan-out to 25 subscribers).
func BenchmarkSend(b *testing.B) {
	const fan = 25
	var dsts []netip.AddrPort
	for range fan {
		// Receivers that do not read: their buffers fill and the kernel
		// drops what comes, so that the figure is the send path's (a
		// reader on loopback adds its wake-up to each send).
		rx := listen(b, "127.0.0.1:0")
		_ = rx.SetReadBuffer(1)
		dsts = append(dsts, apOf(rx))
	}
	p := make([]byte, 1200)
	b.Run("sendto", func(b *testing.B) {
		uc := listen(b, "127.0.0.1:0")
		for b.Loop() {
			for _, d := range dsts {
				_, _ = uc.WriteToUDPAddrPort(p, d)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*fan), "ns/datagram")
	})
	b.Run("batched", func(b *testing.B) {
		c := newTestConn(b, "127.0.0.1:0")
		for b.Loop() {
			c.Hold()
			for _, d := range dsts {
				_, _ = c.WriteToAddrPort(p, d)
			}
			c.Release()
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*fan), "ns/datagram")
	})
}

// ReadFromAddrPort gives what the socket's own read gives: the datagram,
// its source (IPv4, or v4-mapped on a dual-stack socket), a timeout at the
// read deadline and an error once closed; and it allocates nothing.
func TestConnRead(t *testing.T) {
	dual, err := net.ListenUDP("udp", &net.UDPAddr{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dual.Close() })
	for name, uc := range map[string]*net.UDPConn{"ipv4": listen(t, "127.0.0.1:0"), "dual": dual} {
		t.Run(name, func(t *testing.T) {
			c, err := NewConn(uc)
			if err != nil {
				t.Fatal(err)
			}
			tx := listen(t, "127.0.0.1:0")
			to := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), apOf(uc).Port())
			buf := make([]byte, 1500)
			want := apOf(tx)
			if c.impl.v6 {
				want = netip.AddrPortFrom(netip.AddrFrom16(want.Addr().As16()), want.Port())
			}
			for i := range 3 {
				if _, err := tx.WriteToUDPAddrPort(payload(0, i, 100+i), to); err != nil {
					t.Fatal(err)
				}
				n, from, err := c.ReadFromAddrPort(buf)
				if err != nil {
					t.Fatal(err)
				}
				if n != 100+i || !bytes.Equal(buf[:n], payload(0, i, 100+i)) || from != want {
					t.Fatalf("read %d bytes from %v, want %d from %v", n, from, 100+i, want)
				}
			}
			p := payload(0, 0, 100)
			allocs := testing.AllocsPerRun(50, func() {
				_, _ = tx.WriteToUDPAddrPort(p, to)
				_, _, _ = c.ReadFromAddrPort(buf)
			})
			if allocs > 0 {
				t.Errorf("%.1f allocations per write and read", allocs)
			}
			_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			if _, _, err := c.ReadFromAddrPort(buf); !os.IsTimeout(err) {
				t.Fatalf("read past the deadline: %v, want a timeout", err)
			}
			_ = c.SetReadDeadline(time.Time{})
			done := make(chan error, 1)
			go func() { _, _, err := c.ReadFromAddrPort(buf); done <- err }()
			time.Sleep(10 * time.Millisecond)
			_ = c.Close()
			select {
			case err := <-done:
				if !errors.Is(err, net.ErrClosed) {
					t.Fatalf("read on close: %v, want net.ErrClosed", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("a read blocked past the close")
			}
		})
	}
}
