package sfu

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

func bufPacket(sn uint16, size int) []byte {
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: sn, Timestamp: uint32(sn) * 3000, SSRC: 42}, Payload: bytes.Repeat([]byte{byte(sn)}, size)}
	b, _ := p.Marshal()
	return b
}

func TestPacketBuffer(t *testing.T) {
	var b packetBuffer
	dst := make([]byte, bufSlotSize)
	if n := b.get(1, dst); n != 0 {
		t.Fatalf("empty buffer returned %d bytes", n)
	}
	// Across the sequence number wrap.
	for sn := uint16(65530); sn != 6; sn++ {
		b.add(sn, bufPacket(sn, 100))
	}
	for sn := uint16(65530); sn != 6; sn++ {
		if n := b.get(sn, dst); n != 112 || !bytes.Equal(dst[:n], bufPacket(sn, 100)) {
			t.Fatalf("packet %d: got %d bytes", sn, n)
		}
	}
	// A packet far ahead moves the window; one older than the window is
	// not kept (it would take a newer one's slot), one inside it is.
	b.add(600, bufPacket(600, 10))
	b.add(600-bufSlots, bufPacket(600-bufSlots, 10))
	if n := b.get(600-bufSlots, dst); n != 0 {
		t.Fatalf("a packet older than the window was kept")
	}
	if n := b.get(600, dst); n == 0 {
		t.Fatalf("packet 600 missing")
	}
	b.add(600-bufSlots+1, bufPacket(600-bufSlots+1, 10))
	if n := b.get(600-bufSlots+1, dst); n == 0 {
		t.Fatalf("a late packet inside the window was not kept")
	}
	// Too large to keep; a slot holding another number is not returned.
	b.add(601, make([]byte, bufSlotSize+1))
	if n := b.get(601, dst); n != 0 {
		t.Fatalf("an oversize packet was kept")
	}
	if n := b.get(600+bufSlots, dst); n != 0 {
		t.Fatalf("slot of 600 returned for %d", 600+bufSlots)
	}
}

func TestSequencer(t *testing.T) {
	var q sequencer
	q.push(10, 5010, 90000, 2, true, 7, 3)
	p, ok := q.get(10)
	if !ok || p.srcSN != 5010 || p.outTS != 90000 || p.layer != 2 || p.flags&seqIDs == 0 || p.picOff != 7 || p.tl0Off != 3 || p.resends != 0 {
		t.Fatalf("get(10) = %+v, %v", p, ok)
	}
	if _, ok := q.get(10 + seqSlots); ok {
		t.Fatalf("an entry was returned for another sequence number of its slot")
	}
	if _, ok := q.get(12); ok {
		t.Fatalf("an empty slot returned an entry")
	}
	q.push(11, 11, 1, -1, false, 0, 0)
	p, ok = q.get(11)
	if !ok || p.layer != -1 || p.flags&seqIDs != 0 {
		t.Fatalf("get(11) = %+v, %v", p, ok)
	}
	p.resends++
	// A new packet on the slot starts with no resends.
	q.push(11+seqSlots, 1, 1, -1, false, 0, 0)
	if p, ok := q.get(11 + seqSlots); !ok || p.resends != 0 {
		t.Fatalf("new entry: %+v %v", p, ok)
	}
	if _, ok := q.get(11); ok {
		t.Fatalf("the old entry of a slot is still returned")
	}
}

// rtxContext is a fakeContext whose subscriber negotiated RTX.
type rtxContext struct {
	fakeContext
	rtxSSRC webrtc.SSRC
}

func (f *rtxContext) CodecParameters() []webrtc.RTPCodecParameters {
	return append(f.fakeContext.CodecParameters(),
		webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeRTX, ClockRate: 90000, SDPFmtpLine: "apt=96"}, PayloadType: 97})
}
func (f *rtxContext) SSRCRetransmission() webrtc.SSRC { return f.rtxSSRC }

