package sfu

import (
	"crypto/aes"
	"crypto/cipher"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// sealWriter costs what an SRTP writer does per packet: it marshals the
// header, seals header and payload with AES-128-GCM and sends the result
// on a UDP socket (to a loopback port that does not read: the kernel
// drops it there).
type sealWriter struct {
	aead  cipher.AEAD
	nonce [12]byte
	buf   [1600]byte
	c     *net.UDPConn
	to    netip.AddrPort
}

func newSealWriter(c *net.UDPConn, to netip.AddrPort) *sealWriter {
	blk, _ := aes.NewCipher(make([]byte, 16))
	aead, _ := cipher.NewGCM(blk)
	return &sealWriter{aead: aead, c: c, to: to}
}

func (w *sealWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	n, err := h.MarshalTo(w.buf[:])
	if err != nil {
		return 0, err
	}
	w.nonce[0]++
	out := w.aead.Seal(w.buf[n:n], w.nonce[:], payload, w.buf[:n])
	return w.c.WriteToUDPAddrPort(w.buf[:n+len(out)], w.to)
}

func (w *sealWriter) Write(b []byte) (int, error) { return len(b), nil }

// BenchmarkSpreadFanOut writes one track to 50 subscribers whose writers
// seal and send each packet as SRTP over UDP does, with the fan-out spread over workers
// (spread) or on the writing goroutine (inline). fwd/s is wall-clock
// throughput: spread can use more than one core for one track. The writer
// sleeps while a worker is half a ring behind, so that nothing is
// dropped (a spinning writer takes the workers' core).
//
//	go test -run XXX -bench SpreadFanOut -count 6 ./sfu/ | tee spread.txt
//	benchstat -col /mode spread.txt
func BenchmarkSpreadFanOut(b *testing.B) {
	const n = 50
	for _, mode := range []string{"inline", "spread"} {
		b.Run(fmt.Sprintf("mode=%s", mode), func(b *testing.B) {
			cfg := Config{KeyframeInterval: time.Hour, SpreadAbove: -1}
			if mode == "spread" {
				cfg.SpreadAbove = 1
			}
			s, err := New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			src := newSource(newChannel(s, "bench"), TrackInfo{ID: "t", StreamID: "P", Kind: webrtc.RTPCodecTypeVideo, Codec: vp8}, nil, nil)
			defer src.close()
			lo := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
			tx, err := net.ListenUDP("udp", lo)
			if err != nil {
				b.Fatal(err)
			}
			defer tx.Close()
			rx, err := net.ListenUDP("udp", lo)
			if err != nil {
				b.Fatal(err)
			}
			defer rx.Close()
			_ = rx.SetReadBuffer(1)
			to := rx.LocalAddr().(*net.UDPAddr).AddrPort()
			for i := range n {
				d := newDownTrack(src, nil)
				if _, err := d.Bind(&fakeContext{ssrc: webrtc.SSRC(1000 + i), pt: 96, ws: newSealWriter(tx, to)}); err != nil {
					b.Fatal(err)
				}
				src.addSub(d)
			}
			pkt := testPacket(false)
			backlog := func() uint64 {
				var m uint64
				if sp := src.spread.Load(); sp != nil {
					for _, w := range sp.workers {
						m = max(m, w.head.Load()-w.tail.Load())
					}
				}
				return m
			}
			b.ReportAllocs()
			b.ResetTimer()
			t0 := time.Now()
			for i := 0; i < b.N; i++ {
				seq := uint16(i)
				pkt[2], pkt[3] = byte(seq>>8), byte(seq)
				_ = src.write(pkt)
				for backlog() > spreadRing/2 {
					time.Sleep(20 * time.Microsecond)
				}
			}
			for backlog() > 0 {
				time.Sleep(20 * time.Microsecond)
			}
			wall := time.Since(t0)
			b.StopTimer()
			b.ReportMetric(float64(b.N*n)/wall.Seconds(), "fwd/s")
			b.ReportMetric(float64(s.MuxStats().FanOutDropped), "drops")
			b.ReportMetric(0, "ns/op")
		})
	}
}
