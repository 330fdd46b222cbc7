package sfu_test

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/sfu"
)

// simTrack is one simulcast layer of a test publisher, sent the way a
// browser sends it: VP8 with picture ids and TL0PICIDX, the mid and rid
// header extensions on every packet, its own SSRC, sequence numbers and
// timestamps, and a keyframe on its first frame and after each PLI.
type simTrack struct {
	rid   string
	layer int

	mu           sync.Mutex
	ssrc         uint32
	pt           uint8
	ws           webrtc.TrackLocalWriter
	midID, ridID uint8
	mid          string
	size         int // bytes a frame; 0: one small packet
	seq          uint16
	ts           uint32
	pic          uint16
	tl0          uint8
	frames       int

	keyNext atomic.Bool
	plis    atomic.Int64
}

func newSimTracks() []*simTrack {
	ls := make([]*simTrack, 3)
	for i := range ls {
		// Different bases per layer, so a forward without rewrite shows.
		ls[i] = &simTrack{rid: "r" + string(rune('0'+i)), layer: i, seq: uint16(1000 + 20000*i), ts: uint32(5000 + 1e6*i), pic: uint16(100 + 9000*i), tl0: uint8(10 + 70*i)}
		ls[i].keyNext.Store(true)
	}
	return ls
}

func (t *simTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, e := range ctx.HeaderExtensions() {
		switch e.URI {
		case sdp.SDESMidURI:
			t.midID = uint8(e.ID)
		case sdp.SDESRTPStreamIDURI:
			t.ridID = uint8(e.ID)
		}
	}
	for _, c := range ctx.CodecParameters() {
		if strings.EqualFold(c.MimeType, webrtc.MimeTypeVP8) {
			t.ssrc, t.pt, t.ws = uint32(ctx.SSRC()), uint8(c.PayloadType), ctx.WriteStream()
			return c, nil
		}
	}
	return webrtc.RTPCodecParameters{}, webrtc.ErrUnsupportedCodec
}

func (t *simTrack) Unbind(webrtc.TrackLocalContext) error {
	t.mu.Lock()
	t.ws = nil
	t.mu.Unlock()
	return nil
}

func (t *simTrack) ID() string                { return "cam" }
func (t *simTrack) RID() string               { return t.rid }
func (t *simTrack) StreamID() string          { return "local" }
func (t *simTrack) Kind() webrtc.RTPCodecType { return webrtc.RTPCodecTypeVideo }

// writeFrame sends one frame in one packet: the VP8 descriptor (S, picture
// id, TL0PICIDX), the VP8 header's keyframe bit, then 'A'+layer and the
// layer's frame count.
func (t *simTrack) writeFrame() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ws == nil || t.mid == "" {
		return
	}
	key := t.keyNext.Swap(false)
	payload := simPayload(t.layer, t.pic, t.tl0, key, t.frames)
	// A frame of size bytes goes in packets of up to 1000: the first
	// starts the frame (S), the last has the marker; each carries the
	// descriptor and the tag, then filler.
	packets := max(1, (t.size+999)/1000)
	for i := range packets {
		p := payload
		if i > 0 {
			p = append([]byte{payload[0] &^ 0x10}, payload[1:]...) // S cleared
		}
		if t.size > 0 {
			p = append(p, make([]byte, min(1000, t.size-1000*i)-len(p))...)
		}
		h := rtp.Header{Version: 2, Marker: i == packets-1, PayloadType: t.pt, SequenceNumber: t.seq, Timestamp: t.ts, SSRC: t.ssrc}
		_ = h.SetExtension(t.midID, []byte(t.mid))
		_ = h.SetExtension(t.ridID, []byte(t.rid))
		_, _ = t.ws.WriteRTP(&h, p)
		t.seq++
	}
	t.ts += 3000
	t.pic = (t.pic + 1) & 0x7fff
	t.tl0++
	t.frames++
}

