package sfu

import (
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/shoal-sfu/shoal/internal/testutil"
)

// failWriter refuses every packet, as a closing subscriber's sender does.
type failWriter struct{ n atomic.Int64 }

func (w *failWriter) WriteRTP(*rtp.Header, []byte) (int, error) {
	w.n.Add(1)
	return 0, io.ErrClosedPipe
}

func (w *failWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

// A subscriber's refused writes are counted in Drops.MediaWriteFailed,
// whether the fan-out writes inline, spread over workers, or through the
// connection's pacer (passing through or from its queue); the pacer's own
// drops in Drops.PacerQueueFull. The other subscribers get every packet.
func TestDropsCountFailedSends(t *testing.T) {
	for _, spread := range []bool{false, true} {
		name := map[bool]string{false: "inline", true: "spread"}[spread]
		t.Run(name, func(t *testing.T) {
			n := 3
			if spread {
				n = 25
			}
			src, ds, ws := newSpreadSource(t, n, nil)
			fw := &failWriter{}
			if _, err := ds[0].Bind(&fakeContext{ssrc: 999, pt: 96, ws: fw}); err != nil {
				t.Fatal(err)
			}
			const pkts = 50
			for i := range pkts {
				if err := src.write(seqPacket(uint16(i))); err != nil {
					t.Fatal(err)
				}
			}
			if spread != (src.spread.Load() != nil) {
				t.Fatalf("spread %v, want %v", !spread, spread)
			}
			testutil.Eventually(t, func() bool {
				for _, w := range ws[1:] {
					if len(w.got()) < pkts {
						return false
					}
				}
				return fw.n.Load() == pkts
			}, 10*time.Second, "every packet written")
			if got := src.ch.sfu.Drops().MediaWriteFailed; got != pkts {
				t.Fatalf("MediaWriteFailed %d, want %d", got, pkts)
			}
		})
	}
	t.Run("pacer", func(t *testing.T) {
		s, err := New(Config{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		p := newPacer()
		p.drops = &s.drops
		fw := &failWriter{}
		h := rtp.Header{Version: 2}
		payload := make([]byte, 1188)
		p.send(fw, &h, payload, true) // no estimate: written at once
		p.setRate(1_000_000)
		for range 10 + pacerSlots {
			p.send(fw, &h, payload, true) // a bucket's worth, then queued, then the oldest dropped
		}
		written := fw.n.Load()
		for wait := p.drain(); wait > 0; wait = p.drain() {
			time.Sleep(wait)
		}
		d := s.Drops()
		if d.MediaWriteFailed != uint64(fw.n.Load()) || fw.n.Load() <= written {
			t.Fatalf("MediaWriteFailed %d, %d refused (%d before the queue drained)", d.MediaWriteFailed, fw.n.Load(), written)
		}
		if d.PacerQueueFull == 0 || d.PacerQueueFull != p.dropped.Load() {
			t.Fatalf("PacerQueueFull %d, the pacer dropped %d", d.PacerQueueFull, p.dropped.Load())
		}
		if got := uint64(fw.n.Load()) + d.PacerQueueFull; got != 11+pacerSlots {
			t.Fatalf("%d refused and dropped, want %d", got, 11+pacerSlots)
		}
	})
}

var _ webrtc.TrackLocalWriter = (*failWriter)(nil)
