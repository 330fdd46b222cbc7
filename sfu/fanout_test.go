package sfu

import (
	"fmt"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// marshalWriter is a TrackLocalWriter that does what the SRTP writer does
// before encrypting: marshal the header and the payload into a buffer.
type marshalWriter struct {
	buf   [1500]byte
	n     int
	last  rtp.Header
	count int
}

func (w *marshalWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	n, err := h.MarshalTo(w.buf[:])
	if err != nil {
		return 0, err
	}
	n += copy(w.buf[n:], payload)
	w.n = n
	w.last.SSRC, w.last.PayloadType, w.last.Extension = h.SSRC, h.PayloadType, h.Extension
	w.count++
	return n, nil
}

func (w *marshalWriter) Write(b []byte) (int, error) {
	var h rtp.Header
	n, err := h.Unmarshal(b)
	if err != nil {
		return 0, err
	}
	return w.WriteRTP(&h, b[n:])
}

// fakeContext binds a track to a marshalWriter, as a sender would.
type fakeContext struct {
	ssrc webrtc.SSRC
	pt   webrtc.PayloadType
	ws   webrtc.TrackLocalWriter
}

func (f *fakeContext) CodecParameters() []webrtc.RTPCodecParameters {
	return []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, PayloadType: 111},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: f.pt},
	}
}
func (f *fakeContext) HeaderExtensions() []webrtc.RTPHeaderExtensionParameter { return nil }
func (f *fakeContext) SSRC() webrtc.SSRC                                      { return f.ssrc }
func (f *fakeContext) SSRCRetransmission() webrtc.SSRC                        { return 0 }
func (f *fakeContext) SSRCForwardErrorCorrection() webrtc.SSRC                { return 0 }
func (f *fakeContext) WriteStream() webrtc.TrackLocalWriter                   { return f.ws }
func (f *fakeContext) ID() string                                             { return fmt.Sprint(f.ssrc) }
func (f *fakeContext) RTCPReader() interceptor.RTCPReader                     { return nil }

var vp8 = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}

// newTestSource builds a source with n bound down tracks.
func newTestSource(tb testing.TB, n int, kr KeyframeRequester) (*source, []*marshalWriter) {
	s, err := New(Config{KeyframeInterval: time.Hour})
	if err != nil {
		tb.Fatal(err)
	}
	ch := newChannel(s, "bench")
	src := newSource(ch, TrackInfo{ID: "t", StreamID: "P", Kind: webrtc.RTPCodecTypeVideo, Codec: vp8}, kr, nil)
	ws := make([]*marshalWriter, n)
	for i := range ws {
		ws[i] = &marshalWriter{}
		d := newDownTrack(src, nil)
		if _, err := d.Bind(&fakeContext{ssrc: webrtc.SSRC(1000 + i), pt: webrtc.PayloadType(96 + i%2), ws: ws[i]}); err != nil {
			tb.Fatal(err)
		}
		src.addSub(d)
	}
	return src, ws
}

func testPacket(ext bool) []byte {
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 100, SequenceNumber: 7, Timestamp: 9000, SSRC: 42, Marker: true}, Payload: make([]byte, 1100)}
	if ext {
		p.Header.Extension = true
		_ = p.SetExtension(1, []byte("0"))
		_ = p.SetExtension(3, []byte{1, 2, 3})
	}
	b, _ := p.Marshal()
	return b
}

func TestWriteRewritesPerSubscriber(t *testing.T) {
	src, ws := newTestSource(t, 3, nil)
	pkt := testPacket(true)
	if err := src.write(pkt); err != nil {
		t.Fatal(err)
	}
	for i, w := range ws {
		var got rtp.Packet
		if err := got.Unmarshal(w.buf[:w.n]); err != nil {
			t.Fatal(err)
		}
		if got.SSRC != uint32(1000+i) || got.PayloadType != uint8(96+i%2) || got.Extension || got.SequenceNumber != 7 || !got.Marker || len(got.Payload) != 1100 {
			t.Fatalf("subscriber %d got %v", i, got.Header)
		}
	}
	var tapped int
	fn := func(p []byte) { tapped = len(p) }
	(&TrackTap{src: src}).SetSink(fn)
	if err := src.write(nextSeq(pkt)); err != nil || tapped != len(pkt) {
		t.Fatalf("tap got %d bytes, err %v", tapped, err)
	}
	if allocs := testing.AllocsPerRun(100, func() { _ = src.write(nextSeq(pkt)) }); allocs != 0 {
		t.Fatalf("write allocates %v per packet", allocs)
	}
}

