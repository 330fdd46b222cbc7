package sfu

import (
	"testing"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
)

// TestTWCCRingGrows: the ring of what was sent starts small, doubles when
// a feedback comes more than half of it late (keeping what it holds), up
// to sentRingSize, and stays small while feedback comes in time.
func TestTWCCRingGrows(t *testing.T) {
	tw := &twccSender{cc: true, bwe: newBWE()}
	next := interceptor.RTPWriterFunc(func(_ *rtp.Header, payload []byte, _ interceptor.Attributes) (int, error) {
		return len(payload), nil
	})
	w := tw.BindLocalStream(&interceptor.StreamInfo{RTPHeaderExtensions: []interceptor.RTPHeaderExtension{
		{URI: sdp.TransportCCURI, ID: 6},
	}}, next)
	h := &rtp.Header{Version: 2, SSRC: 1, Extensions: make([]rtp.Extension, 0, 4)}
	payload := make([]byte, 100)
	send := func(n int) {
		for range n {
			if _, err := w.Write(h, payload, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	// feedback on the 10 packets from base, all received
	feedback := func(base uint16) {
		arr := make([]int64, 10)
		for i := range arr {
			arr[i] = int64(i) * 1000
		}
		b := encodeTWCC(base, arr, 0)
		tw.onRTCP(b, 1e9)
	}
	holds := func(from, to uint16) bool {
		for s := from; s != to; s++ {
			if e := tw.ring[int(s)&(len(tw.ring)-1)]; e.seq != s {
				return false
			}
		}
		return true
	}
	if len(tw.ring) != sentRingMin {
		t.Fatalf("ring of %d at first, want %d", len(tw.ring), sentRingMin)
	}
	// In time: 100 packets behind.
	send(600)
	feedback(500)
	if len(tw.ring) != sentRingMin {
		t.Fatalf("ring grew to %d on a feedback 100 packets behind", len(tw.ring))
	}
	// Late: 400 packets behind a ring of 512.
	send(300)
	feedback(500)
	if len(tw.ring) != 2*sentRingMin {
		t.Fatalf("ring of %d after a feedback 400 packets behind, want %d", len(tw.ring), 2*sentRingMin)
	}
	if !holds(510, 900) { // 500 to 509 were read
		t.Fatal("the grown ring lost what the small one held")
	}
	send(1000)
	if !holds(1900-2*sentRingMin, 1900) {
		t.Fatal("the grown ring does not hold its size")
	}
	// Far behind (or a base that was never sent): bounded.
	feedback(1900 + 30000)
	if len(tw.ring) != sentRingSize {
		t.Fatalf("ring of %d, want at most %d", len(tw.ring), sentRingSize)
	}
	if !holds(1900-2*sentRingMin, 1900) {
		t.Fatal("the grown ring lost what it held")
	}
}
