package sfu

import (
	"slices"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// vp8TPacket is one packet of a VP8 frame with a temporal layer: a 15-bit
// picture id, TL0PICIDX, TID and the layer sync bit.
func vp8TPacket(seq uint16, ts uint32, pic uint16, tl0, tid uint8, sync, start, key, marker bool) []byte {
	b0 := byte(0x80)
	if start {
		b0 |= 0x10
	}
	t := tid << 6
	if sync {
		t |= 0x20
	}
	vp8 := byte(1)
	if key {
		vp8 = 0
	}
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: ts, SSRC: 5, Marker: marker}, Payload: make([]byte, 600)}
	copy(p.Payload, []byte{b0, 0xE0, 0x80 | byte(pic>>8), byte(pic), tl0, t, vp8})
	b, _ := p.Marshal()
	return b
}

// TestDropTemporal: with its temporal cap lowered, a subscriber gets the
// lowest layer's TL0 (and TL1) frames only, as one seamless stream:
// sequence numbers and picture ids without a gap, TL0PICIDX unchanged; it
// steps down at the next frame and back up only at a layer sync frame.
// Libwebrtc's three-layer pattern: TIDs 0 2 1 2, the first TL2 and TL1
// frames of every eight synced; two packets a frame.
func TestDropTemporal(t *testing.T) {
	st := dropTemporalRun(t, vp8, func(sn uint16, ts uint32, pic uint16, tl0, tid uint8, sync bool, frame, i int) []byte {
		return vp8TPacket(sn, ts, pic, tl0, tid, sync, i == 0, frame == 0 && i == 0, i == 1)
	}, nil)
	// The forwarded stream was one: every sequence number and picture id
	// continued across the drops (checked per phase, and here across).
	if st.snOff == 0 || st.picOff == 0 {
		t.Fatalf("offsets %d %d after drops", st.snOff, st.picOff)
	}
}

// dropTemporalRun drives TestDropTemporal and TestDropTemporalVP9: one
// r0 subscriber of codec, fed libwebrtc's three-layer pattern (TIDs
// 0 2 1 2, the first TL2 and TL1 frames of every eight synced, two packets
// a frame, built by pkt) while its temporal cap is lowered and raised. In
// each phase it checks the TIDs of the frames forwarded, sequence numbers
// without a gap, one picture id within a frame and TL0PICIDX unchanged.
// Picture ids between frames step by one (renumbered over the drops) when
// picSteps is nil, else by picSteps' steps for the five phases (as sent).
// It returns the subscriber's layer state.
func dropTemporalRun(t *testing.T, codec webrtc.RTPCodecCapability, pkt func(sn uint16, ts uint32, pic uint16, tl0, tid uint8, sync bool, frame, i int) []byte, picSteps [][]uint16) *simSub {
	t.Helper()
	src, ds, ws := newSimTestSourceCodec(t, 1, RidR0, codec)
	w, st := ws[0], ds[0].sim
	kind := codecKindOf(codec.MimeType)
	type out struct {
		sn, pic uint16
		tl0     uint8
		tid     uint8
	}
	var got []out
	sn, pic, tl0 := uint16(65530), uint16(0x7ff0), uint8(250)
	frame := 0
	write := func(frames int) {
		for range frames {
			tid := [4]uint8{0, 2, 1, 2}[frame%4]
			if tid == 0 && frame > 0 {
				tl0++
			}
			sync := frame%8 == 1 || frame%8 == 2
			ts := uint32(frame) * 3000
			for i := range 2 {
				p, ok := forwardOne(t, src, w, pkt(sn, ts, pic, tl0, tid, sync, frame, i))
				sn++
				if !ok {
					continue
				}
				ids, _ := parsePicIDs(kind, p.Payload)
				got = append(got, out{p.SequenceNumber, ids.pic, ids.tl0, ids.tid})
			}
			pic = (pic + 1) & 0x7fff
			frame++
		}
	}
	phase := 0
	check := func(what string, tids string) {
		t.Helper()
		var seen []byte
		var steps []uint16
		for i, o := range got {
			if i > 0 {
				p := got[i-1]
				if o.sn != p.sn+1 {
					t.Fatalf("%s: sequence number %d after %d", what, o.sn, p.sn)
				}
				if i%2 == 1 && o.pic != p.pic {
					t.Fatalf("%s: picture id %d after %d within a frame", what, o.pic, p.pic)
				}
				if i%2 == 0 {
					steps = append(steps, (o.pic-p.pic)&0x7fff)
				}
				if o.tl0 != p.tl0 && (o.tl0 != p.tl0+1 || o.tid != 0) {
					t.Fatalf("%s: TL0PICIDX %d after %d", what, o.tl0, p.tl0)
				}
			}
			if i%2 == 0 {
				seen = append(seen, '0'+o.tid)
			}
		}
		if string(seen) != tids {
			t.Fatalf("%s: frames of TIDs %s, want %s", what, seen, tids)
		}
		want := slices.Repeat([]uint16{1}, max(len(tids)-1, 0))
		if picSteps != nil {
			want = picSteps[phase]
		}
		if !slices.Equal(steps, want) {
			t.Fatalf("%s: picture id steps %v, want %v", what, steps, want)
		}
		phase++
		got = got[:0]
	}
	write(8)
	check("all", "02120212")
	st.tCap.Store(0)
	write(8) // frames 8 to 15
	check("TL0 only", "00")
	st.tCap.Store(1)
	write(1) // frame 16: TL0
	write(1) // 17: TL2, synced: not wanted
	write(1) // 18: TL1, synced: TL1 from here
	write(5)
	check("TL0 and TL1", "0101")
	st.tCap.Store(tidAll)
	write(3) // 24 25 26: TL2 synced at 25
	check("all again", "021")
	st.tCap.Store(0)
	write(1) // 27: TL2: dropped at once
	st.tCap.Store(tidAll)
	write(4) // 28 29 30 31: TL2 at 29 is not synced (only 25 and 26 of this eight), TL1 at 30 neither
	write(2) // 32: TL0, 33: TL2 synced
	check("up only at a sync", "002")
	return st
}