func TestHasKeyframeRequest(t *testing.T) {
	mk := func(pkts ...rtcp.Packet) []byte {
		b, err := rtcp.Marshal(pkts)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	rr := &rtcp.ReceiverReport{SSRC: 1}
	cases := []struct {
		b    []byte
		want bool
	}{
		{mk(rr), false},
		{mk(rr, &rtcp.PictureLossIndication{MediaSSRC: 2}), true},
		{mk(&rtcp.FullIntraRequest{MediaSSRC: 2, FIR: []rtcp.FIREntry{{SSRC: 2}}}), true},
		{mk(&rtcp.TransportLayerNack{MediaSSRC: 2, Nacks: []rtcp.NackPair{{PacketID: 1}}}), false},
		{mk(rr)[:6], false},
		{nil, false},
	}
	for i, c := range cases {
		if got := hasKeyframeRequest(c.b); got != c.want {
			t.Errorf("case %d: got %v", i, got)
		}
	}
}

func FuzzHasKeyframeRequest(f *testing.F) {
	pli, _ := rtcp.Marshal([]rtcp.Packet{&rtcp.ReceiverReport{SSRC: 1}, &rtcp.PictureLossIndication{MediaSSRC: 2}})
	f.Add(pli)
	f.Add([]byte{0x80, 0xc9, 0x00, 0x01, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		got := hasKeyframeRequest(b)
		// Cross-check with pion's full parser on what it accepts.
		pkts, err := rtcp.Unmarshal(b)
		if err != nil {
			return
		}
		want := false
		for _, p := range pkts {
			switch p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				want = true
			}
		}
		if got != want {
			t.Fatalf("hasKeyframeRequest = %v, pion finds a keyframe request: %v", got, want)
		}
	})
}

func FuzzSourceWrite(f *testing.F) {
	f.Add(testPacket(false))
	f.Add(testPacket(true))
	f.Add([]byte{0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		src, ws := newTestSource(t, 2, nil)
		var h rtp.Header
		_, perr := h.Unmarshal(b)
		err := src.write(b)
		if (perr != nil) != (err != nil) {
			t.Fatalf("write err %v, parse err %v", err, perr)
		}
		if err != nil {
			return
		}
		for i, w := range ws {
			var got rtp.Header
			n, err := got.Unmarshal(w.buf[:w.n])
			if err != nil {
				t.Fatalf("forwarded packet does not parse: %v", err)
			}
			if got.SSRC != uint32(1000+i) || got.Extension || got.SequenceNumber != h.SequenceNumber || got.Timestamp != h.Timestamp {
				t.Fatalf("forwarded header %v from %v", got, h)
			}
			_ = n
		}
	})
}

func TestKeyframeRateLimit(t *testing.T) {
	s, _ := New(Config{KeyframeInterval: 50 * time.Millisecond})
	ch := newChannel(s, "kf")
	calls := make(chan time.Time, 100)
	src := newSource(ch, TrackInfo{ID: "t", StreamID: "P", Kind: webrtc.RTPCodecTypeVideo, Codec: vp8}, KeyframeRequesterFunc(func() { calls <- time.Now() }), nil)
	defer src.close()
	start := time.Now()
	src.requestKeyframe()
	select {
	case <-calls:
	default:
		t.Fatal("the first request did not pass at once")
	}
	for range 49 {
		src.requestKeyframe() // coalesced into one at +50ms
	}
	// Compared with start, which is before the first request: no timing
	// assumption about a loaded machine.
	if since := (<-calls).Sub(start); since < 50*time.Millisecond {
		t.Fatalf("second request %v after the first, want >= 50ms", since)
	}
	select {
	case <-calls:
		t.Fatal("more than two requests for one burst")
	case <-time.After(120 * time.Millisecond):
	}
	// Audio tracks never ask for keyframes.
	a := newSource(ch, TrackInfo{ID: "a", StreamID: "P", Kind: webrtc.RTPCodecTypeAudio}, KeyframeRequesterFunc(func() { t.Error("audio keyframe request") }), nil)
	a.requestKeyframe()
}

// BenchmarkFanOutWrite compares the per-packet work of our fan-out with
// pion's TrackLocalStaticRTP, both bound to N writers that marshal the
// packet (everything but SRTP and the socket, which are the same for both).
func BenchmarkFanOutWrite(b *testing.B) {
	pkt := testPacket(false)
	for _, n := range []int{1, 10, 50} {
		b.Run(fmt.Sprintf("impl=shoal/N=%d", n), func(b *testing.B) {
			src, _ := newTestSource(b, n, nil)
			b.ReportAllocs()
			for b.Loop() {
				if err := src.write(nextSeq(pkt)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/fwd")
		})
		b.Run(fmt.Sprintf("impl=pion/N=%d", n), func(b *testing.B) {
			track, err := webrtc.NewTrackLocalStaticRTP(vp8, "t", "P")
			if err != nil {
				b.Fatal(err)
			}
			for i := range n {
				if _, err := track.Bind(&fakeContext{ssrc: webrtc.SSRC(1000 + i), pt: 96, ws: &marshalWriter{}}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := track.Write(nextSeq(pkt)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/fwd")
		})
	}
}
