package sfu

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"
)

// recvFixture is a recvConn with one connection registered at peer: its
// remote context's keys are those client encrypts with; two bound video
// down tracks (SSRC 1000 and 1001) with packets 100 to 119 in their
// source's buffer; a twccSender with a ring.
type recvFixture struct {
	rc     *recvConn
	rs     *recvState
	peer   netip.AddrPort
	client *srtp.Context // the remote's local context
	d      [2]*downTrack
	remb   []uint64
}

func newRecvFixture(t testing.TB) *recvFixture {
	t.Helper()
	key, salt := bytes.Repeat([]byte{7}, 16), bytes.Repeat([]byte{9}, 12)
	cfg := srtp.Config{Profile: srtp.ProtectionProfileAeadAes128Gcm}
	cfg.Keys.RemoteMasterKey, cfg.Keys.RemoteMasterSalt = key, salt
	remote, err := newRemoteContext(cfg)
	if err != nil {
		t.Fatal(err)
	}
	client, err := srtp.CreateContext(key, salt, cfg.Profile)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	f := &recvFixture{rc: &recvConn{raw: make([]rtcp.RawPacket, 0, 16), dsts: make([]uint32, 0, 32)}, client: client,
		peer: netip.MustParseAddrPort("192.0.2.7:5004")}
	f.rc.reg.Store(&map[netip.AddrPort]*recvState{})
	tw := &twccSender{cc: true, bwe: newBWE(), ring: make([]twccSent, sentRingMin)}
	f.rs = &recvState{tw: tw, ctx: remote, remb: func(b []byte) {
		if r, ok := rembBitrate(b); ok {
			f.remb = append(f.remb, r)
		}
	}}
	downs := map[*source]*downTrack{}
	for i := range f.d {
		src := newSource(newChannel(s, "recv"), TrackInfo{ID: "t", StreamID: "P", Kind: webrtc.RTPCodecTypeVideo, Codec: vp8}, nil, nil)
		d := newDownTrack(src, nil)
		if _, err := d.Bind(&rtxContext{fakeContext{ssrc: webrtc.SSRC(1000 + i), pt: 96, ws: &marshalWriter{}}, webrtc.SSRC(2000 + i)}); err != nil {
			t.Fatal(err)
		}
		src.addSub(d)
		for sn := uint16(100); sn < 120; sn++ {
			_ = src.write(bufPacket(sn, 200))
		}
		f.d[i], downs[src] = d, d
	}
	f.rs.setDowns(downs)
	f.rc.set(netip.AddrPort{}, f.peer, f.rs)
	return f
}

// oneTWCC is transport-cc feedback on one packet, seq, received.
func oneTWCC(seq uint16) *rtcp.TransportLayerCC {
	fb := &rtcp.TransportLayerCC{SenderSSRC: 1, MediaSSRC: 1000, BaseSequenceNumber: seq, PacketStatusCount: 1, ReferenceTime: 1, FbPktCount: uint8(seq),
		PacketChunks: []rtcp.PacketStatusChunk{&rtcp.RunLengthChunk{PacketStatusSymbol: rtcp.TypeTCCPacketReceivedSmallDelta, RunLength: 1}},
		RecvDeltas:   []*rtcp.RecvDelta{{Type: rtcp.TypeTCCPacketReceivedSmallDelta, Delta: 250}}}
	fb.Header = rtcp.Header{Count: rtcp.FormatTCC, Type: rtcp.TypeTransportSpecificFeedback, Length: uint16(fb.MarshalSize()/4 - 1)}
	return fb
}