// simPayload is the payload of one frame of a layer: the VP8 descriptor
// (S, 15-bit picture id, TL0PICIDX), the VP8 header's keyframe bit, then
// 'A'+layer and the layer's frame count (what recvFrame reads back).
func simPayload(layer int, pic uint16, tl0 uint8, key bool, frames int) []byte {
	vp8 := byte(0x01)
	if key {
		vp8 = 0x00
	}
	return []byte{0x90, 0xC0, 0x80 | byte(pic>>8), byte(pic), tl0, vp8, 'A' + byte(layer), byte(frames >> 8), byte(frames)}
}

// addLayers attaches the layers as the SDK does: addTrack after SRD, which
// takes the upstream video m-line, with the other layers as encodings of
// its sender; their PLIs set keyNext.
func (c *testClient) addLayers() error {
	sender, err := c.pc.AddTrack(c.layers[0])
	if err != nil {
		return err
	}
	for _, l := range c.layers[1:] {
		if err := sender.AddEncoding(l); err != nil {
			return err
		}
	}
	var mid string
	for _, tr := range c.pc.GetTransceivers() {
		if tr.Sender() == sender {
			mid = tr.Mid()
		}
	}
	for _, l := range c.layers {
		l.mu.Lock()
		l.mid = mid
		l.mu.Unlock()
		go func() {
			for {
				pkts, _, err := sender.ReadSimulcastRTCP(l.rid)
				if err != nil {
					return
				}
				for _, p := range pkts {
					if _, ok := p.(*rtcp.PictureLossIndication); ok {
						l.plis.Add(1)
						l.keyNext.Store(true)
					}
				}
			}
		}()
	}
	return nil
}

// dropRecvSimulcast removes from a pion answer the a=rid recv and
// a=simulcast:recv lines it copies from the offer's receive simulcast
// (pion v4.2.26 writes them back whatever the direction); the send lines
// of its own encodings stay.
func dropRecvSimulcast(s string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(s, "\r\n") {
		if strings.HasPrefix(l, "a=rid:") && strings.HasSuffix(l, " recv\r\n") || strings.HasPrefix(l, "a=simulcast:recv") {
			continue
		}
		b.WriteString(l)
	}
	return b.String()
}

// pumpLayers sends a frame on every layer every 10 ms until the test ends.
func (c *testClient) pumpLayers(t testing.TB) {
	every(t, 10*time.Millisecond, func(int) {
		for _, l := range c.layers {
			l.writeFrame()
		}
	})
}

// recvFrame is a received packet of a simTrack.
type recvFrame struct {
	hdr    rtp.Header
	layer  byte // 'A' + layer
	key    bool
	pic    uint16
	tl0    uint8
	frames int
}

func (c *testClient) frames(key string) []recvFrame {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []recvFrame
	for i, p := range c.received[key] {
		if len(p) < 9 {
			continue
		}
		out = append(out, recvFrame{hdr: c.hdrs[key][i], layer: p[6], key: p[5]&1 == 0, pic: uint16(p[2]&0x7f)<<8 | uint16(p[3]), tl0: p[4], frames: int(p[7])<<8 | int(p[8])})
	}
	return out
}

func (c *testClient) switchEvents() []sfu.SimulcastSwitch {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]sfu.SimulcastSwitch(nil), c.switches...)
}

// lastLayer returns the layer tag of the last frame received, 0 if none.
func lastLayer(fs []recvFrame) byte {
	if len(fs) == 0 {
		return 0
	}
	return fs[len(fs)-1].layer
}

// checkContinuous fails unless fs is one stream: sequence numbers, picture
// ids and TL0PICIDX each one more than the last, timestamps increasing, one
// SSRC, and every change of layer on a keyframe.
func checkContinuous(t *testing.T, fs []recvFrame) {
	t.Helper()
	for i := 1; i < len(fs); i++ {
		a, b := fs[i-1], fs[i]
		switch {
		case b.hdr.SequenceNumber != a.hdr.SequenceNumber+1:
			t.Fatalf("frame %d: sequence number %d after %d", i, b.hdr.SequenceNumber, a.hdr.SequenceNumber)
		case int32(b.hdr.Timestamp-a.hdr.Timestamp) <= 0:
			t.Fatalf("frame %d: timestamp %d after %d", i, b.hdr.Timestamp, a.hdr.Timestamp)
		case b.pic != (a.pic+1)&0x7fff || b.tl0 != a.tl0+1:
			t.Fatalf("frame %d: picture id %d, tl0 %d after %d, %d", i, b.pic, b.tl0, a.pic, a.tl0)
		case b.hdr.SSRC != a.hdr.SSRC:
			t.Fatalf("frame %d: SSRC %d after %d", i, b.hdr.SSRC, a.hdr.SSRC)
		case b.layer != a.layer && !b.key:
			t.Fatalf("frame %d: layer %c after %c on a delta frame", i, b.layer, a.layer)
		case b.layer == a.layer && b.frames != a.frames+1:
			t.Fatalf("frame %d: layer %c frame %d after %d (lost or reordered)", i, b.layer, b.frames, a.frames)
		}
	}
}

