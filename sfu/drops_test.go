package sfu

import "testing"

// What a remote track's writer refuses is counted by reason.
func TestDropsCountRefusedWrites(t *testing.T) {
	src, _ := newTestSource(t, 1, nil)
	w := &TrackWriter{src: src}
	if err := w.WriteRTP([]byte{1, 2}); err == nil {
		t.Fatal("a 2-byte packet was taken")
	}
	if err := w.WriteLayerRTP(RidR0, testPacket(false)); err == nil {
		t.Fatal("a layer of a track without layers was taken")
	}
	src.close()
	if err := w.WriteRTP(testPacket(false)); err == nil {
		t.Fatal("a write after close was taken")
	}
	d := src.ch.sfu.Drops()
	if d.MediaInvalid != 2 || d.MediaAfterClose != 1 {
		t.Fatalf("drops %+v, want MediaInvalid 2, MediaAfterClose 1", d)
	}
}