func nackFor(ssrc uint32, sns ...uint16) []byte {
	pairs := make([]rtcp.NackPair, 0, len(sns))
	for _, sn := range sns {
		pairs = append(pairs, rtcp.NackPair{PacketID: sn})
	}
	b, _ := rtcp.Marshal([]rtcp.Packet{&rtcp.ReceiverReport{SSRC: 1}, &rtcp.TransportLayerNack{SenderSSRC: 1, MediaSSRC: ssrc, Nacks: pairs}})
	return b
}

// TestResendFromSharedBuffer: two subscribers of one source, one with RTX,
// NACK the same packet; each gets it from the source's one buffer: as RTX
// (its own SSRC and payload type, the original sequence number first in the
// payload) or as the packet itself. Resends of one packet are spaced and
// bounded; a NACK for another subscriber's SSRC or a packet never sent does
// nothing; answering allocates nothing.
func TestResendFromSharedBuffer(t *testing.T) {
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	src := newSource(newChannel(s, "rtx"), TrackInfo{ID: "t", StreamID: "P", Kind: webrtc.RTPCodecTypeVideo, Codec: vp8}, nil, nil)
	wRTX, wPlain := &marshalWriter{}, &marshalWriter{}
	dRTX, dPlain := newDownTrack(src, nil), newDownTrack(src, nil)
	if _, err := dRTX.Bind(&rtxContext{fakeContext{ssrc: 1000, pt: 96, ws: wRTX}, 2000}); err != nil {
		t.Fatal(err)
	}
	if _, err := dPlain.Bind(&fakeContext{ssrc: 1001, pt: 96, ws: wPlain}); err != nil {
		t.Fatal(err)
	}
	src.addSub(dRTX)
	src.addSub(dPlain)
	for sn := uint16(100); sn < 120; sn++ {
		if err := src.write(bufPacket(sn, 200)); err != nil {
			t.Fatal(err)
		}
	}
	orig := bufPacket(105, 200)[12:]

	before := wRTX.count
	dRTX.handleRTCP(nackFor(1000, 105))
	var got rtp.Packet
	if wRTX.count != before+1 {
		t.Fatalf("RTX subscriber: %d packets written for one NACK", wRTX.count-before)
	}
	if err := got.Unmarshal(wRTX.buf[:wRTX.n]); err != nil {
		t.Fatal(err)
	}
	if got.SSRC != 2000 || got.PayloadType != 97 || binary.BigEndian.Uint16(got.Payload) != 105 || !bytes.Equal(got.Payload[2:], orig) || got.Timestamp != 105*3000 {
		t.Fatalf("RTX resend: %v, payload %x...", got.Header, got.Payload[:4])
	}
	before = wPlain.count
	dPlain.handleRTCP(nackFor(1001, 105))
	if err := got.Unmarshal(wPlain.buf[:wPlain.n]); err != nil || wPlain.count != before+1 {
		t.Fatalf("plain resend: %d written, %v", wPlain.count-before, err)
	}
	if got.SSRC != 1001 || got.PayloadType != 96 || got.SequenceNumber != 105 || !bytes.Equal(got.Payload, orig) {
		t.Fatalf("plain resend: %v", got.Header)
	}

	// At once again: too soon. Another SSRC, a packet never sent: nothing.
	before = wRTX.count
	dRTX.handleRTCP(nackFor(1000, 105))
	dRTX.handleRTCP(nackFor(1001, 106))
	dRTX.handleRTCP(nackFor(1000, 500))
	if wRTX.count != before {
		t.Fatalf("%d packets written for NACKs that ask for nothing to resend", wRTX.count-before)
	}
	st := dRTX.trackStats()
	if st.NACKs != 3 || st.Retransmitted != 1 || !st.RTX || st.NackedPackets != 3 {
		t.Fatalf("stats: %+v", st)
	}

	// Writing and answering a NACK allocate nothing (the resend scratch
	// comes from a sync.Pool, which the race detector empties at random).
	sn := uint16(120)
	pkt := bufPacket(0, 1100)
	nack := nackFor(1000, 0)
	if a := testing.AllocsPerRun(200, func() {
		binary.BigEndian.PutUint16(pkt[2:4], sn)
		_ = src.write(pkt)
		binary.BigEndian.PutUint16(nack[len(nack)-4:], sn)
		dRTX.rx.budget = rtxBudget{} // the budget is tested on its own
		dRTX.handleRTCP(nack)
		sn++
	}); a != 0 && !raceEnabled {
		t.Fatalf("write and resend allocate %v", a)
	}
	if w := wRTX.count; w < 400 {
		t.Fatalf("only %d packets written to the RTX subscriber", w)
	}
}

