package sfu_test

import (
	"fmt"
	"testing"

	"github.com/pion/webrtc/v4"

	"github.com/shoal-sfu/shoal/sfu"
)

// BenchmarkFanOutMux is BenchmarkFanOutE2E with the SFU on one UDP port
// (Network.UDPPort), its sends batched (impl=mux) or not (impl=mux-nobatch),
// beside bare pion (one TrackLocalStaticRTP written to n peer
// connections) in the same run:
//
//	go test -run XXX -bench FanOutMux -benchtime 3000x -count 6 ./sfu/ | tee mux.txt
//	benchstat -col /impl mux.txt
func BenchmarkFanOutMux(b *testing.B) {
	for _, n := range []int{1, 10, 25, 50} {
		for _, impl := range []string{"mux", "mux-nobatch"} {
			b.Run(fmt.Sprintf("N=%d/impl=%s", n, impl), func(b *testing.B) {
				s := muxSFU(b, func(c *sfu.Config) { c.DisableBatchedSends = impl == "mux-nobatch" })
				benchFanOutSFU(b, s, n)
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