// forwardOne writes b to src's layer 0 and returns the packet w got for
// it; ok is false when it was dropped. The packet's payload is w's buffer,
// good until the next write.
func forwardOne(t *testing.T, src *source, w *marshalWriter, b []byte) (p rtp.Packet, ok bool) {
	t.Helper()
	before := w.count
	if err := src.writeLayer(0, b); err != nil {
		t.Fatal(err)
	}
	if w.count == before {
		return p, false
	}
	if err := p.Unmarshal(w.buf[:w.n]); err != nil {
		t.Fatal(err)
	}
	return p, true
}

var vp9 = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP9, ClockRate: 90000}

// vp9TPacket is one packet of a VP9 frame in non-flexible mode, as
// Chromium sends a simulcast layer with temporal layers: a 15-bit picture
// id, TID, the switching up point U, spatial layer 0, TL0PICIDX. Its
// payload carries seq after the descriptor, for the tests to find.
func vp9TPacket(seq uint16, ts uint32, pic uint16, tl0, tid uint8, u, start, end, key bool) []byte {
	b0 := byte(0xA0) // I, L
	if !key {
		b0 |= 0x40 // P: inter predicted
	}
	if start {
		b0 |= 0x08
	}
	if end {
		b0 |= 0x04
	}
	l := tid << 5
	if u {
		l |= 0x10
	}
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 98, SequenceNumber: seq, Timestamp: ts, SSRC: 5, Marker: end}, Payload: make([]byte, 600)}
	copy(p.Payload, []byte{b0, 0x80 | byte(pic>>8), byte(pic), l, tl0, byte(seq >> 8), byte(seq)})
	b, _ := p.Marshal()
	return b
}