// TestPacketBufferBytes: packets larger than bufBytes/bufSlots shorten the
// window: an old packet whose bytes were written over is gone, however its
// slot looks.
func TestPacketBufferBytes(t *testing.T) {
	var b packetBuffer
	dst := make([]byte, bufSlotSize)
	const size = 1400
	fit := bufBytes / (size + 12)
	for sn := uint16(0); sn < uint16(fit+50); sn++ {
		b.add(sn, bufPacket(sn, size))
	}
	if n := b.get(0, dst); n != 0 {
		t.Fatalf("packet 0 returned after its bytes were written over")
	}
	last := uint16(fit + 49)
	for sn := last - uint16(fit) + 2; sn <= last; sn++ {
		if n := b.get(sn, dst); n != size+12 || !bytes.Equal(dst[:n], bufPacket(sn, size)) {
			t.Fatalf("packet %d: %d bytes", sn, n)
		}
	}
}

// FuzzHandleRTCP: whatever a subscriber sends as RTCP, reading it does not
// panic.
func FuzzHandleRTCP(f *testing.F) {
	f.Add(nackFor(1000, 105))
	rr, _ := rtcp.Marshal([]rtcp.Packet{&rtcp.ReceiverReport{SSRC: 1, Reports: []rtcp.ReceptionReport{{SSRC: 1000, FractionLost: 3, TotalLost: 5, Jitter: 90, LastSenderReport: 7, Delay: 1}}}})
	f.Add(rr)
	sr, _ := rtcp.Marshal([]rtcp.Packet{&rtcp.SenderReport{SSRC: 1, Reports: []rtcp.ReceptionReport{{SSRC: 1000}}}, &rtcp.PictureLossIndication{MediaSSRC: 1000}})
	f.Add(sr)
	s, err := New(Config{})
	if err != nil {
		f.Fatal(err)
	}
	src := newSource(newChannel(s, "fuzz"), TrackInfo{ID: "t", StreamID: "P", Kind: webrtc.RTPCodecTypeVideo, Codec: vp8}, nil, nil)
	d := newDownTrack(src, nil)
	if _, err := d.Bind(&rtxContext{fakeContext{ssrc: 1000, pt: 96, ws: &marshalWriter{}}, 2000}); err != nil {
		f.Fatal(err)
	}
	src.addSub(d)
	for sn := uint16(100); sn < 120; sn++ {
		_ = src.write(bufPacket(sn, 200))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d.handleRTCP(b)
	})
}

// askRecorder is a remote track's requester that records what it is asked.
type askRecorder struct{ asked [][]uint16 }

func (a *askRecorder) RequestKeyframe() {}
func (a *askRecorder) RequestRetransmit(seqs []uint16) {
	a.asked = append(a.asked, append([]uint16(nil), seqs...))
}

