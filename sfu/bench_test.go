package sfu_test

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/internal/testutil/pionapi"
	"github.com/shoal-sfu/shoal/sfu"
)

// Benchmarks over real peer connections on loopback. Subscribers are pion
// clients in the same process that read and drop what they receive, so the
// CPU figures include their SRTP decryption, the same for both sides.
//
//	go test -run XXX -bench 'FanOutE2E|IdleConnection' -benchtime 3000x ./sfu/

// benchPacket returns a 1000-byte VP8-sized packet. Each has a sequence
// number of its own, counted down from 99, so that the writes that wait for
// the subscribers to receive are not duplicates (which a track forwards
// once) nor ahead of runFanOut's, which count up from 100.
func benchPacket() []byte {
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(warmSeq.Add(-1)), Timestamp: 3000, SSRC: 42}, Payload: make([]byte, 1000)}
	b, _ := p.Marshal()
	return b
}

var warmSeq atomic.Int32

func init() { warmSeq.Store(100) }

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runFanOut times write over b.N packets forwarded to n subscribers.
func runFanOut(b *testing.B, n int, write func(pkt []byte) error) {
	pkt := benchPacket()
	b.ReportAllocs()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	b.ResetTimer()
	cpu0, t0 := cpuTime(), time.Now()
	for i := 0; i < b.N; i++ {
		seq := uint16(i + 100)
		pkt[2], pkt[3] = byte(seq>>8), byte(seq)
		if err := write(pkt); err != nil {
			b.Fatal(err)
		}
	}
	cpu, wall := cpuTime()-cpu0, time.Since(t0)
	b.StopTimer()
	runtime.ReadMemStats(&m1)
	fwd := float64(b.N * n)
	// allocations of the whole process (senders and in-process receivers)
	// per forwarded packet
	b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/fwd, "allocs/fwd")
	b.ReportMetric(fwd/cpu.Seconds(), "fwd/cpu-s")
	b.ReportMetric(fwd/wall.Seconds(), "fwd/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/fwd, "cpu-ns/fwd")
	b.ReportMetric(0, "ns/op") // per-op time mixes N; the two metrics above are comparable
}

func BenchmarkFanOutE2E(b *testing.B) {
	for _, n := range []int{1, 10, 50} {
		// shoal-nocc: Config.DisableCongestionControl, to show what the
		// congestion control (transport-wide sequence numbers stamped on
		// every packet sent, the send-side estimator, the pacer) costs.
		for _, impl := range []string{"shoal", "shoal-nocc"} {
			b.Run(fmt.Sprintf("impl=%s/N=%d", impl, n), func(b *testing.B) {
				s := newSFU(b, func(c *sfu.Config) { c.DisableCongestionControl = impl == "shoal-nocc" })
				benchFanOutSFU(b, s, n)
			})
		}
		b.Run(fmt.Sprintf("impl=pion/N=%d", n), func(b *testing.B) {
			track, err := webrtc.NewTrackLocalStaticRTP(vp8, "v", "PUB")
			if err != nil {
				b.Fatal(err)
			}
			subs := barePairs(b, n, track)
			waitReceiving(b, subs, "PUB/v", func() { _, _ = track.Write(benchPacket()) })
			runFanOut(b, n, func(pkt []byte) error { _, err := track.Write(pkt); return err })
		})
	}
}

// benchFanOutSFU joins n recvonly clients to s and times a remote track's
// writes to them.
func benchFanOutSFU(b *testing.B, s *sfu.SFU, n int) {
	subs := make([]*testClient, n)
	for i := range subs {
		subs[i] = join(b, s, clientOpts{channel: "bench", id: fmt.Sprintf("S%d", i), role: sfu.RoleRecvonly, discard: true})
	}
	ch := channel(b, s, "bench")
	w := addRemoteVideo(b, ch, "v", "PUB", nil)
	waitReceiving(b, subs, "PUB/v", func() { _ = w.WriteRTP(benchPacket()) })
	// Above Config.SpreadAbove subscribers the fan-out is spread over
	// workers: the writer waits for them every 64 packets and at the end,
	// so that what is measured is every packet written, not dropped from a
	// worker's full ring.
	i := 0
	runFanOut(b, n, func(pkt []byte) error {
		err := w.WriteRTP(pkt)
		if i++; i%64 == 0 || i == b.N {
			for sfu.SpreadBacklog(ch) > 0 {
				time.Sleep(50 * time.Microsecond)
			}
		}
		return err
	})
	if d := s.MuxStats().FanOutDropped; d > 0 {
		b.Fatalf("%d packets dropped by the spread fan-out", d)
	}
}