func TestSimulcastOfferHasRids(t *testing.T) {
	s := newSFU(t, nil)
	pub := join(t, s, clientOpts{channel: "sc", id: "pub", role: sfu.RoleSendonly, video: true, simulcast: true})
	o := pub.conn.Offer()
	if !o.Simulcast || len(o.Encodings) != 3 || o.Encodings[0].RID != sfu.RidR0 || o.Encodings[2].RID != sfu.RidR2 {
		t.Fatalf("offer simulcast %v encodings %+v", o.Simulcast, o.Encodings)
	}
	// The text added to the offer keeps what sora-js-sdk needs of it: the
	// server's candidates inside the SDP, and the upstream video as the
	// first video m-line (the SDK attaches its camera to that one).
	if !strings.Contains(o.SDP, "a=candidate:") {
		t.Error("simulcast offer carries no candidates")
	}
	video, firstVideo := "", ""
	for _, sec := range strings.Split(o.SDP, "\r\nm=")[1:] {
		if attr(sec, "mid") == o.Mids.Video {
			video = sec
		}
		if firstVideo == "" && strings.HasPrefix(sec, "video ") {
			firstVideo = attr(sec, "mid")
		}
	}
	if firstVideo != o.Mids.Video {
		t.Errorf("first video m-line is mid %q, want the upstream one %q", firstVideo, o.Mids.Video)
	}
	for _, want := range []string{"a=rid:r0 recv", "a=rid:r1 recv", "a=rid:r2 recv", "a=simulcast:recv r0;r1;r2", "a=recvonly", sdp.SDESRTPStreamIDURI, sdp.SDESMidURI} {
		if !strings.Contains(video, want) {
			t.Errorf("video m-line lacks %q:\n%s", want, video)
		}
	}
	// A subscriber is offered no simulcast, and a publisher that did not
	// ask for it neither.
	sub := join(t, s, clientOpts{channel: "sc", id: "sub", role: sfu.RoleSendrecv, video: true})
	if o := sub.conn.Offer(); o.Simulcast || o.Encodings != nil || strings.Contains(o.SDP, "a=simulcast") {
		t.Fatalf("non-simulcast offer has simulcast: %v %v", o.Simulcast, o.Encodings)
	}
}

// TestSimulcastEncodingsScalabilityMode: a VP9 or AV1 simulcast publisher
// is given scalabilityMode L1T3 on each encoding (without it Chromium sends
// VP9 simulcast as one stream: only r0), a VP8 or H.264 one none, nor one
// with the server's order (VP8 first).
func TestSimulcastEncodingsScalabilityMode(t *testing.T) {
	for _, c := range []struct{ mime, mode string }{
		{"video/VP9", "L1T3"}, {"video/AV1", "L1T3"}, {"video/VP8", ""}, {"video/H264", ""}, {"", ""},
	} {
		enc := sfu.SimulcastEncodings(c.mime)
		if len(enc) != 3 {
			t.Fatalf("%s: %d encodings", c.mime, len(enc))
		}
		for _, e := range enc {
			if e.ScalabilityMode != c.mode {
				t.Errorf("%s: %s has scalabilityMode %q, want %q", c.mime, e.RID, e.ScalabilityMode, c.mode)
			}
		}
	}
}

