package sfu_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/shoal-sfu/shoal/sfu"
)

// BenchmarkFanOutMux is BenchmarkFanOutE2E with the SFU on one UDP port
// (Network.UDPPort), its sends batched (impl=mux) or not (impl=mux-nobatch),
// its fan-out spread over workers above 20 subscribers (the default) or
// never (impl=mux-nospread), its packets sent through pion's sender chain
// instead of the direct path (impl=mux-pionpath), beside bare pion (one TrackLocalStaticRTP
// written to n peer connections) in the same run. The writer waits (in
// sleeps, which cost no CPU) whenever a spread fan-out is 64 packets
// behind, so that nothing is dropped; drops/op reports any.
//
//	go test -run XXX -bench FanOutMux -benchtime 3000x -count 6 ./sfu/ | tee mux.txt
//	benchstat -col /impl mux.txt
func BenchmarkFanOutMux(b *testing.B) {
	for _, n := range []int{1, 10, 25, 50} {
		for _, impl := range []string{"mux", "mux-nobatch", "mux-nospread", "mux-pionpath"} {
			b.Run(fmt.Sprintf("N=%d/impl=%s", n, impl), func(b *testing.B) {
				s := muxSFU(b, func(c *sfu.Config) {
					c.DisableBatchedSends = impl == "mux-nobatch"
					c.DisableDirectSend = impl == "mux-pionpath"
					if impl == "mux-nospread" {
						c.SpreadAbove = -1
					}
				})
				subs := make([]*testClient, n)
				for i := range subs {
					subs[i] = join(b, s, clientOpts{channel: "bench", id: fmt.Sprintf("S%d", i), role: sfu.RoleRecvonly, discard: true})
				}
				ch := channel(b, s, "bench")
				w := addRemoteVideo(b, ch, "v", "PUB", nil)
				waitReceiving(b, subs, "PUB/v", func() { _ = w.WriteRTP(benchPacket()) })
				i := 0
				runFanOut(b, n, func(pkt []byte) error {
					if i++; i%64 == 0 {
						for sfu.SpreadBacklog(ch) > 0 {
							time.Sleep(50 * time.Microsecond)
						}
					}
					return w.WriteRTP(pkt)
				})
				b.ReportMetric(float64(s.MuxStats().FanOutDropped)/float64(b.N), "drops/op")
			})
		}
		b.Run(fmt.Sprintf("N=%d/impl=pion", n), func(b *testing.B) {
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