// TestMissingAskedOfOrigin: a subscriber of a remote track NACKs packets.
// One the node has is resent from its buffer; one the node never received
// (lost on the hop) is asked of the origin, once within askAgain, and when
// it comes (WriteRTP) every subscriber gets it; one ahead of the newest, or
// out of the window, is not asked for. A local track asks nobody.
func TestMissingAskedOfOrigin(t *testing.T) {
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	rec := &askRecorder{}
	src := newSource(newChannel(s, "miss"), TrackInfo{ID: "t", StreamID: "P", Kind: webrtc.RTPCodecTypeVideo, Codec: vp8}, rec, nil)
	w1, w2 := &marshalWriter{}, &marshalWriter{}
	d1, d2 := newDownTrack(src, nil), newDownTrack(src, nil)
	for i, x := range []struct {
		d *downTrack
		w *marshalWriter
	}{{d1, w1}, {d2, w2}} {
		if _, err := x.d.Bind(&fakeContext{ssrc: webrtc.SSRC(1000 + i), pt: 96, ws: x.w}); err != nil {
			t.Fatal(err)
		}
		src.addSub(x.d)
	}
	for sn := uint16(100); sn < 120; sn++ {
		if sn != 110 {
			_ = src.write(bufPacket(sn, 50))
		}
	}
	before := w1.count
	d1.handleRTCP(nackFor(1000, 105, 110, 130, 119-bufSlots+65536))
	if w1.count != before+1 {
		t.Fatalf("%d packets resent, want 1 (105)", w1.count-before)
	}
	if len(rec.asked) != 1 || len(rec.asked[0]) != 1 || rec.asked[0][0] != 110 {
		t.Fatalf("asked of the origin: %v, want [[110]]", rec.asked)
	}
	d1.handleRTCP(nackFor(1000, 110))
	d2.handleRTCP(nackFor(1001, 110))
	if len(rec.asked) != 1 {
		t.Fatalf("asked again at once: %v", rec.asked)
	}
	if st := d1.trackStats(); st.NackForwarded != 1 || st.NackMissing != 1 {
		t.Fatalf("stats: %+v", st)
	}
	b1, b2 := w1.count, w2.count
	_ = src.write(bufPacket(110, 50)) // the origin's answer
	if w1.count != b1+1 || w2.count != b2+1 {
		t.Fatalf("the late packet reached %d and %d subscribers' writers", w1.count-b1, w2.count-b2)
	}
	before = w1.count
	d1.handleRTCP(nackFor(1000, 110))
	if w1.count != before+1 || len(rec.asked) != 1 {
		t.Fatalf("after it came, 110 is resent from the buffer: %d written, asked %v", w1.count-before, rec.asked)
	}

	local := newSource(newChannel(s, "local"), TrackInfo{ID: "l", StreamID: "Q", Kind: webrtc.RTPCodecTypeVideo, Codec: vp8}, rec, &Connection{})
	dl := newDownTrack(local, nil)
	if _, err := dl.Bind(&fakeContext{ssrc: 2000, pt: 96, ws: &marshalWriter{}}); err != nil {
		t.Fatal(err)
	}
	local.addSub(dl)
	for sn := uint16(1); sn < 9; sn++ {
		if sn != 4 {
			_ = local.write(bufPacket(sn, 50))
		}
	}
	dl.handleRTCP(nackFor(2000, 4))
	if len(rec.asked) != 1 {
		t.Fatalf("a local track asked: %v", rec.asked)
	}
}

// TestRtxBudget: per window, a tenth of what was forwarded in the window
// before, plus a burst, may be resent.
func TestRtxBudget(t *testing.T) {
	var b rtxBudget
	n := 0
	for b.allow(1000, 0) {
		n++
	}
	if n != rtxBurst/bufSlotSize {
		t.Fatalf("first window: %d resends, want the burst's %d", n, rtxBurst/bufSlotSize)
	}
	if b.allow(1000+rtxWindow-1, 0) {
		t.Fatal("allowed again within the window")
	}
	// 300 KB forwarded in the window: 30 KB more may be resent.
	n = 0
	for b.allow(1000+rtxWindow, 300_000) {
		n++
	}
	if want := (30_000 + rtxBurst) / bufSlotSize; n != want {
		t.Fatalf("second window: %d resends, want %d", n, want)
	}
}