func waitReceiving(b *testing.B, subs []*testClient, key string, write func()) {
	testutil.Eventually(b, func() bool {
		write()
		for _, c := range subs {
			if len(c.payloads(key)) == 0 {
				return false
			}
		}
		return true
	}, 20*time.Second, "all subscribers receive")
}

// barePairs connects n pion "server" peer connections, each sending track,
// to n test clients: the bare-pion fan-out.
func barePairs(b *testing.B, n int, track *webrtc.TrackLocalStaticRTP) []*testClient {
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		b.Fatal(err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.ConfigureNack(m, ir); err != nil {
		b.Fatal(err)
	}
	if err := webrtc.ConfigureRTCPReports(ir); err != nil {
		b.Fatal(err)
	}
	se := webrtc.SettingEngine{}
	pionapi.Quiet(&se)
	se.SetIPFilter(sfu.LocalConfig(nil).Network.IPFilter)
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
	subs := make([]*testClient, n)
	for i := range subs {
		srv, err := api.NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = srv.Close() })
		sender, err := srv.AddTrack(track)
		if err != nil {
			b.Fatal(err)
		}
		go func() {
			buf := make([]byte, 1500)
			for {
				if _, _, err := sender.Read(buf); err != nil {
					return
				}
			}
		}()
		cl, err := sharedClientAPI.NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = cl.Close() })
		c := &testClient{t: b, pc: cl, received: map[string][][]byte{}}
		cl.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
			c.mu.Lock()
			c.received[tr.StreamID()+"/"+tr.ID()] = [][]byte{nil}
			c.mu.Unlock()
			buf := make([]byte, 1500)
			for {
				if _, _, err := tr.Read(buf); err != nil {
					return
				}
			}
		})
		negotiate(b, srv, cl)
		subs[i] = c
	}
	return subs
}

// BenchmarkIdleConnection reports the heap held per idle recvonly
// connection: the server side (a Connection with its three data channels)
// plus its in-process pion client. BenchmarkIdlePionPair is the same for a
// bare pion pair with one data channel, to subtract.
func BenchmarkIdleConnection(b *testing.B) {
	s := newSFU(b, nil)
	before := heapInUse()
	for i := 0; i < b.N; i++ {
		join(b, s, clientOpts{channel: fmt.Sprintf("idle%d", i%10), id: fmt.Sprintf("C%d", i), role: sfu.RoleRecvonly, discard: true})
	}
	b.ReportMetric(float64(heapInUse()-before)/float64(b.N), "heap-B/pair")
	b.ReportMetric(0, "ns/op")
}

func BenchmarkIdlePionPair(b *testing.B) {
	before := heapInUse()
	for i := 0; i < b.N; i++ {
		srv, _ := sharedClientAPI.NewPeerConnection(webrtc.Configuration{})
		cl, _ := sharedClientAPI.NewPeerConnection(webrtc.Configuration{})
		b.Cleanup(func() { _ = srv.Close(); _ = cl.Close() })
		_, _ = srv.CreateDataChannel("x", nil)
		negotiate(b, srv, cl)
		testutil.Eventually(b, func() bool { return srv.ConnectionState() == webrtc.PeerConnectionStateConnected }, 10*time.Second, "pair connected")
	}
	b.ReportMetric(float64(heapInUse()-before)/float64(b.N), "heap-B/pair")
	b.ReportMetric(0, "ns/op")
}

// negotiate has offerer and answerer exchange an offer and an answer, each
// holding all its side's candidates.
func negotiate(b *testing.B, offerer, answerer *webrtc.PeerConnection) {
	b.Helper()
	describe := func(pc *webrtc.PeerConnection, create func(*webrtc.PeerConnection) (webrtc.SessionDescription, error)) webrtc.SessionDescription {
		gathered := webrtc.GatheringCompletePromise(pc)
		d, err := create(pc)
		if err == nil {
			err = pc.SetLocalDescription(d)
		}
		if err != nil {
			b.Fatal(err)
		}
		<-gathered
		return *pc.LocalDescription()
	}
	offer := describe(offerer, func(pc *webrtc.PeerConnection) (webrtc.SessionDescription, error) { return pc.CreateOffer(nil) })
	if err := answerer.SetRemoteDescription(offer); err != nil {
		b.Fatal(err)
	}
	answer := describe(answerer, func(pc *webrtc.PeerConnection) (webrtc.SessionDescription, error) { return pc.CreateAnswer(nil) })
	if err := offerer.SetRemoteDescription(answer); err != nil {
		b.Fatal(err)
	}
}

func heapInUse() int64 {
	time.Sleep(200 * time.Millisecond) // let handshakes' garbage settle
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse)
}