// TestSimulcastLayerPerSubscriber: a publisher sends three layers; a
// subscriber asking for r0 gets r0 and one asking for r2 gets r2, each as
// one stream whose SSRC is its sender's.
func TestSimulcastLayerPerSubscriber(t *testing.T) {
	s := newSFU(t, nil)
	pub := join(t, s, clientOpts{channel: "sc", id: "pub", role: sfu.RoleSendonly, video: true, simulcast: true})
	pub.pumpLayers(t)
	low := join(t, s, clientOpts{channel: "sc", id: "low", role: sfu.RoleRecvonly, rid: sfu.RidR0})
	high := join(t, s, clientOpts{channel: "sc", id: "high", role: sfu.RoleRecvonly, rid: sfu.RidR2})
	def := join(t, s, clientOpts{channel: "sc", id: "def", role: sfu.RoleRecvonly})
	key := "pub/pub-video"
	testutil.Eventually(t, func() bool {
		return lastLayer(low.frames(key)) == 'A' && lastLayer(high.frames(key)) == 'C' && lastLayer(def.frames(key)) == 'A' &&
			len(low.frames(key)) > 30 && len(def.frames(key)) > 30
	}, wait, "subscribers receive their layers")
	// A subscriber may start on another layer while r0's first packets
	// are on their way; once on r0 it stays there.
	for name, c := range map[string]*testClient{"low": low, "def": def} {
		fs := c.frames(key)
		first := slices.IndexFunc(fs, func(f recvFrame) bool { return f.layer == 'A' })
		for _, f := range fs[first:] {
			if f.layer != 'A' {
				t.Fatalf("%s got layer %c after r0", name, f.layer)
			}
		}
	}
	// high may start on a lower layer while r2's first packets are on
	// their way, but ends on r2, and switches only on keyframes.
	fs := high.frames(key)
	checkContinuous(t, fs)
	checkContinuous(t, low.frames(key))
	// The SSRC is the subscriber's sender's, declared in its offer.
	for name, c := range map[string]*testClient{"low": low, "high": high} {
		ssrc := c.frames(key)[0].hdr.SSRC
		if !strings.Contains(c.lastOffer(), "a=ssrc:"+itoa(ssrc)+" ") {
			t.Fatalf("%s: SSRC %d not in its offer", name, ssrc)
		}
	}
	if req, cur := high.conn.SimulcastRid("pub"); req != sfu.RidR2 || cur != sfu.RidR2 {
		t.Fatalf("high: requested %s, current %s", req, cur)
	}
}

// TestSimulcastSwitchSeamless: switching a subscriber's layer at run time
// asks the publisher for a keyframe of the new layer, switches on it and
// keeps one continuous stream (sequence numbers, timestamps, picture ids);
// the subscriber is told of the switch; none stops the video.
func TestSimulcastSwitchSeamless(t *testing.T) {
	s := newSFU(t, nil)
	pub := join(t, s, clientOpts{channel: "sc", id: "pub", role: sfu.RoleSendonly, video: true, simulcast: true})
	pub.pumpLayers(t)
	sub := join(t, s, clientOpts{channel: "sc", id: "sub", role: sfu.RoleRecvonly, rid: sfu.RidR0})
	key := "pub/pub-video"
	testutil.Eventually(t, func() bool { return len(sub.frames(key)) > 20 && lastLayer(sub.frames(key)) == 'A' }, wait, "r0 flows")
	started := len(sub.switchEvents()) // the start (and a layer taken before r0 came)
	plis := pub.layers[2].plis.Load()
	if err := sub.conn.SetSimulcastRid("pub", sfu.RidR2); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, func() bool { return lastLayer(sub.frames(key)) == 'C' }, wait, "switched to r2")
	if pub.layers[2].plis.Load() == plis {
		t.Fatal("no keyframe request to r2 on the switch")
	}
	testutil.Eventually(t, func() bool { return len(sub.switchEvents()) == started+1 }, wait, "switch reported")
	if ev := sub.switchEvents()[started]; ev.Previous != sfu.RidR0 || ev.Current != sfu.RidR2 || ev.Requested != sfu.RidR2 || ev.Trigger != sfu.TriggerReceiver || ev.SenderConnectionID != "pub" {
		t.Fatalf("switch event %+v", ev)
	}
	// Down again, to r1, through the admin-style call for every publisher.
	if err := sub.conn.SetSimulcastRid("", sfu.RidR1); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, func() bool { return lastLayer(sub.frames(key)) == 'B' }, wait, "switched to r1")
	n := len(sub.frames(key))
	testutil.Eventually(t, func() bool { return len(sub.frames(key)) > n+20 }, wait, "r1 flows")
	checkContinuous(t, sub.frames(key))
	layers := map[byte]bool{}
	for _, f := range sub.frames(key) {
		layers[f.layer] = true
	}
	if len(layers) != 3 {
		t.Fatalf("layers seen %v", layers)
	}

	if err := sub.conn.SetSimulcastRid("pub", sfu.RidNone); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	n = len(sub.frames(key))
	time.Sleep(300 * time.Millisecond)
	if got := len(sub.frames(key)); got != n {
		t.Fatalf("none: %d frames still came", got-n)
	}
	if _, cur := sub.conn.SimulcastRid("pub"); cur != sfu.RidNone {
		t.Fatalf("current %s after none", cur)
	}
	// And back: it starts again on a keyframe, continuing the stream.
	if err := sub.conn.SetSimulcastRid("pub", sfu.RidR0); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, func() bool { return len(sub.frames(key)) > n+20 }, wait, "r0 again")
	checkContinuous(t, sub.frames(key))
	if err := sub.conn.SetSimulcastRid("pub", "r3"); err == nil {
		t.Fatal("r3 accepted")
	}
}

