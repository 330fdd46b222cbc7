package sfu

import "testing"

// nextSeq moves an RTP packet's sequence number on by one, in place: a
// track's write path forwards a sequence number once (source.got), so a
// test or benchmark that writes one packet again and again advances it.
func nextSeq(pkt []byte) []byte {
	sn := uint16(pkt[2])<<8 | uint16(pkt[3])
	sn++
	pkt[2], pkt[3] = byte(sn>>8), byte(sn)
	return pkt
}

// TestWriteDropsDuplicates: a packet of a track without layers that
// arrives again (Chromium pads a video track up to its bitrate, or probes,
// with RTX copies of recent packets; a retransmission of one that came
// after all) is forwarded once, as a simulcast layer's is
// (TestWriteLayerDropsDuplicates): forwarded again under the same number,
// the subscriber's SRTP would drop it as a replay, after its transport-wide
// number was stamped, which the estimator reads as loss. One that comes
// late for the first time is forwarded, and so is one from before the
// window of the last 128.
func TestWriteDropsDuplicates(t *testing.T) {
	src, ws := newTestSource(t, 1, nil)
	w := ws[0]
	pkt := testPacket(false)
	write := func(sn uint16) {
		t.Helper()
		pkt[2], pkt[3] = byte(sn>>8), byte(sn)
		if err := src.write(pkt); err != nil {
			t.Fatal(err)
		}
	}
	for _, sn := range []uint16{100, 101, 103, 101, 100, 103, 102, 102, 65535} {
		write(sn)
	}
	if w.count != 5 {
		t.Fatalf("%d packets forwarded for 5 distinct ones and 4 duplicates", w.count)
	}
	write(104)
	write(104)
	if w.count != 6 {
		t.Fatalf("%d packets forwarded, want 6", w.count)
	}
}
