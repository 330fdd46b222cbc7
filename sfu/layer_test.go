package sfu

import (
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

func TestKeyframeStart(t *testing.T) {
	cases := []struct {
		name    string
		k       codecKind
		payload []byte
		want    bool
	}{
		{"vp8 key, no ext", codecVP8, []byte{0x10, 0x00}, true},
		{"vp8 delta", codecVP8, []byte{0x10, 0x01}, false},
		{"vp8 key, not start", codecVP8, []byte{0x00, 0x00}, false},
		{"vp8 key, partition 1", codecVP8, []byte{0x11, 0x00}, false},
		{"vp8 key, picture id + tl0 + tid", codecVP8, []byte{0x90, 0xE0, 0x81, 0x02, 7, 0x20, 0x00}, true},
		{"vp8 delta, picture id 7 bits", codecVP8, []byte{0x90, 0x80, 0x05, 0x01}, false},
		{"vp8 truncated", codecVP8, []byte{0x90, 0x80}, false},
		{"vp9 key", codecVP9, []byte{0x08}, true},
		{"vp9 key with pic id and layers", codecVP9, []byte{0xA8, 0x80, 0x01, 0x00, 5}, true},
		{"vp9 inter", codecVP9, []byte{0x48}, false},
		{"vp9 not start", codecVP9, []byte{0x00}, false},
		{"vp9 spatial layer 1", codecVP9, []byte{0xA8, 0x80, 0x01, 0x02, 5}, false},
		{"h264 sps", codecH264, []byte{0x67, 0x42}, true},
		{"h264 idr", codecH264, []byte{0x65, 0x88}, true},
		{"h264 non-idr", codecH264, []byte{0x41, 0x9a}, false},
		{"h264 stap-a sps", codecH264, []byte{0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce}, true},
		{"h264 stap-a non-key", codecH264, []byte{0x78, 0x00, 0x02, 0x41, 0x42}, false},
		{"h264 stap-a bad size", codecH264, []byte{0x78, 0x00, 0x09, 0x67}, false},
		{"h264 fu-a idr start", codecH264, []byte{0x7c, 0x85, 0x00}, true},
		{"h264 fu-a idr middle", codecH264, []byte{0x7c, 0x05, 0x00}, false},
		{"h265 vps", codecH265, []byte{0x40, 0x01}, true},
		{"h265 trail", codecH265, []byte{0x02, 0x01}, false},
		{"h265 fu idr start", codecH265, []byte{0x62, 0x01, 0x93}, true},
		{"h265 ap vps", codecH265, []byte{0x60, 0x01, 0x00, 0x02, 0x40, 0x01}, true},
		{"av1 new sequence", codecAV1, []byte{0x18}, true},
		{"av1 other", codecAV1, []byte{0x10}, false},
		{"opus", codecOther, []byte{0x10, 0x00}, false},
		{"empty", codecVP8, nil, false},
	}
	for _, c := range cases {
		if got := isKeyframeStart(c.k, c.payload); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestCodecKindOf(t *testing.T) {
	for mime, want := range map[string]codecKind{"video/VP8": codecVP8, "video/vp9": codecVP9, "video/H264": codecH264, "video/H265": codecH265, "video/AV1": codecAV1, "audio/opus": codecOther, "video/rtx": codecOther, "VP8": codecOther} {
		if got := codecKindOf(mime); got != want {
			t.Errorf("%s: %v, want %v", mime, got, want)
		}
	}
}

func TestPickLayer(t *testing.T) {
	cases := []struct {
		want   int8
		active uint8
		keep   int8
		got    int8
	}{
		{2, 0b111, -1, 2},
		{2, 0b011, -1, 1},
		{2, 0b001, 1, 0},
		{0, 0b110, -1, 1},
		{1, 0b100, -1, 2},
		{-1, 0b111, 2, -1},
		{1, 0, 0, 0}, // nothing active: keep
	}
	for _, c := range cases {
		if got := pickLayer(c.want, c.active, c.keep); got != c.got {
			t.Errorf("pickLayer(%d, %03b, %d) = %d, want %d", c.want, c.active, c.keep, got, c.got)
		}
	}
}

func TestAddSimulcastRecv(t *testing.T) {
	in := "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=recvonly\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=recvonly\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\na=sendonly\r\n"
	out := addSimulcastRecv(in, "1")
	want := "a=mid:1\r\na=recvonly\r\na=rid:r0 recv\r\na=rid:r1 recv\r\na=rid:r2 recv\r\na=simulcast:recv r0;r1;r2\r\nm=video"
	if !strings.Contains(out, want) || strings.Count(out, "a=simulcast") != 1 {
		t.Fatalf("got\n%s", out)
	}
	if again := addSimulcastRecv(out, "1"); again != out {
		t.Fatalf("added twice:\n%s", again)
	}
	// The last m-line too.
	if out := addSimulcastRecv(in, "2"); !strings.HasSuffix(out, "a=sendonly\r\na=rid:r0 recv\r\na=rid:r1 recv\r\na=rid:r2 recv\r\na=simulcast:recv r0;r1;r2\r\n") {
		t.Fatalf("got\n%s", out)
	}
	if out := addSimulcastRecv(in, "7"); out != in {
		t.Fatalf("changed an SDP without that mid:\n%s", out)
	}
}

// newSimTestSource builds a simulcast source with n subscribers wanting
// want, bound to marshalWriters.
func newSimTestSource(tb testing.TB, n int, want SimulcastRid) (*source, []*downTrack, []*marshalWriter) {
	return newSimTestSourceCodec(tb, n, want, vp8)
}

// newSimTestSourceCodec is newSimTestSource with a codec of its own.
func newSimTestSourceCodec(tb testing.TB, n int, want SimulcastRid, codec webrtc.RTPCodecCapability) (*source, []*downTrack, []*marshalWriter) {
	s, err := New(Config{KeyframeInterval: 1})
	if err != nil {
		tb.Fatal(err)
	}
	ch := newChannel(s, "bench")
	src := newSource(ch, TrackInfo{ID: "t", StreamID: "P", Kind: webrtc.RTPCodecTypeVideo, Codec: codec, Simulcast: true}, nil, nil)
	for l := int8(0); l < maxLayers; l++ {
		src.sim.addLayer(l, KeyframeRequesterFunc(func() {}))
	}
	ws := make([]*marshalWriter, n)
	ds := make([]*downTrack, n)
	for i := range ws {
		ws[i] = &marshalWriter{}
		d := newDownTrack(src, nil)
		d.sim = newSimSub(want)
		if _, err := d.Bind(&codecContext{fakeContext{ssrc: webrtc.SSRC(1000 + i), pt: 96, ws: ws[i]}, codec}); err != nil {
			tb.Fatal(err)
		}
		src.addSub(d)
		ds[i] = d
	}
	return src, ds, ws
}

// codecContext is a fakeContext whose video codec is codec.
type codecContext struct {
	fakeContext
	codec webrtc.RTPCodecCapability
}

func (f *codecContext) CodecParameters() []webrtc.RTPCodecParameters {
	c := f.fakeContext.CodecParameters()
	c[1].RTPCodecCapability = f.codec
	return c
}

// vp8Packet is one single-packet VP8 frame of a layer, with a 15-bit
// picture id and a TL0PICIDX.
func vp8Packet(seq uint16, ts uint32, pic uint16, tl0 uint8, key bool) []byte {
	vp8 := byte(1)
	if key {
		vp8 = 0
	}
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: ts, SSRC: 5, Marker: true}, Payload: make([]byte, 1100)}
	copy(p.Payload, []byte{0x90, 0xC0, 0x80 | byte(pic>>8), byte(pic), tl0, vp8})
	b, _ := p.Marshal()
	return b
}

// TestWriteLayerSwitch drives the forwarder directly: a switch waits for a
// keyframe of the target layer, then continues the numbering.
func TestWriteLayerSwitch(t *testing.T) {
	src, ds, ws := newSimTestSource(t, 1, RidR0)
	w, d := ws[0], ds[0]
	read := func() (rtp.Packet, picIDs) {
		var p rtp.Packet
		if err := p.Unmarshal(w.buf[:w.n]); err != nil {
			t.Fatal(err)
		}
		ids, _ := parseVP8(p.Payload)
		return p, ids
	}
	// Layer 0 from seq 100, layer 2 from seq 5000; one frame every 10 ms.
	for i := range 5 {
		if err := src.writeLayer(0, vp8Packet(uint16(100+i), uint32(9000+3000*i), uint16(50+i), uint8(3+i), i == 0)); err != nil {
			t.Fatal(err)
		}
		if err := src.writeLayer(2, vp8Packet(uint16(5000+i), uint32(700000+3000*i), uint16(7000+i), uint8(90+i), false)); err != nil {
			t.Fatal(err)
		}
	}
	p, ids := read()
	if w.count != 5 || p.SequenceNumber != 104 || p.Timestamp != 21000 || ids.pic != 54 || ids.tl0 != 7 || p.SSRC != 1000 {
		t.Fatalf("layer 0: %d packets, last %v %+v", w.count, p.Header, ids)
	}
	d.sim.setWant(RidR2)
	// Delta frames of layer 2 are not forwarded, nor layer 0 once the
	// target is 2 (until the keyframe comes, layer 0 goes on).
	_ = src.writeLayer(2, vp8Packet(5005, 715000, 7005, 95, false))
	_ = src.writeLayer(0, vp8Packet(105, 24000, 55, 8, false))
	if w.count != 6 || d.sim.target.Load() != 2 || d.sim.cur.Load() != 0 {
		t.Fatalf("before the keyframe: %d packets, target %d cur %d", w.count, d.sim.target.Load(), d.sim.cur.Load())
	}
	_ = src.writeLayer(2, vp8Packet(5006, 718000, 7006, 96, true))
	p, ids = read()
	if w.count != 7 || p.SequenceNumber != 106 || int32(p.Timestamp-24000) <= 0 || ids.pic != 56 || ids.tl0 != 9 {
		t.Fatalf("switch packet %v %+v", p.Header, ids)
	}
	ts := p.Timestamp
	_ = src.writeLayer(0, vp8Packet(106, 27000, 56, 9, true)) // old layer: dropped
	_ = src.writeLayer(2, vp8Packet(5004, 712000, 7004, 94, false))
	if w.count != 7 {
		t.Fatalf("old layer or pre-switch packet forwarded: %d", w.count)
	}
	_ = src.writeLayer(2, vp8Packet(5007, 721000, 7007, 97, false))
	p, ids = read()
	if p.SequenceNumber != 107 || p.Timestamp != ts+3000 || ids.pic != 57 || ids.tl0 != 10 {
		t.Fatalf("after the switch %v %+v", p.Header, ids)
	}
	if d.sim.cur.Load() != 2 {
		t.Fatalf("cur %d", d.sim.cur.Load())
	}
}

func TestWriteLayerAllocs(t *testing.T) {
	src, ds, ws := newSimTestSource(t, 10, RidR0)
	for i, d := range ds {
		d.sim.setWant([]SimulcastRid{RidR0, RidR2}[i%2])
	}
	seq := [3]uint16{100, 2000, 9000}
	write := func(key bool) {
		for l := int8(0); l < maxLayers; l++ {
			_ = src.writeLayer(l, vp8Packet(seq[l], uint32(seq[l])*3000, seq[l]&0x7fff, uint8(seq[l]), key))
			seq[l]++
		}
	}
	write(true)
	for range 10 {
		write(false)
	}
	for _, d := range ds {
		if d.sim.cur.Load() < 0 {
			t.Fatal("a subscriber receives nothing")
		}
	}
	// Switch some, so that offsets and picture id rewrites are in use.
	for i, d := range ds {
		d.sim.setWant([]SimulcastRid{RidR2, RidR1}[i%2])
	}
	write(true)
	pkts := [3][]byte{}
	for l := range pkts {
		pkts[l] = vp8Packet(seq[l], uint32(seq[l])*3000, seq[l]&0x7fff, uint8(seq[l]), false)
	}
	forwarded := ws[0].count
	if allocs := testing.AllocsPerRun(100, func() {
		for l := int8(0); l < maxLayers; l++ {
			_ = src.writeLayer(l, nextSeq(pkts[l])) // a number seen is not forwarded again
		}
	}); allocs != 0 {
		t.Fatalf("writeLayer allocates %v per packet", allocs)
	}
	if ws[0].count-forwarded < 100 {
		t.Fatalf("%d packets forwarded while measured: the allocations of forwarding were not", ws[0].count-forwarded)
	}
}

func FuzzParsePicIDs(f *testing.F) {
	f.Add(byte(codecVP8), []byte{0x90, 0xE0, 0x81, 0x02, 7, 0x20, 0x00})
	f.Add(byte(codecVP9), []byte{0xA8, 0x80, 0x01, 0x00, 5})
	f.Add(byte(codecH264), []byte{0x78, 0x00, 0x02, 0x67, 0x42})
	f.Add(byte(codecAV1), []byte{0x58, 0x34, 0x40, 0x00})                         // W 1: one OBU with its extension (TID 2)
	f.Add(byte(codecAV1), []byte{0x08, 0x02, 0x12, 0x00, 0x03, 0x34, 0x20, 0x00}) // W 0: a temporal delimiter, then a frame OBU (TID 1)
	f.Fuzz(func(t *testing.T, k byte, p []byte) {
		kind := codecKind(k % 6)
		_ = isKeyframeStart(kind, p)
		d, ok := parsePicIDs(kind, p)
		if !ok {
			return
		}
		if d.hdrLen > len(p) || d.picAt >= len(p) && d.picAt != 0 || d.tl0At >= len(p) && d.tl0At != 0 || d.wide && d.picAt+1 >= len(p) {
			t.Fatalf("offsets out of the payload: %+v for %d bytes", d, len(p))
		}
		var st simSub
		st.tl0Off = 4
		_ = st.rewriteIDs(p, &d, 3)
	})
}

func TestActiveMask(t *testing.T) {
	ss := &simSource{}
	for l := range ss.layers {
		ss.layers[l].present.Store(true)
	}
	sec := int64(time.Second)
	now := 10 * sec
	ss.winStart = now
	// Layer 0 at 30 fps, layer 1 at one frame a second (a browser short of
	// bandwidth), layer 2 at 30 fps but silent for 2 s.
	ss.layers[0].lastSeen.Store(now + sec)
	ss.layers[1].lastSeen.Store(now + sec)
	ss.layers[2].lastSeen.Store(now - sec)
	ss.winFrames = [maxLayers]int32{30, 1, 30}
	active, seen := ss.activeMask(now + sec)
	if active != 0b001 || seen != 0b011 {
		t.Fatalf("active %03b seen %03b, want 001 and 011", active, seen)
	}
	// A new window: layer 1 picks up; its current window counts.
	ss.winFrames[1] = 5
	if active, _ := ss.activeMask(now + sec + sec/2); active != 0b011 {
		t.Fatalf("active %03b, want 011", active)
	}
	// After two silent windows nothing is active, though seen lately.
	if active, _ := ss.activeMask(now + 4*sec); active != 0 {
		t.Fatalf("active %03b after silence", active)
	}
}

// TestSNWindow: a sequence number seen again within the last 128 is a
// duplicate; a late one not seen before is not; the window follows wraps.
func TestSNWindow(t *testing.T) {
	var w snWindow
	seq := []struct {
		sn  uint16
		dup bool
	}{
		{65530, false}, {65531, false}, {65533, false}, {65531, true}, {65532, false}, {65532, true},
		{2, false}, {65535, false}, {65535, true}, {65533, true}, {70, false}, {2, true}, {65530, true},
		{150, false}, {70, true}, {71, false}, {72, false}, {72, true}, {149, false}, {73, false}, {149, true},
		{1000, false}, {999, false}, {1000, true}, {872, false}, {872, false}, {873, false}, {873, true}, {1064, false}, {1000, true}, {1001, false},
	}
	for i, c := range seq {
		if got := w.seen(c.sn); got != c.dup {
			t.Fatalf("step %d: %d seen again: %v, want %v", i, c.sn, got, c.dup)
		}
	}
}

// TestWriteLayerDropsDuplicates: a packet of a layer that arrives again (a
// browser's RTX "payload padding", a retransmission of one that came after
// all) is not forwarded again under the same number (the subscriber's SRTP
// drops it as a replay, after its transport-wide number was stamped: loss
// to the estimator), nor counted in the layer's bitrate; one that comes late
// for the first time is.
func TestWriteLayerDropsDuplicates(t *testing.T) {
	src, _, ws := newSimTestSource(t, 1, RidR0)
	w := ws[0]
	for _, sn := range []uint16{100, 101, 103, 101, 100, 103, 102, 102} {
		if err := src.writeLayer(0, vp8Packet(sn, uint32(sn)*3000, sn, uint8(sn), sn == 100)); err != nil {
			t.Fatal(err)
		}
	}
	if w.count != 4 {
		t.Fatalf("%d packets forwarded for 4 distinct ones and 4 duplicates", w.count)
	}
	bytes := src.sim.winBytes[0]
	for _, sn := range []uint16{103, 100, 102, 101} {
		_ = src.writeLayer(0, vp8Packet(sn, uint32(sn)*3000, sn, uint8(sn), false))
	}
	if w.count != 4 || src.sim.winBytes[0] != bytes {
		t.Fatalf("duplicates again: %d packets forwarded, layer bytes %d -> %d", w.count, bytes, src.sim.winBytes[0])
	}
}