// TestSimulcastFallsBackWhenLayerStops: a subscriber of r2 gets r1 when
// the publisher stops sending r2, and r2 again when it comes back.
func TestSimulcastFallsBackWhenLayerStops(t *testing.T) {
	s := newSFU(t, nil)
	pub := join(t, s, clientOpts{channel: "sc", id: "pub", role: sfu.RoleSendonly, video: true, simulcast: true})
	var stopped atomic.Bool
	every(t, 10*time.Millisecond, func(int) {
		for _, l := range pub.layers {
			if l.layer != 2 || !stopped.Load() {
				l.writeFrame()
			}
		}
	})
	sub := join(t, s, clientOpts{channel: "sc", id: "sub", role: sfu.RoleRecvonly, rid: sfu.RidR2})
	key := "pub/pub-video"
	testutil.Eventually(t, func() bool { return lastLayer(sub.frames(key)) == 'C' }, wait, "r2 flows")
	stopped.Store(true)
	testutil.Eventually(t, func() bool { return lastLayer(sub.frames(key)) == 'B' }, wait, "falls back to r1")
	stopped.Store(false)
	testutil.Eventually(t, func() bool { return lastLayer(sub.frames(key)) == 'C' }, wait, "back to r2")
	checkContinuous(t, sub.frames(key))
	evs := sub.switchEvents()
	if len(evs) < 2 || evs[len(evs)-2].Trigger != sfu.TriggerSender || evs[len(evs)-2].Current != sfu.RidR1 {
		t.Fatalf("switch events %+v", evs)
	}
}

func itoa(v uint32) string {
	var b [10]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			return string(b[i:])
		}
	}
}

