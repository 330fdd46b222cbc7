package sfu_test

import (
	"sync/atomic"
	"testing"

	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/sfu"
)

// Two observers of a channel (the relay and, say, a recorder) each tap the
// same local track: both get its packets. A shared tap let the second
// SetSink silently replace the first.
func TestTwoObserversTapOneTrack(t *testing.T) {
	testutil.CheckLeaks(t)
	s := newSFU(t, nil)
	ch := channel(t, s, "taps")
	var pkts [2]atomic.Int64
	for i := range pkts {
		stop, err := ch.Observe(sfu.Observer{TrackAdded: func(_ sfu.TrackInfo, tap *sfu.TrackTap) {
			tap.SetSink(func([]byte) { pkts[i].Add(1) })
		}})
		if err != nil {
			t.Fatal(err)
		}
		defer stop()
	}
	pub := join(t, s, clientOpts{channel: "taps", id: "PUB", role: sfu.RoleSendonly, video: true})
	pub.writeVideoUntil(t, 1, 5, func() bool { return pkts[0].Load() >= 5 && pkts[1].Load() >= 5 }, "both taps get the track's packets")
}
