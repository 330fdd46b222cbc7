package sfu

import (
	"testing"
	"time"

	"github.com/pion/rtcp"
)

func TestFitLayer(t *testing.T) {
	st := newSimSub(RidR2)
	rates := [maxLayers]int64{150_000, 400_000, 1_000_000}
	sec := int64(time.Second)
	now := 100 * sec
	step := func(share int64, dt time.Duration, want int8) {
		t.Helper()
		now += int64(dt)
		st.fitLayer(rates, [maxTemporal]int64{}, share, now)
		if got := int8(st.bwCap.Load()); got != want {
			t.Fatalf("share %d at +%v: cap %d, want %d", share, time.Duration(now-100*sec), got, want)
		}
	}
	step(2_000_000, 0, 2)
	step(600_000, ccTick, 1) // far under r2: down at once
	step(280_000, ccTick, 0)
	step(80_000, ccTick, 0) // under r0: the lowest layer stays
	step(70_000, ccTick, 0)
	step(70_000, ccPauseHold-2*ccTick, 0)
	step(70_000, ccTick, -1)  // under r0 for ccPauseHold: paused
	step(200_000, ccTick, -1) // r0 fits with a quarter to spare, but not for long yet
	step(200_000, ccUpHold-ccTick, -1)
	step(200_000, ccTick, 0) // held: resumed on r0
	step(480_000, ccTick, 0) // r1 fits, but not with a quarter to spare
	step(600_000, ccTick, 0)
	step(600_000, ccUpHold, 1)
	step(450_000, ccTick, 1)   // still fits
	step(5_000_000, ccTick, 1) // one layer up at a time, after a hold
	step(5_000_000, ccUpHold, 2)

	// A dip a little under r2 (as GCC's at an overuse) goes down only if
	// it lasts.
	step(900_000, ccTick, 2)
	step(2_000_000, ccTick, 2)
	step(900_000, ccTick, 2)
	step(900_000, ccDownHold-ccTick, 2)
	step(900_000, ccTick, 1)
	// That step up failed within ccUpKeep: the next one waits twice as long.
	step(5_000_000, ccTick, 1)
	step(5_000_000, ccUpHold, 1)
	step(5_000_000, ccUpHold, 2)
	step(5_000_000, ccUpKeep, 2) // it held: no backoff any more
	if st.upHold != 0 {
		t.Fatalf("up hold %v after a step up that held", time.Duration(st.upHold))
	}

	// Paused with an estimate that does not move (nothing sent): r0 is
	// tried after ccProbeAfter, kept for ccUpHold whatever the estimate,
	// paused again, tried again after twice as long.
	step(50_000, ccTick, 0) // far under r2 and r1: to r0 at once
	step(50_000, ccPauseHold-ccTick, 0)
	step(50_000, ccTick, -1) // under r0 for ccPauseHold: paused
	step(50_000, ccProbeAfter-ccTick, -1)
	step(50_000, ccTick, 0) // the trial
	step(50_000, ccUpHold-ccTick, 0)
	step(50_000, ccTick, -1)
	step(50_000, ccProbeAfter, -1)
	step(50_000, ccProbeAfter, 0) // after twice as long
	step(200_000, ccTick, 0)      // the estimate follows: kept
	step(200_000, ccUpHold, 0)

	// A layer not measured (not arriving) is taken to fit: r2 stopping
	// lowers no cap.
	rates = [maxLayers]int64{150_000, 400_000, 0}
	st.bwCap.Store(2)
	step(600_000, ccTick, 2)
	rates = [maxLayers]int64{150_000, 0, 1_000_000}
	step(300_000, ccTick, 1) // r2 far off; r1, not arriving, may do
	st.upHold = 0
	step(5_000_000, ccTick, 1)
	step(5_000_000, ccUpHold, 2)
	// The lowest layer arriving is r1: far under it, pause.
	rates = [maxLayers]int64{0, 400_000, 1_000_000}
	step(350_000, ccTick, 1)
	step(190_000, ccTick, 1)
	step(190_000, ccPauseHold, -1)
	// Nothing measured: no decision.
	rates = [maxLayers]int64{}
	st.bwCap.Store(2)
	step(10_000, ccTick, 2)
	if st.wantLayer() != 2 {
		t.Fatalf("wantLayer %d", st.wantLayer())
	}
	st.bwCap.Store(0)
	if st.wantLayer() != 0 {
		t.Fatalf("wantLayer %d with cap 0", st.wantLayer())
	}
}

