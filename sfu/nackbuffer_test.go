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

	// Writing and answering a NACK allocate nothing.
	sn := uint16(120)
	pkt := bufPacket(0, 1100)
	nack := nackFor(1000, 0)
	if a := testing.AllocsPerRun(200, func() {
		binary.BigEndian.PutUint16(pkt[2:4], sn)
		_ = src.write(pkt)
		binary.BigEndian.PutUint16(nack[len(nack)-4:], sn)
		dRTX.handleRTCP(nack)
		sn++
	}); a != 0 {
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