// TestDropTemporalVP9: a VP9 subscriber steps down r0's temporal layers
// as a VP8 one does (TID from the descriptor's layer indices, up only at
// a switching up point U): whole frames dropped, sequence numbers without
// a gap, TL0PICIDX unchanged, and picture ids as sent (a VP9 receiver
// finds references by picture id distance), so the forwarded TL0 frames'
// ids are four apart. Without the VP9 TID read, every frame is forwarded.
func TestDropTemporalVP9(t *testing.T) {
	// the sync frames carry U; picture id steps between forwarded frames
	// per phase: as sent
	st := dropTemporalRun(t, vp9, func(sn uint16, ts uint32, pic uint16, tl0, tid uint8, u bool, frame, i int) []byte {
		return vp9TPacket(sn, ts, pic, tl0, tid, u, i == 0, i == 1, frame == 0)
	}, [][]uint16{{1, 1, 1, 1, 1, 1, 1}, {4}, {2, 2, 2}, {1, 1}, {4, 1}})
	if st.picOff != 0 {
		t.Fatalf("picture id offset %d: VP9 picture ids were renumbered", st.picOff)
	}
}

// reorderRun writes pkts, in the order given, to a fresh VP8 or VP9
// source whose subscriber gets TID 0 only once a packet of a frame from
// timestamp capTS on is written, and returns what was forwarded for each
// of the layer's sequence numbers: the number and picture id sent. The
// packets carry their own sequence number after the descriptor (at off).
func reorderRun(t *testing.T, codec webrtc.RTPCodecCapability, pkts [][]byte, capTS uint32, off int) map[uint16][2]uint16 {
	src, ds, ws := newSimTestSourceCodec(t, 1, RidR0, codec)
	w, st := ws[0], ds[0].sim
	kind := codecKindOf(codec.MimeType)
	fwd := map[uint16][2]uint16{}
	for _, b := range pkts {
		var h rtp.Header
		if _, err := h.Unmarshal(b); err != nil {
			t.Fatal(err)
		}
		if int32(h.Timestamp-capTS) >= 0 {
			st.tCap.Store(0)
		}
		before := w.count
		if err := src.writeLayer(0, b); err != nil {
			t.Fatal(err)
		}
		if w.count == before {
			continue
		}
		var p rtp.Packet
		if err := p.Unmarshal(w.buf[:w.n]); err != nil {
			t.Fatal(err)
		}
		ids, _ := parsePicIDs(kind, p.Payload)
		srcSN := uint16(p.Payload[off])<<8 | uint16(p.Payload[off+1])
		if _, dup := fwd[srcSN]; dup {
			t.Fatalf("packet %d forwarded twice", srcSN)
		}
		fwd[srcSN] = [2]uint16{p.SequenceNumber, ids.pic}
	}
	return fwd
}