func TestREMBBitrate(t *testing.T) {
	remb, _ := (&rtcp.ReceiverEstimatedMaximumBitrate{SenderSSRC: 1, Bitrate: 1_234_567, SSRCs: []uint32{5, 6}}).Marshal()
	rr, _ := (&rtcp.ReceiverReport{SSRC: 1}).Marshal()
	got, ok := rembBitrate(append(rr, remb...))
	if !ok || got < 1_230_000 || got > 1_234_567 {
		t.Fatalf("REMB %d %v", got, ok)
	}
	if _, ok := rembBitrate(rr); ok {
		t.Fatal("REMB found in a receiver report")
	}
	pli, _ := (&rtcp.PictureLossIndication{MediaSSRC: 5}).Marshal()
	if _, ok := rembBitrate(pli); ok {
		t.Fatal("REMB found in a PLI")
	}
	if allocs := testing.AllocsPerRun(100, func() { rembBitrate(remb) }); allocs != 0 {
		t.Fatalf("rembBitrate allocates %v", allocs)
	}
}

// TestKeyframeDoesNotPauseLowest: the lowest layer runs at 140 kbit/s and a
// keyframe (a switch, a trial, a PLI) lifts one second's measure to 374
// kbit/s. With a share of 160 kbit/s the layer fits on average and must
// keep flowing; taken as measured, the seconds of the keyframes alone
// (over twice the share) would look far off.
func TestKeyframeDoesNotPauseLowest(t *testing.T) {
	st := newSimSub(RidAuto)
	st.bwCap.Store(0)
	var rate int64
	now := int64(time.Hour)
	for sec := range 20 {
		r := int64(140_000)
		if sec%4 == 1 {
			r = 374_000
		}
		rate = smoothRate(rate, r)
		if rate > 180_000 {
			t.Fatalf("second %d: smoothed rate %d after a keyframe's 374k", sec, rate)
		}
		for range 5 {
			st.fitLayer([maxLayers]int64{rate, 500_000, 1_500_000}, [maxTemporal]int64{}, 160_000, now)
			now += int64(ccTick)
		}
		if c := st.bwCap.Load(); c != 0 {
			t.Fatalf("second %d: cap %d, want 0 (r0 kept)", sec, c)
		}
	}
	if got := smoothRate(300_000, 0); got != 0 {
		t.Errorf("a layer that stopped: %d, want 0", got)
	}
	if got := smoothRate(0, 250_000); got != 250_000 {
		t.Errorf("a layer that started: %d, want 250000", got)
	}
}

// TestFitLayerTemporal: under its lowest layer, a subscriber steps through
// that layer's temporal layers (forwarding fewer frames, still decoding)
// and pauses only when its share stays under the lowest of them for
// ccPauseHold; it climbs back the same way.
func TestFitLayerTemporal(t *testing.T) {
	st := newSimSub(RidR2)
	rates := [maxLayers]int64{150_000, 400_000, 1_000_000}
	trates := [maxTemporal]int64{60_000, 90_000} // TID 0, TIDs 0 and 1; r0 whole: 150k
	sec := int64(time.Hour)
	now := sec
	step := func(share int64, dt time.Duration, layer, tid int8) {
		t.Helper()
		now += int64(dt)
		st.fitLayer(rates, trates, share, now)
		if l, tc := int8(st.bwCap.Load()), int8(st.tCap.Load()); l != layer || l >= 0 && tc != tid {
			t.Fatalf("share %d at +%v: caps %d/%d, want %d/%d", share, time.Duration(now-sec), l, tc, layer, tid)
		}
	}
	step(2_000_000, 0, 2, tidAll)
	step(280_000, ccTick, 0, tidAll)
	step(100_000, ccTick, 0, 1) // r0 far off: down to TIDs 0 and 1 at once
	step(50_000, ccTick, 0, 0)  // those far off too: TID 0 alone
	step(40_000, ccTick, 0, 0)  // under TID 0: kept for a while
	step(40_000, ccPauseHold-2*ccTick, 0, 0)
	step(70_000, ccTick, 0, 0) // back over TID 0: the pause clock starts again
	step(40_000, ccTick, 0, 0)
	step(40_000, ccPauseHold-ccTick, 0, 0)
	step(40_000, ccTick, -1, 0) // under TID 0 for ccPauseHold: paused
	step(80_000, ccTick, -1, 0) // TID 0 fits with a quarter to spare
	step(80_000, ccUpHold, 0, 0)
	step(95_000, ccTick, 0, 0) // TIDs 0 and 1 fit (a temporal step needs no quarter to spare)
	step(95_000, ccUpHold, 0, 1)
	step(160_000, ccTick, 0, 1)
	step(160_000, ccUpHold, 0, tidAll)
	step(450_000, ccTick, 0, tidAll) // r1 fits, but not with a quarter to spare
	step(450_000, 2*ccUpHold, 0, tidAll)
	step(600_000, ccTick, 0, tidAll)
	step(600_000, ccUpHold, 1, tidAll)
	// A layer without temporal layers measured has no steps under it.
	trates = [maxTemporal]int64{}
	step(100_000, ccTick, 0, tidAll)
	if ld := ladderOf(rates, [maxTemporal]int64{150_000}); ld.n != maxLayers {
		t.Fatalf("a temporal rate not under the layer's is a step: %+v", ld)
	}
}
