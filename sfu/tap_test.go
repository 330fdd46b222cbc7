package sfu

import (
	"sync/atomic"
	"testing"
)

// Two taps on one source each get every packet: the second SetSink does not
// replace the first (the relay's), and removing one leaves the other.
func TestSeveralTapsPerSource(t *testing.T) {
	src, _ := newTestSource(t, 2, nil)
	a, b := &TrackTap{src: src}, &TrackTap{src: src}
	var na, nb atomic.Int64
	a.SetSink(func([]byte) { na.Add(1) })
	b.SetSink(func([]byte) { nb.Add(1) })
	pkt := testPacket(false)
	for range 3 {
		if err := src.write(nextSeq(pkt)); err != nil {
			t.Fatal(err)
		}
	}
	if na.Load() != 3 || nb.Load() != 3 {
		t.Fatalf("tap a got %d, tap b %d packets; want 3 each", na.Load(), nb.Load())
	}
	b.SetSink(func([]byte) { nb.Add(10) }) // replaces b's own sink only
	a.SetSink(nil)
	if err := src.write(nextSeq(pkt)); err != nil {
		t.Fatal(err)
	}
	if na.Load() != 3 || nb.Load() != 13 {
		t.Fatalf("after removing a and replacing b: a %d, b %d; want 3 and 13", na.Load(), nb.Load())
	}
	if n := testing.AllocsPerRun(100, func() { _ = src.write(nextSeq(pkt)) }); n != 0 {
		t.Fatalf("write with a tap allocates %.1f times", n)
	}
}

// The same for the layers of a simulcast track.
func TestSeveralLayerTaps(t *testing.T) {
	src, _ := newTestSource(t, 0, nil)
	src = newSource(src.ch, TrackInfo{ID: "s", StreamID: "P", Kind: src.info.Kind, Codec: vp8, Simulcast: true}, nil, nil)
	a, b := &TrackTap{src: src}, &TrackTap{src: src}
	var na, nb atomic.Int64
	a.SetLayerSink(RidR1, func([]byte) { na.Add(1) })
	b.SetLayerSink(RidR1, func([]byte) { nb.Add(1) })
	if err := src.writeLayer(RidR1.layer(), testPacket(false)); err != nil {
		t.Fatal(err)
	}
	if na.Load() != 1 || nb.Load() != 1 {
		t.Fatalf("layer taps got %d and %d packets, want 1 each", na.Load(), nb.Load())
	}
}
