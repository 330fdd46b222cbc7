package sfu

import (
	"testing"

	"github.com/pion/rtp"
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
	src, ds, ws := newSimTestSource(t, 1, RidR0)
	w, st := ws[0], ds[0].sim
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
				before := w.count
				if err := src.writeLayer(0, vp8TPacket(sn, ts, pic, tl0, tid, sync, i == 0, frame == 0 && i == 0, i == 1)); err != nil {
					t.Fatal(err)
				}
				sn++
				if w.count == before {
					continue
				}
				var p rtp.Packet
				if err := p.Unmarshal(w.buf[:w.n]); err != nil {
					t.Fatal(err)
				}
				ids, _ := parseVP8(p.Payload)
				got = append(got, out{p.SequenceNumber, ids.pic, ids.tl0, ids.tid})
			}
			pic = (pic + 1) & 0x7fff
			frame++
		}
	}
	check := func(what string, tids string) {
		t.Helper()
		var seen []byte
		for i, o := range got {
			if i > 0 {
				p := got[i-1]
				if o.sn != p.sn+1 {
					t.Fatalf("%s: sequence number %d after %d", what, o.sn, p.sn)
				}
				if i%2 == 1 && o.pic != p.pic || i%2 == 0 && o.pic != (p.pic+1)&0x7fff {
					t.Fatalf("%s: picture id %d after %d (packet %d)", what, o.pic, p.pic, i)
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
		got = got[:0]
	}
	write(8)
	check("all", "02120212")
	st.tCap.Store(0)
	write(8)
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
	// The forwarded stream was one: every sequence number and picture id
	// continued across the drops (checked per phase, and here across).
	if st.snOff == 0 || st.picOff == 0 {
		t.Fatalf("offsets %d %d after drops", st.snOff, st.picOff)
	}
}
