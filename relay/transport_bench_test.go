package relay

import (
	"context"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/quic-go/quic-go"

	"github.com/shoal-sfu/shoal/internal/clusterkey"
	"github.com/shoal-sfu/shoal/internal/testutil"
)

// The two transports the issue offers, measured side by side at 1,200-byte
// payloads: one sender, one receiver, both over loopback, encrypted. The
// figures and the choice are in doc.go.
//
//	go test -run '^$' -bench 'Transport' -benchtime 200000x ./relay/

const benchPayload = 1200

var benchKey = []byte("0123456789abcdef0123456789abcdef")

// BenchmarkTransportSRTP: pion/srtp AEAD_AES_128_GCM over a UDP socket pair,
// the transport the relay uses.
func BenchmarkTransportSRTP(b *testing.B) {
	a, c := udpPair(b)
	_ = c.SetReadBuffer(8 << 20)
	key, salt, err := srtpKeys(benchKey, make([]byte, 32), make([]byte, 32), make([]byte, 32), "a", "b")
	if err != nil {
		b.Fatal(err)
	}
	enc, err := srtp.CreateContext(key, salt, srtp.ProtectionProfileAeadAes128Gcm)
	if err != nil {
		b.Fatal(err)
	}
	dec, err := srtp.CreateContext(key, salt, srtp.ProtectionProfileAeadAes128Gcm, srtp.SRTPReplayProtection(1024))
	if err != nil {
		b.Fatal(err)
	}
	to := c.LocalAddr().(*net.UDPAddr).AddrPort()

	var got atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		out := make([]byte, 2048)
		var h rtp.Header
		for {
			n, _, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if _, err := dec.DecryptRTP(out, buf[:n], &h); err == nil {
				got.Add(1)
			}
		}
	}()

	plain := make([]byte, 12+benchPayload)
	plain[0] = 0x80
	wire := make([]byte, 0, 2048)
	var h rtp.Header
	b.SetBytes(benchPayload)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		plain[2], plain[3] = byte(i>>8), byte(i)
		out, err := enc.EncryptRTP(wire[:0], plain, &h)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := a.WriteToUDPAddrPort(out, to); err != nil {
			b.Fatal(err)
		}
	}
	reportReceived(b, &got)
	c.Close()
	<-done
}

// BenchmarkTransportQUIC: quic-go DATAGRAM frames over one connection (TLS
// 1.3, the same derived identity), the alternative not taken.
func BenchmarkTransportQUIC(b *testing.B) {
	ip := testutil.LoopbackIP(b)
	id, err := clusterkey.Derive(benchKey, "relay")
	if err != nil {
		b.Fatal(err)
	}
	qc := &quic.Config{EnableDatagrams: true, InitialPacketSize: 1400, MaxIdleTimeout: 10 * time.Second}
	ln, err := quic.ListenAddr(netip.AddrPortFrom(ip, 0).String(), id.TLSConfig("shoal-bench"), qc)
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type accepted struct {
		c   *quic.Conn
		err error
	}
	acc := make(chan accepted, 1)
	go func() {
		c, err := ln.Accept(ctx)
		acc <- accepted{c, err}
	}()
	cli, err := quic.DialAddr(ctx, ln.Addr().String(), id.TLSConfig("shoal-bench"), qc)
	if err != nil {
		b.Fatal(err)
	}
	defer cli.CloseWithError(0, "")
	s := <-acc
	if s.err != nil {
		b.Fatal(s.err)
	}
	defer s.c.CloseWithError(0, "")

	var got atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, err := s.c.ReceiveDatagram(ctx); err != nil {
				return
			}
			got.Add(1)
		}
	}()
	msg := make([]byte, benchPayload)
	b.SetBytes(benchPayload)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := cli.SendDatagram(msg); err != nil {
			b.Fatal(err)
		}
	}
	reportReceived(b, &got)
	cancel()
	<-done
}

// reportReceived waits for the packets to arrive (awaitDelivery) and
// reports the receive rate and the loss.
func reportReceived(b *testing.B, got *atomic.Int64) {
	awaitDelivery(b, got)
	b.ReportMetric(float64(got.Load())/b.Elapsed().Seconds(), "recv_pkts/s")
	b.ReportMetric(100*float64(int64(b.N)-got.Load())/float64(b.N), "loss_%")
}