// TestLateAroundDrop: packets that come out of order around dropped
// frames (TID 0 forwarded only, from frame 4 on) are forwarded as they
// would have been in order: the same packets, each with the number and
// picture id it gets in order, so the subscriber's stream has no gap and
// no number twice. Frames of three packets; every pair of neighbours is
// swapped in turn (within a frame, across a frame forwarded and one
// dropped, both ways, and across the lowering of the cap), and each
// packet comes three places late in turn; VP8 (picture ids renumbered)
// and VP9 (as sent). Without the ranges (snRanges), a late packet after a
// drop was not forwarded (a gap) or took a number moved by the drop;
// without the frame log, a late packet of a TL2 frame forwarded before the
// cap was lowered is dropped.
func TestLateAroundDrop(t *testing.T) {
	for _, c := range []struct {
		name  string
		codec webrtc.RTPCodecCapability
		off   int
	}{{"VP8", vp8, 7}, {"VP9", vp9, 5}} {
		t.Run(c.name, func(t *testing.T) {
			const frames = 24
			var pkts [][]byte
			sn, pic := uint16(65500), uint16(0x7ff8)
			for f := range frames {
				tid := [4]uint8{0, 2, 1, 2}[f%4]
				tl0 := uint8(f / 4)
				sync := f%8 == 1 || f%8 == 2
				for i := range 3 {
					var b []byte
					if c.name == "VP8" {
						b = vp8TPacket(sn, uint32(f)*3000, pic, tl0, tid, sync, i == 0, f == 0 && i == 0, i == 2)
						b[12+7], b[12+8] = byte(sn>>8), byte(sn) // after the 7-byte descriptor and VP8 header byte
					} else {
						b = vp9TPacket(sn, uint32(f)*3000, pic, tl0, tid, sync, i == 0, i == 2, f == 0)
					}
					pkts = append(pkts, b)
					sn++
				}
				pic = (pic + 1) & 0x7fff
			}
			const capTS, cut = 4 * 3000, 4*3 - 4 // the cap is lowered at frame 4; reorder from frame 3 on
			want := reorderRun(t, c.codec, pkts, capTS, c.off)
			if len(want) >= len(pkts)*3/4 || len(want) < len(pkts)/4 {
				t.Fatalf("%d of %d forwarded in order: the cap did not drop frames", len(want), len(pkts))
			}
			try := func(what string, order []int) {
				t.Helper()
				re := make([][]byte, len(order))
				for i, k := range order {
					re[i] = pkts[k]
				}
				got := reorderRun(t, c.codec, re, capTS, c.off)
				for k, v := range want {
					if g, ok := got[k]; !ok {
						t.Fatalf("%s: packet %d not forwarded (in order: as %d)", what, k, v[0])
					} else if g != v {
						t.Fatalf("%s: packet %d forwarded as %d picture %d, in order as %d picture %d", what, k, g[0], g[1], v[0], v[1])
					}
				}
				for k, g := range got {
					if _, ok := want[k]; !ok {
						t.Fatalf("%s: packet %d forwarded as %d, dropped in order", what, k, g[0])
					}
				}
			}
			n := len(pkts)
			for i := cut; i+1 < n; i++ {
				order := make([]int, n)
				for k := range order {
					order[k] = k
				}
				order[i], order[i+1] = i+1, i
				try("swap", order)
			}
			for i := cut; i+3 < n; i++ { // packet i comes after the next three
				order := make([]int, 0, n)
				for k := range n {
					if k != i {
						order = append(order, k)
					}
					if k == i+3 {
						order = append(order, i)
					}
				}
				try("three late", order)
			}
		})
	}
}

// TestLateAroundDropAllocs: forwarding with frames dropped, padding sent
// in the subscriber's stream and packets coming out of order (which look
// their offsets up in the ranges) allocates nothing.
func TestLateAroundDropAllocs(t *testing.T) {
	src, ds, ws := newSimTestSource(t, 1, RidR0)
	d, w := ds[0], ws[0]
	const runs, frames = 100, 8
	var pkts [][]byte
	sn, pic := uint16(60000), uint16(0)
	for f := range (runs + 2) * frames {
		tid := [4]uint8{0, 2, 1, 2}[f%4]
		for i := range 3 {
			pkts = append(pkts, vp8TPacket(sn, uint32(f)*3000, pic, uint8(f/4), tid, f%8 == 1 || f%8 == 2, i == 0, f == 0 && i == 0, i == 2))
			sn++
		}
		pic = (pic + 1) & 0x7fff
	}
	for i := 0; i+3 < len(pkts); i += 5 { // every fifth packet comes three places late
		late := pkts[i]
		copy(pkts[i:i+3], pkts[i+1:i+4])
		pkts[i+3] = late
	}
	next := 0
	write := func() {
		for range frames * 3 {
			_ = src.writeLayer(0, pkts[next])
			next++
		}
	}
	write() // warm up, all temporal layers
	d.sim.tCap.Store(0)
	var p prober
	p.pad[probePad-1] = probePad
	b := d.binding.Load()
	before := w.count
	if allocs := testing.AllocsPerRun(runs, func() {
		write()
		p.sendPadding(d, b, probePad+12)
	}); allocs != 0 {
		t.Fatalf("%v allocations per %d packets", allocs, frames*3)
	}
	// a quarter of the frames, and the padding
	if n := w.count - before; n < (runs+1)*(frames*3/4+1)*9/10 {
		t.Fatalf("%d packets forwarded while measured", n)
	}
	if d.sim.ranges.n != snRangeSlots {
		t.Fatalf("%d ranges in use: the ring was not filled", d.sim.ranges.n)
	}
}

var av1 = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeAV1, ClockRate: 90000}