// TestSimulcastRemoteTrack: a simulcast track added with AddRemoteTrack
// (as the relay does) takes its layers by WriteLayerRTP; its subscribers
// get their layers, keyframe requests go to each layer's requester, and
// OnDemand follows which layers the subscribers want.
func TestSimulcastRemoteTrack(t *testing.T) {
	s := newSFU(t, nil)
	ch := channel(t, s, "rm")
	w, err := ch.AddRemoteTrack(sfu.TrackInfo{ID: "P-video", StreamID: "P", Kind: webrtc.RTPCodecTypeVideo, Codec: vp8, Simulcast: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	if err := w.WriteRTP(vp8FrameOf(0, 0, true)); err == nil {
		t.Fatal("WriteRTP on a simulcast track accepted")
	}
	var mu sync.Mutex
	demand := map[sfu.SimulcastRid]bool{}
	var changes []string
	w.OnDemand(func(rid sfu.SimulcastRid, wanted bool) {
		mu.Lock()
		defer mu.Unlock()
		demand[rid] = wanted
		changes = append(changes, fmt.Sprintf("%s=%v", rid, wanted))
	})
	wanted := func() string {
		mu.Lock()
		defer mu.Unlock()
		var out []string
		for _, r := range []sfu.SimulcastRid{sfu.RidR0, sfu.RidR1, sfu.RidR2} {
			if demand[r] {
				out = append(out, string(r))
			}
		}
		return strings.Join(out, ",")
	}
	var keys [3]atomic.Bool
	for l, rid := range []sfu.SimulcastRid{sfu.RidR0, sfu.RidR1, sfu.RidR2} {
		keys[l].Store(true)
		if err := w.AddLayer(rid, sfu.KeyframeRequesterFunc(func() { keys[l].Store(true) })); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.AddLayer("r5", nil); err == nil {
		t.Fatal("layer r5 accepted")
	}
	if got := wanted(); got != "" {
		t.Fatalf("wanted %q with no subscriber", got)
	}
	every(t, 10*time.Millisecond, func(i int) {
		for l := range 3 {
			_ = w.WriteLayerRTP([]sfu.SimulcastRid{sfu.RidR0, sfu.RidR1, sfu.RidR2}[l], vp8FrameOf(l, i, keys[l].Swap(false)))
		}
	})
	low := join(t, s, clientOpts{channel: "rm", id: "low", role: sfu.RoleRecvonly, rid: sfu.RidR0})
	high := join(t, s, clientOpts{channel: "rm", id: "high", role: sfu.RoleRecvonly, rid: sfu.RidR2})
	key := "P/P-video"
	testutil.Eventually(t, func() bool {
		return lastLayer(low.frames(key)) == 'A' && lastLayer(high.frames(key)) == 'C' && wanted() == "r0,r2"
	}, wait, "low gets r0, high r2, r0 and r2 wanted")
	checkContinuous(t, high.frames(key))
	// high leaves: r2 is no longer wanted; low asks for none: nothing is.
	_ = high.conn.Close()
	testutil.Eventually(t, func() bool { return wanted() == "r0" }, wait, "only r0 wanted")
	if err := low.conn.SetSimulcastRid("", sfu.RidNone); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, func() bool { return wanted() == "" }, wait, "nothing wanted")
	if err := low.conn.SetSimulcastRid("P", sfu.RidR1); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, func() bool { return lastLayer(low.frames(key)) == 'B' && wanted() == "r1" }, wait, "low gets r1, only r1 wanted")
	mu.Lock()
	t.Logf("demand changes: %v", changes)
	mu.Unlock()
}

// vp8FrameOf is frame i of layer l, in one RTP packet of that layer's own
// numbering (as a publisher sends it).
func vp8FrameOf(l, i int, key bool) []byte {
	p := rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, PayloadType: 96, SequenceNumber: uint16(1000*l*7 + i), Timestamp: uint32(90000*l + 3000*i), SSRC: uint32(10 + l)},
		Payload: simPayload(l, uint16(500*l+i)&0x7fff, uint8(30*l+i), key, i)}
	b, _ := p.Marshal()
	return b
}

// lastSwitch returns the last switch event of c, the zero value if none.
func lastSwitch(c *testClient) sfu.SimulcastSwitch {
	evs := c.switchEvents()
	if len(evs) == 0 {
		return sfu.SimulcastSwitch{}
	}
	return evs[len(evs)-1]
}

