package relay

import (
	"encoding/binary"
	"errors"
	"net"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The relay's hot path, measured beside same-node forwarding in one run:
//
//	go test -run '^$' -bench 'Forward' -benchtime 200000x ./relay/
//
// "same-node" hands each packet straight to the sink writer, as an SFU does
// when publisher and subscriber share a node (a call into its fan-out).
// "hop" sends it through a real link on loopback: frame, SRTP seal, UDP,
// SRTP open, dispatch, then the same sink writer on the far node. The
// difference is what relaying adds. pkts/core-s divides packets by the CPU
// time the whole process used (sender, receiver, both nodes).

const benchPayloadLen = 1200

func benchPair(b *testing.B) (*LocalTrack, *fakeWriter, *node) {
	a := startNode(b, "a", testKey)
	n := startNode(b, "b", testKey)
	meet(b, a, n)
	if err := a.OpenChannel("room", n.name); err != nil {
		b.Fatal(err)
	}
	waitFor(b, func() bool { return n.local.sink("room") != nil })
	lt, err := a.AddLocalTrack("room", video, nil)
	if err != nil {
		b.Fatal(err)
	}
	var w *fakeWriter
	waitFor(b, func() bool { w = n.local.sink("room").track(video.ID); return w != nil })
	return lt, w, n
}

func waitFor(b *testing.B, cond func() bool) {
	b.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatal("timed out")
		}
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkForwardThroughput: as fast as one sender goes.
func BenchmarkForwardThroughput(b *testing.B) {
	b.Run("same-node", func(b *testing.B) {
		w := &fakeWriter{}
		got, cpu := forward(b, w, func(pkt []byte) { _ = w.WriteRTP(pkt) })
		b.ReportMetric(float64(got)/cpu.Seconds(), "pkts/core-s")
	})
	b.Run("hop", func(b *testing.B) {
		lt, w, _ := benchPair(b)
		got, cpu := forward(b, w, func(pkt []byte) {
			// A full send queue drops rather than blocks (a slow link must
			// not stall the SFU); here the sender waits, to find the rate
			// the link sustains.
			for errors.Is(lt.WriteRTP(pkt), errQueueFull) {
				runtime.Gosched()
			}
		})
		b.ReportMetric(float64(got)/cpu.Seconds(), "pkts/core-s")
		b.ReportMetric(float64(got)/b.Elapsed().Seconds(), "pkts/s")
		b.ReportMetric(100*float64(int64(b.N)-min(got, int64(b.N)))/float64(b.N), "loss-%")
	})
}

// forward sends b.N packets through write, counts those that reach w and
// returns that count with the CPU time the process used meanwhile.
func forward(b *testing.B, w *fakeWriter, write func(pkt []byte)) (got int64, cpu time.Duration) {
	var n atomic.Int64
	w.onWrite(func([]byte) { n.Add(1) })
	pkt := rtpPacket(0, make([]byte, benchPayloadLen))
	b.SetBytes(benchPayloadLen)
	b.ReportAllocs()
	start := cpuTime()
	b.ResetTimer()
	for i := range b.N {
		binary.BigEndian.PutUint16(pkt[2:], uint16(i))
		write(pkt)
	}
	awaitDelivery(b, &n)
	return n.Load(), cpuTime() - start
}

// awaitDelivery waits up to 2 s for b.N packets to have arrived (n counts
// them), then stops the timer.
func awaitDelivery(b *testing.B, n *atomic.Int64) {
	for deadline := time.Now().Add(2 * time.Second); n.Load() < int64(b.N) && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
}

// BenchmarkForwardLatency: 50,000 packets/s, in bursts of 50 every
// millisecond (a video frame's packets come together too, and a sleeping
// sender leaves the processors to the relay); each packet carries its send
// time and the sink records the delay. Reports p50 and p99.
func BenchmarkForwardLatency(b *testing.B) {
	const burst = 50 // per millisecond: 50,000/s
	run := func(b *testing.B, write func([]byte), w *fakeWriter) {
		epoch := time.Now()
		var mu sync.Mutex // late packets may still arrive while the result is read
		delays := make([]int64, 0, b.N)
		var got atomic.Int64
		w.onWrite(func(p []byte) {
			d := int64(time.Since(epoch)) - int64(binary.BigEndian.Uint64(p[12:]))
			mu.Lock()
			if len(delays) < cap(delays) {
				delays = append(delays, d)
			}
			mu.Unlock()
			got.Add(1)
		})
		pkt := rtpPacket(0, make([]byte, benchPayloadLen))
		b.SetBytes(benchPayloadLen)
		b.ReportAllocs()
		b.ResetTimer()
		next := time.Since(epoch)
		for i := range b.N {
			if i%burst == 0 {
				next += time.Millisecond
				time.Sleep(next - time.Since(epoch))
			}
			binary.BigEndian.PutUint16(pkt[2:], uint16(i))
			binary.BigEndian.PutUint64(pkt[12:], uint64(time.Since(epoch)))
			write(pkt)
		}
		awaitDelivery(b, &got)
		mu.Lock()
		d := slices.Clone(delays)
		mu.Unlock()
		if len(d) == 0 {
			b.Fatal("nothing received")
		}
		slices.Sort(d)
		b.ReportMetric(float64(d[len(d)/2])/1e3, "p50-µs")
		b.ReportMetric(float64(d[len(d)*99/100])/1e3, "p99-µs")
		b.ReportMetric(100*float64(b.N-len(d))/float64(b.N), "loss-%")
	}
	b.Run("same-node", func(b *testing.B) {
		w := &fakeWriter{}
		run(b, func(p []byte) { _ = w.WriteRTP(p) }, w)
	})
	// The floor under the hop on this machine: one plain UDP datagram per
	// packet over loopback, no relay, no cipher.
	b.Run("raw-udp", func(b *testing.B) {
		c, d := udpPair(b)
		_ = d.SetReadBuffer(4 << 20)
		to := d.LocalAddr().(*net.UDPAddr).AddrPort()
		w := &fakeWriter{}
		done := make(chan struct{})
		go func() {
			defer close(done)
			buf := make([]byte, 2048)
			for {
				n, _, err := d.ReadFromUDPAddrPort(buf)
				if err != nil {
					return
				}
				_ = w.WriteRTP(buf[:n])
			}
		}()
		defer func() { d.Close(); <-done }()
		run(b, func(p []byte) { _, _ = c.WriteToUDPAddrPort(p, to) }, w)
	})
	b.Run("hop", func(b *testing.B) {
		lt, w, _ := benchPair(b)
		run(b, func(p []byte) { _ = lt.WriteRTP(p) }, w)
	})
}
