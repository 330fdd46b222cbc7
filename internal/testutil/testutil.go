package testutil

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Logger returns a logger writing to t.Log at every level down to Debug.
// Records written after the test has finished are dropped instead of
// panicking, since background goroutines may still log during shutdown.
func Logger(t testing.TB) *slog.Logger {
	return LoggerLevel(t, slog.LevelDebug)
}

// LoggerLevel is Logger with a minimum level.
func LoggerLevel(t testing.TB, level slog.Level) *slog.Logger {
	w := &tWriter{t: t}
	t.Cleanup(w.close)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

type tWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *tWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Helper()
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *tWriter) close() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

// Eventually polls cond every 10 ms until it returns true, and fails the test
// with msg if it has not within timeout.
func Eventually(t testing.TB, cond func() bool, timeout time.Duration, msg string, args ...any) {
	t.Helper()
	if !WaitFor(cond, timeout) {
		t.Fatalf("not reached within %v: %s", timeout, fmt.Sprintf(msg, args...))
	}
}

// WaitFor polls cond every 10 ms until it returns true or timeout passes, and
// reports whether it did.
func WaitFor(cond func() bool, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Context returns a context cancelled when the test ends or after timeout.
func Context(t testing.TB, timeout time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return ctx
}

// CheckLeaks records the goroutines running now and, when the test ends,
// fails it if others are still running (after a grace period for ones that
// are finishing). Call it first in a test so that its check runs after every
// other cleanup. Tests calling it must not run in parallel with others.
func CheckLeaks(t testing.TB, ignore ...goleak.Option) {
	t.Helper()
	opts := append([]goleak.Option{
		goleak.IgnoreCurrent(),
		// Started once per process by libraries on first use; not owned by a test.
		goleak.IgnoreAnyFunction("github.com/hashicorp/go-metrics.(*InmemSignal).run"),
		goleak.IgnoreAnyFunction("github.com/armon/go-metrics.(*InmemSignal).run"),
		goleak.IgnoreAnyFunction("github.com/hashicorp/go-metrics.NewInmemSink.func1"),
		goleak.IgnoreAnyFunction("github.com/armon/go-metrics.NewInmemSink.func1"),
		goleak.IgnoreAnyFunction("go.opencensus.io/stats/view.(*worker).start"),
	}, ignore...)
	t.Cleanup(func() {
		if t.Failed() {
			return // the first failure is the interesting one
		}
		// goleak retries for about a second; give slow shutdowns (serf's
		// leave, ICE agents) a few more.
		var err error
		for range 5 {
			if err = goleak.Find(opts...); err == nil {
				return
			}
		}
		t.Errorf("goroutine leak: %v", err)
	})
}

var (
	loopOnce sync.Once
	loopBase [2]byte
	loopNext atomic.Uint32
)

// LoopbackIP returns a loopback address not handed out before in this
// process. Each test binary picks a random 127.a.b.0/24 block (a, b in
// 1..250) so that packages tested in parallel processes rarely meet; the
// third octet moves on after 250 addresses.
func LoopbackIP(t testing.TB) netip.Addr {
	t.Helper()
	loopOnce.Do(func() {
		loopBase = [2]byte{byte(1 + rand.IntN(250)), byte(1 + rand.IntN(250))}
	})
	n := loopNext.Add(1)
	a, b := loopBase[0], byte((uint32(loopBase[1])+(n-1)/250)%250+1)
	return netip.AddrFrom4([4]byte{127, a, b, byte(1 + (n-1)%250)})
}

// LoopbackIPs returns n LoopbackIP addresses: one per node of a test
// cluster.
func LoopbackIPs(t testing.TB, n int) []netip.Addr {
	t.Helper()
	ips := make([]netip.Addr, n)
	for i := range ips {
		ips[i] = LoopbackIP(t)
	}
	return ips
}

// FreePort returns a port on ip that is free for both TCP and UDP at the time
// of the call, for services (such as serf) that listen on both with one port.
func FreePort(t testing.TB, ip netip.Addr) int {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", netip.AddrPortFrom(ip, 0).String())
		if err != nil {
			t.Fatalf("testutil: listen on %v: %v", ip, err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", netip.AddrPortFrom(ip, uint16(port)).String())
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		return port
	}
	t.Fatalf("testutil: no port free for TCP and UDP on %v", ip)
	return 0
}