// av1TPacket is one packet of a two-packet AV1 frame: the first holds the
// start of a frame OBU, with its header and extension header (TID), the
// second only the rest of it (Z set: no OBU header, no TID of its own).
func av1TPacket(seq uint16, ts uint32, tid uint8, first, key bool) []byte {
	var pl []byte
	if first {
		agg := byte(0x40 | 0x10) // Y: the OBU goes on; W 1
		if key {
			agg |= 0x08 // N: a new coded video sequence
		}
		pl = []byte{agg, 6<<3 | 0x04, tid << 5}
	} else {
		pl = []byte{0x80 | 0x10} // Z: the rest of the OBU; W 1
	}
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 45, SequenceNumber: seq, Timestamp: ts, SSRC: 5, Marker: !first}, Payload: make([]byte, 600)}
	copy(p.Payload, pl)
	b, _ := p.Marshal()
	return b
}

// TestDropTemporalAV1: an AV1 subscriber steps down r0's temporal layers
// too: the TID read from the first OBU's extension header, a packet that
// holds only the rest of an OBU dropped or forwarded with its frame, the
// sequence numbers without a gap; up one layer at a time at the next frame
// of that layer (AV1 has no sync bit). Without the AV1 TID read, every
// frame is forwarded.
func TestDropTemporalAV1(t *testing.T) {
	src, ds, ws := newSimTestSourceCodec(t, 1, RidR0, av1)
	w, st := ws[0], ds[0].sim
	var tids []byte
	var last uint16
	n := 0
	sn := uint16(65530)
	frame := 0
	write := func(frames int) {
		for range frames {
			tid := [4]uint8{0, 2, 1, 2}[frame%4]
			for i := range 2 {
				p, ok := forwardOne(t, src, w, av1TPacket(sn, uint32(frame)*3000, tid, i == 0, frame == 0))
				sn++
				if !ok {
					continue
				}
				if n > 0 && p.SequenceNumber != last+1 {
					t.Fatalf("sequence number %d after %d", p.SequenceNumber, last)
				}
				if (n%2 == 0) != (p.Payload[0]&0x80 == 0) {
					t.Fatalf("packet %d of a frame forwarded without the other", n)
				}
				last = p.SequenceNumber
				n++
				if i == 0 {
					tids = append(tids, '0'+p.Payload[2]>>5)
				}
			}
			frame++
		}
	}
	check := func(what, want string) {
		t.Helper()
		if string(tids) != want {
			t.Fatalf("%s: frames of TIDs %s, want %s", what, tids, want)
		}
		tids = tids[:0]
	}
	write(8)
	check("all", "02120212")
	st.tCap.Store(0)
	write(8)
	check("TL0 only", "00")
	st.tCap.Store(tidAll)
	write(4) // 16 17 18 19: TL0, then TL2 is two up: not yet; TL1 one up, TL2 after it
	write(4)
	check("up one layer at a time", "012"+"0212") // 17 (TL2, two up) dropped
}

// TestParseAV1TID: the TID of an AV1 payload is its first OBU extension
// header's, after OBUs without one and their LEB128 lengths; the rest of
// an OBU (Z) has none, nor a payload cut short.
func TestParseAV1TID(t *testing.T) {
	for _, c := range []struct {
		name string
		p    []byte
		tid  int // -1: none
	}{
		{"one OBU, W 1", []byte{0x58, 0x34, 0x40, 0x00}, 2},
		{"delimiter then frame, W 0", []byte{0x08, 0x02, 0x12, 0x00, 0x03, 0x34, 0x20, 0x00}, 1},
		{"rest of an OBU, then a frame, W 2", []byte{0x80 | 0x20, 0x02, 0xaa, 0xbb, 0x34, 0x20, 0x00}, 1},
		{"rest of an OBU only", []byte{0x90, 0x34, 0x40}, -1},
		{"no extension", []byte{0x10, 0x30, 0x00}, -1},
		{"length past the end", []byte{0x00, 0x09, 0x34, 0x40}, -1},
		{"length unended", []byte{0x00, 0x80}, -1},
	} {
		d, ok := parseAV1(c.p)
		got := -1
		if ok && d.hasTID {
			got = int(d.tid)
		}
		if got != c.tid {
			t.Errorf("%s: TID %d, want %d", c.name, got, c.tid)
		}
	}
}