// TestSimulcastSwitchEventsStartAndPause: a subscriber is told when its
// first layer starts (from none), when its video stops for none (to none)
// and when it starts again (from none).
func TestSimulcastSwitchEventsStartAndPause(t *testing.T) {
	s := newSFU(t, nil)
	pub := join(t, s, clientOpts{channel: "sc", id: "pub", role: sfu.RoleSendonly, video: true, simulcast: true})
	pub.pumpLayers(t)
	sub := join(t, s, clientOpts{channel: "sc", id: "sub", role: sfu.RoleRecvonly, rid: sfu.RidR1})
	key := "pub/pub-video"
	testutil.Eventually(t, func() bool { return lastLayer(sub.frames(key)) == 'B' && lastSwitch(sub).Current == sfu.RidR1 }, wait, "r1 flows, reported")
	if ev := sub.switchEvents()[0]; ev.Previous != sfu.RidNone || ev.Current == sfu.RidNone || ev.Requested != sfu.RidR1 || ev.SenderConnectionID != "pub" {
		t.Fatalf("first switch event %+v: want the start, from none", ev)
	}
	if err := sub.conn.SetSimulcastRid("pub", sfu.RidNone); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, func() bool { return lastSwitch(sub).Current == sfu.RidNone }, wait, "the stop reported")
	if ev := lastSwitch(sub); ev.Previous != sfu.RidR1 || ev.Requested != sfu.RidNone || ev.Trigger != sfu.TriggerReceiver {
		t.Fatalf("stop event %+v", ev)
	}
	if err := sub.conn.SetSimulcastRid("pub", sfu.RidR0); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, func() bool { return lastSwitch(sub).Current == sfu.RidR0 }, wait, "the restart reported")
	if ev := lastSwitch(sub); ev.Previous != sfu.RidNone || ev.Trigger != sfu.TriggerReceiver {
		t.Fatalf("restart event %+v", ev)
	}
	checkContinuous(t, sub.frames(key))
}

// TestSimulcastAuto: a subscriber that asks for auto (at join or later)
// gets the highest layer its bandwidth fits (here, unlimited: r2); its
// switch events say auto was asked for and, with congestion control on,
// which layers it allows; with congestion control off, none.
func TestSimulcastAuto(t *testing.T) {
	// auto is something to ask for, not a layer (the relay names layers).
	if _, err := sfu.ParseSimulcastRid("auto"); err == nil {
		t.Fatal("ParseSimulcastRid accepts auto as a layer")
	}
	if r, err := sfu.ParseSimulcastRequest("auto"); r != sfu.RidAuto || err != nil {
		t.Fatalf("ParseSimulcastRequest(auto): %q, %v", r, err)
	}
	if _, err := sfu.ParseSimulcastRequest("r3"); err == nil {
		t.Fatal("ParseSimulcastRequest accepts r3")
	}
	for _, off := range []bool{false, true} {
		t.Run(map[bool]string{false: "cc", true: "nocc"}[off], func(t *testing.T) {
			s := newSFU(t, func(c *sfu.Config) { c.DisableCongestionControl = off })
			pub := join(t, s, clientOpts{channel: "sc", id: "pub", role: sfu.RoleSendonly, video: true, simulcast: true})
			pub.pumpLayers(t)
			sub := join(t, s, clientOpts{channel: "sc", id: "sub", role: sfu.RoleRecvonly, rid: sfu.RidAuto})
			key := "pub/pub-video"
			testutil.Eventually(t, func() bool { return lastLayer(sub.frames(key)) == 'C' && lastSwitch(sub).Current == sfu.RidR2 }, wait, "auto gets r2")
			ev := lastSwitch(sub)
			if ev.Requested != sfu.RidAuto {
				t.Fatalf("switch event %+v: requested is not auto", ev)
			}
			if want := []sfu.SimulcastRid{sfu.RidR0, sfu.RidR1, sfu.RidR2}; off && len(ev.AutoRids) != 0 || !off && !slices.Equal(ev.AutoRids, want) {
				t.Fatalf("auto rids %v with congestion control off %v", ev.AutoRids, off)
			}
			if req, cur := sub.conn.SimulcastRid("pub"); req != sfu.RidAuto || cur != sfu.RidR2 {
				t.Fatalf("requested %s, current %s", req, cur)
			}
			// From a named layer to auto at run time.
			if err := sub.conn.SetSimulcastRid("pub", sfu.RidR0); err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, func() bool { return lastLayer(sub.frames(key)) == 'A' }, wait, "r0")
			if err := sub.conn.SetSimulcastRid("", sfu.RidAuto); err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, func() bool { return lastLayer(sub.frames(key)) == 'C' && lastSwitch(sub).Requested == sfu.RidAuto }, wait, "auto again: r2")
			checkContinuous(t, sub.frames(key))
		})
	}
}
