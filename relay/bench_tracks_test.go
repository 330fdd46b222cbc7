package relay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var workSink atomic.Uint64

// fanOutWork stands for the SFU's fan-out of one packet: a fixed amount of
// CPU work, about 10 µs on the dev VM.
func fanOutWork() {
	x := uint64(88172645463325252)
	for range 6000 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
	}
	workSink.Store(x)
}

// BenchmarkForwardTracks: 50 tracks relayed from A to B, each packet's
// local fan-out on B costing about 10 µs (what a track with a few
// subscribers costs the SFU), run at 1 and 2 processors:
//
//	go test -run '^$' -bench ForwardTracks -benchtime 100000x -cpu 1,2 ./relay/
//
// pkts/s is what B delivers to its tracks' writers (wall clock). Each
// sender keeps at most 16 of its packets in flight (for 50 ms at most:
// one lost never arrives), so that the rate is what B sustains. With one receive goroutine doing every
// track's fan-out, a second core adds little; with a goroutine per remote
// track the fan-out spreads. parallel-% is the share of packets whose
// fan-out started while another track's was running: 0 when one goroutine
// does them all, whatever the load of the machine.
func BenchmarkForwardTracks(b *testing.B) {
	const tracks = 50
	a := startNode(b, "a", testKey)
	n := startNode(b, "b", testKey)
	meet(b, a, n)
	if err := a.OpenChannel("room", n.name); err != nil {
		b.Fatal(err)
	}
	waitFor(b, func() bool { return n.local.sink("room") != nil })
	lts := make([]*LocalTrack, tracks)
	var got atomic.Int64
	per := make([]atomic.Int64, tracks)
	var active, overlapped atomic.Int64 // fan-outs running now; packets whose fan-out ran beside another's
	for i := range lts {
		info := video
		info.ID = fmt.Sprintf("t%d", i)
		lt, err := a.AddLocalTrack("room", info, nil)
		if err != nil {
			b.Fatal(err)
		}
		lts[i] = lt
		var w *fakeWriter
		waitFor(b, func() bool { w = n.local.sink("room").track(info.ID); return w != nil })
		w.onWrite(func([]byte) {
			if active.Add(1) > 1 {
				overlapped.Add(1)
			}
			fanOutWork()
			active.Add(-1)
			per[i].Add(1)
			got.Add(1)
		})
	}
	b.SetBytes(benchPayloadLen)
	b.ReportAllocs()
	start := cpuTime()
	b.ResetTimer()
	// One sender per track, as one reader goroutine per published track.
	var wg sync.WaitGroup
	for i, lt := range lts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pkt := rtpPacket(0, make([]byte, benchPayloadLen))
			sent := int64(0)
			for j := i; j < b.N; j += tracks {
				// A packet lost on the way never arrives: wait 50 ms at
				// most, then count it lost.
				for deadline := time.Now().Add(50 * time.Millisecond); sent-per[i].Load() >= 16 && time.Now().Before(deadline); {
					time.Sleep(20 * time.Microsecond)
				}
				binary.BigEndian.PutUint16(pkt[2:], uint16(j/tracks))
				for errors.Is(lt.WriteRTP(pkt), errQueueFull) {
					runtime.Gosched()
				}
				sent++
			}
		}()
	}
	wg.Wait()
	awaitDelivery(b, &got)
	cpu := cpuTime() - start
	b.ReportMetric(float64(got.Load())/b.Elapsed().Seconds(), "pkts/s")
	b.ReportMetric(float64(got.Load())/cpu.Seconds(), "pkts/core-s")
	b.ReportMetric(100*float64(int64(b.N)-min(got.Load(), int64(b.N)))/float64(b.N), "loss-%")
	b.ReportMetric(100*float64(overlapped.Load())/float64(max(got.Load(), 1)), "parallel-%")
}