// srtcp returns pkts marshalled and encrypted as the client sends them.
func (f *recvFixture) srtcp(t testing.TB, pkts ...rtcp.Packet) []byte {
	t.Helper()
	b, err := rtcp.Marshal(pkts)
	if err != nil {
		t.Fatal(err)
	}
	out, err := f.client.EncryptRTCP(nil, b, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A subscriber's SRTCP from a registered address is taken and each packet
// handled by what it is for: the NACK and PLI by the down track of their
// media SSRC only, transport-cc feedback by the estimator, REMB by the
// downlink, report blocks by their track. A compound led by a sender
// report, SRTP without a hook, STUN and any datagram from another address
// are left to pion, untouched; one that fails authentication, a replay,
// and one whose decrypted bytes do not parse are dropped and counted.
func TestRecvConnTakesRTCP(t *testing.T) {
	f := newRecvFixture(t)
	tcc := oneTWCC(0)
	f.rs.tw.ring[0] = twccSent{atUs: 1, seq: 0, size: 1200}
	f.rs.tw.next = 1
	pkt := f.srtcp(t, &rtcp.ReceiverReport{SSRC: 1, Reports: []rtcp.ReceptionReport{{SSRC: 1000, FractionLost: 64}}},
		&rtcp.TransportLayerNack{SenderSSRC: 1, MediaSSRC: 1001, Nacks: []rtcp.NackPair{{PacketID: 105}}},
		&rtcp.PictureLossIndication{SenderSSRC: 1, MediaSSRC: 1001},
		tcc,
		&rtcp.ReceiverEstimatedMaximumBitrate{SenderSSRC: 1, Bitrate: 300000, SSRCs: []uint32{1000}})
	if !f.rc.take(pkt, f.peer) {
		t.Fatal("SRTCP of a registered address not taken")
	}
	d0, d1 := &f.d[0].stats, &f.d[1].stats
	if d1.nacks.Load() != 1 || d1.resent.Load() != 1 || d0.nacks.Load() != 0 {
		t.Errorf("NACK for 1001: track 1001 %d NACKs %d resent, track 1000 %d NACKs; want 1, 1, 0", d1.nacks.Load(), d1.resent.Load(), d0.nacks.Load())
	}
	if d1.keyframeRequests.Load() != 1 || d0.keyframeRequests.Load() != 0 {
		t.Errorf("PLI for 1001: keyframe requests %d on 1001, %d on 1000; want 1, 0", d1.keyframeRequests.Load(), d0.keyframeRequests.Load())
	}
	if d0.fractionLost.Load() != 64 || d1.fractionLost.Load() != 0 {
		t.Errorf("report block for 1000: fraction lost %d on 1000, %d on 1001; want 64, 0", d0.fractionLost.Load(), d1.fractionLost.Load())
	}
	if !f.rs.tw.feedback.Load() {
		t.Error("transport-cc feedback not given to the estimator")
	}
	if len(f.remb) != 1 || f.remb[0] < 290000 || f.remb[0] > 310000 {
		t.Errorf("REMBs seen %v, want one of about 300000", f.remb)
	}
	if n := f.rc.rtcpTaken.Load(); n != 1 {
		t.Errorf("%d SRTCP datagrams counted taken, want 1", n)
	}

	// Left to pion, untouched.
	sr := f.srtcp(t, &rtcp.SenderReport{SSRC: 1, Reports: []rtcp.ReceptionReport{{SSRC: 1000}}}, &rtcp.PictureLossIndication{MediaSSRC: 1000})
	stun := append([]byte{0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42}, make([]byte, 12)...)
	rtpPkt, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SSRC: 5}, Payload: []byte{1, 2, 3}}).Marshal()
	srtpPkt, err := f.client.EncryptRTP(nil, rtpPkt, nil)
	if err != nil {
		t.Fatal(err)
	}
	other := netip.MustParseAddrPort("192.0.2.7:5005")
	for _, c := range []struct {
		name string
		b    []byte
		from netip.AddrPort
	}{
		{"a compound led by a sender report", sr, f.peer},
		{"STUN", stun, f.peer},
		{"SRTP, no upstream hook", srtpPkt, f.peer},
		{"SRTCP from another address", f.srtcp(t, &rtcp.PictureLossIndication{MediaSSRC: 1000}), other},
	} {
		keep := bytes.Clone(c.b)
		if f.rc.take(c.b, c.from) {
			t.Errorf("%s taken", c.name)
		}
		if !bytes.Equal(keep, c.b) {
			t.Errorf("%s changed", c.name)
		}
	}
	if f.d[0].stats.keyframeRequests.Load() != 0 {
		t.Error("a datagram left to pion was handled")
	}
	if f.rc.toPion.Load() != 1 {
		t.Errorf("%d compounds with a sender report counted, want 1", f.rc.toPion.Load())
	}

	// Dropped and counted.
	forged := f.srtcp(t, &rtcp.PictureLossIndication{MediaSSRC: 1000})
	forged[len(forged)-20] ^= 1
	replay := f.srtcp(t, &rtcp.PictureLossIndication{MediaSSRC: 1000})
	replay2 := bytes.Clone(replay)
	if !f.rc.take(replay, f.peer) || f.d[0].stats.keyframeRequests.Load() != 1 {
		t.Fatal("PLI for 1000 not handled")
	}
	garbage, err := f.client.EncryptRTCP(nil, []byte{0x80, 201, 0, 7, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range [][]byte{forged, replay2, garbage} {
		if !f.rc.take(b, f.peer) {
			t.Error("a hostile datagram of a registered address given to pion")
		}
	}
	if f.rc.dropped.Load() != 3 || f.d[0].stats.keyframeRequests.Load() != 1 {
		t.Errorf("%d dropped (want 3), %d keyframe requests (want 1)", f.rc.dropped.Load(), f.d[0].stats.keyframeRequests.Load())
	}

	// Unregistered: everything goes to pion.
	f.rc.set(f.peer, netip.AddrPort{}, f.rs)
	if f.rc.take(f.srtcp(t, &rtcp.PictureLossIndication{MediaSSRC: 1000}), f.peer) {
		t.Error("SRTCP taken after the connection left the registry")
	}
}

// The registry keys IPv4 addresses unmapped, as pion's mux does, and a
// connection removes only its own entry.
func TestRecvRegistry(t *testing.T) {
	rc := newRecvConn(nil)
	if rc != nil {
		t.Fatal("a nil socket wrapped")
	}
	rc = &recvConn{}
	rc.reg.Store(&map[netip.AddrPort]*recvState{})
	a, b := &recvState{}, &recvState{}
	v4 := netip.MustParseAddrPort("192.0.2.1:9")
	mapped := netip.AddrPortFrom(netip.AddrFrom16(v4.Addr().As16()), 9)
	rc.set(netip.AddrPort{}, v4, a)
	if rc.lookup(mapped) != a {
		t.Fatal("IPv4-mapped address not found")
	}
	rc.set(netip.AddrPort{}, v4, b) // b took the address
	rc.set(v4, netip.AddrPort{}, a) // a leaves: b's entry stays
	if rc.lookup(v4) != b {
		t.Fatal("a connection removed another's entry")
	}
	other := netip.MustParseAddrPort("192.0.2.1:10")
	rc.set(v4, other, b)
	if rc.lookup(v4) != nil || rc.lookup(other) != b {
		t.Fatal("entry not moved with the pair")
	}
}

// Taking a subscriber's RTCP (a receiver report, a NACK answered from the
// buffer, transport-cc feedback) allocates nothing.
func TestRecvConnAllocatesNothing(t *testing.T) {
	f := newRecvFixture(t)
	const runs = 100
	pkts := make([][]byte, runs+1)
	for i := range pkts {
		tcc := oneTWCC(uint16(i))
		pkts[i] = f.srtcp(t, &rtcp.ReceiverReport{SSRC: 1, Reports: []rtcp.ReceptionReport{{SSRC: 1000}, {SSRC: 1001}}},
			&rtcp.TransportLayerNack{SenderSSRC: 1, MediaSSRC: 1001, Nacks: []rtcp.NackPair{{PacketID: 110}}}, tcc)
	}
	i := 0
	buf := make([]byte, 1500)
	allocs := testing.AllocsPerRun(runs, func() {
		n := copy(buf, pkts[i])
		i++
		if !f.rc.take(buf[:n], f.peer) {
			t.Fatal("not taken")
		}
	})
	// The race detector's sync.Pool (the NACK's scratch) drops items.
	if allocs != 0 && !raceEnabled {
		t.Errorf("%.1f allocations per datagram taken, want 0", allocs)
	}
	if f.rc.dropped.Load() != 0 || f.d[1].stats.nacks.Load() != runs+1 {
		t.Errorf("%d dropped, %d NACKs handled; want 0 and %d", f.rc.dropped.Load(), f.d[1].stats.nacks.Load(), runs+1)
	}
}

// FuzzRecvTake gives the direct receive path hostile datagrams from a
// registered address: as they come (authentication fails unless they are
// STUN, DTLS or not RTP/RTCP at all, which go to pion), and encrypted
// with the connection's keys, as a peer that holds them could send any
// bytes. Nothing panics, and a datagram is either taken (counted taken or
// dropped) or left to pion unchanged.
func FuzzRecvTake(f *testing.F) {
	for _, seed := range [][]byte{
		nackFor(1000, 105, 110),
		nackFor(1001, 100),
		{0x81, 206, 0, 2, 0, 0, 0, 1, 0, 0, 0x03, 0xe8}, // PLI for 1000
		{0x84, 206, 0, 4, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x03, 0xe9, 1, 0, 0, 0},                   // FIR for 1001
		{0x8f, 205, 0, 5, 0, 0, 0, 1, 0, 0, 0x03, 0xe8, 0, 0, 0, 1, 0, 0, 1, 0, 0x20, 1, 0x04, 0}, // transport-cc
		{0x80, 200, 0, 1, 0, 0, 0, 1},
		{0x00, 0x01, 0, 0, 0x21, 0x12, 0xa4, 0x42},
		{0x16, 0xfe, 0xfd},
	} {
		f.Add(seed, true)
		f.Add(seed, false)
	}
	fx := newRecvFixture(f)
	f.Fuzz(func(t *testing.T, b []byte, encrypt bool) {
		if encrypt && len(b) >= 8 {
			out, err := fx.client.EncryptRTCP(nil, b, nil)
			if err != nil {
				return
			}
			b = out
		}
		keep := bytes.Clone(b)
		taken0, dropped0 := fx.rc.rtcpTaken.Load(), fx.rc.dropped.Load()
		took := fx.rc.take(b, fx.peer)
		taken, dropped := fx.rc.rtcpTaken.Load()-taken0, fx.rc.dropped.Load()-dropped0
		switch {
		case took && taken+dropped != 1:
			t.Fatalf("taken, but counted %d taken %d dropped", taken, dropped)
		case !took && (taken+dropped != 0 || !bytes.Equal(keep, b)):
			t.Fatalf("left to pion, yet counted or changed")
		}
	})
}

// BenchmarkRecvTakeRTCP: what the mux's reader spends on a subscriber's
// SRTCP datagram it takes (AES-128-GCM): a receiver report and
// transport-cc feedback, decrypted and handled. The remote context has no
// replay window here, so that one datagram can be taken again.
func BenchmarkRecvTakeRTCP(b *testing.B) {
	f := newRecvFixture(b)
	key, salt := bytes.Repeat([]byte{7}, 16), bytes.Repeat([]byte{9}, 12)
	ctx, err := srtp.CreateContext(key, salt, srtp.ProtectionProfileAeadAes128Gcm, srtp.SRTCPNoReplayProtection())
	if err != nil {
		b.Fatal(err)
	}
	f.rs.ctx = ctx
	pkt := f.srtcp(b, &rtcp.ReceiverReport{SSRC: 1, Reports: []rtcp.ReceptionReport{{SSRC: 1000}, {SSRC: 1001}}}, oneTWCC(0))
	buf := make([]byte, 1500)
	b.ReportAllocs()
	for b.Loop() {
		n := copy(buf, pkt)
		if !f.rc.take(buf[:n], f.peer) {
			b.Fatal("not taken")
		}
	}
}
