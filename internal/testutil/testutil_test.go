package testutil

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestLoopbackIPDistinctAndBindable(t *testing.T) {
	seen := map[netip.Addr]bool{}
	for range 600 {
		ip := LoopbackIP(t)
		if !ip.IsLoopback() {
			t.Fatalf("%v is not loopback", ip)
		}
		if seen[ip] {
			t.Fatalf("%v handed out twice", ip)
		}
		seen[ip] = true
	}
	ip := LoopbackIP(t)
	port := FreePort(t, ip)
	l, err := net.Listen("tcp", netip.AddrPortFrom(ip, uint16(port)).String())
	if err != nil {
		t.Fatalf("listen on handed-out address: %v", err)
	}
	defer l.Close()
	u, err := net.ListenPacket("udp", netip.AddrPortFrom(ip, uint16(port)).String())
	if err != nil {
		t.Fatalf("udp listen on handed-out address: %v", err)
	}
	u.Close()
}

func TestWaitFor(t *testing.T) {
	start := time.Now()
	if WaitFor(func() bool { return false }, 50*time.Millisecond) {
		t.Fatal("WaitFor reported a false condition as reached")
	}
	if time.Since(start) < 50*time.Millisecond {
		t.Fatal("WaitFor gave up early")
	}
	n := 0
	if !WaitFor(func() bool { n++; return n == 3 }, time.Second) {
		t.Fatal("WaitFor missed a condition that became true")
	}
}

// fakeTB records failures instead of failing the real test.
type fakeTB struct {
	testing.TB
	failed   bool
	cleanups []func()
}

func (f *fakeTB) Helper()               {}
func (f *fakeTB) Errorf(string, ...any) { f.failed = true }
func (f *fakeTB) Failed() bool          { return f.failed }
func (f *fakeTB) Cleanup(fn func())     { f.cleanups = append(f.cleanups, fn) }
func (f *fakeTB) runCleanups() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

func TestCheckLeaksCatchesALeak(t *testing.T) {
	f := &fakeTB{TB: t}
	CheckLeaks(f)
	stop := make(chan struct{})
	go func() { <-stop }()
	f.runCleanups()
	close(stop)
	if !f.failed {
		t.Fatal("CheckLeaks did not report a goroutine left running")
	}

	f = &fakeTB{TB: t}
	CheckLeaks(f)
	done := make(chan struct{})
	go func() { close(done) }()
	<-done
	f.runCleanups()
	if f.failed {
		t.Fatal("CheckLeaks reported a goroutine that had ended")
	}
}
