package sfu

import (
	"slices"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// TestProbeCycle: a probe starts when the tracks need more than the
// estimate, tops the media up to twice the estimate (at most the need) in
// padding, ends when the estimate reaches its goal (the next may start a
// second later) or drops (the next waits twice as long each time, up to
// ccProbeMax), and none runs while the estimate covers the need.
func TestProbeCycle(t *testing.T) {
	var p prober
	now := int64(time.Hour)
	if p.probeStep(200_000, 300_000, now) {
		t.Fatal("a probe started though the estimate covers the need")
	}
	if !p.probeStep(1_000_000, 100_000, now) || p.goal != 150_000 {
		t.Fatalf("need 1 Mbit/s on 100 kbit/s: probing %v, goal %d; want a probe at 150 kbit/s", p.goal != 0, p.goal)
	}
	// 100 ms of 10 ms slices, media at 50 kbit/s: 100 kbit/s of padding.
	total := 0
	for range 10 {
		now += int64(probeSlice)
		total += p.padBytes(50_000, now)
	}
	if want := 100_000 / 8 / 10; total < want*9/10 || total > want*11/10 {
		t.Fatalf("%d bytes of padding in 100 ms, want about %d", total, want)
	}
	if n := p.padBytes(300_000, now+int64(probeSlice)); n != 0 {
		t.Fatalf("media above the goal: %d bytes of padding", n)
	}
	// The estimate reaches the goal: the probe ends, the next may start a
	// second later from the new estimate.
	now += int64(ccTick)
	if p.probeStep(1_000_000, 140_000, now) {
		t.Fatal("the probe goes on after the estimate reached its goal")
	}
	if p.probeStep(1_000_000, 140_000, now+int64(ccTick)) {
		t.Fatal("a probe started within probeGapMin of the last")
	}
	now += int64(probeGapMin)
	if !p.probeStep(1_000_000, 140_000, now) || p.goal != 210_000 {
		t.Fatalf("next probe: goal %d, want 210000", p.goal)
	}
	// The estimate drops during the probe (congestion): it ends, and the
	// next ones wait 1, 2, 4... s after their end, up to ccProbeMax.
	wantGap := int64(probeGapMin)
	for range 8 {
		now += int64(ccTick)
		if p.probeStep(1_000_000, 120_000, now) {
			t.Fatal("the probe goes on though the estimate dropped")
		}
		if p.gap != wantGap {
			t.Fatalf("gap after a failed probe %v, want %v", time.Duration(p.gap), time.Duration(wantGap))
		}
		if p.probeStep(1_000_000, 120_000, p.until+p.gap-1) {
			t.Fatal("a probe started before the gap")
		}
		now = p.until + p.gap
		if !p.probeStep(1_000_000, 140_000, now) {
			t.Fatal("no probe after the gap")
		}
		wantGap = min(2*wantGap, int64(ccProbeMax))
	}
	// A probe that runs its length without reaching the goal fails too.
	p = prober{}
	p.probeStep(1_000_000, 100_000, now)
	if p.probeStep(1_000_000, 120_000, now+int64(probeDur)) || p.gap != int64(probeGapMin) {
		t.Fatalf("a probe that did not reach its goal: gap %v", time.Duration(p.gap))
	}
}

// padSink is a subscriber's writer that checks the padding packets.
type padSink struct {
	t       *testing.T
	packets int
	lastSN  uint16
}

func (w *padSink) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	if !h.Padding || h.SSRC != 77 || h.PayloadType != 97 || len(payload) != probePad || payload[len(payload)-1] != probePad {
		w.t.Errorf("padding packet: P %v, SSRC %d, PT %d, %d bytes, last %d", h.Padding, h.SSRC, h.PayloadType, len(payload), payload[len(payload)-1])
	}
	if w.packets > 0 && h.SequenceNumber != w.lastSN+1 {
		w.t.Errorf("sequence number %d after %d", h.SequenceNumber, w.lastSN)
	}
	w.packets++
	w.lastSN = h.SequenceNumber
	return len(payload), nil
}

func (w *padSink) Write(b []byte) (int, error) { return len(b), nil }

// TestProbePadding: padding goes out as padding-only packets on the RTX
// stream, numbered after the RTX stream's resends, and allocates nothing.
func TestProbePadding(t *testing.T) {
	var p prober
	now := int64(time.Hour)
	p.probeStep(1_000_000, 100_000, now)
	w := &padSink{t: t}
	d := &downTrack{rx: newRtxState(true)}
	b := &binding{ws: w, rtxSSRC: 77, rtxPT: 97}
	first := uint16(d.rx.rtxSN.Load())
	if allocs := testing.AllocsPerRun(100, func() {
		now += int64(probeSlice)
		p.sendPadding(d, b, p.padBytes(0, now))
	}); allocs != 0 {
		t.Fatalf("%v allocations per slice", allocs)
	}
	// 101 slices of 10 ms at 150 kbit/s: 19 KB, in packets of 236 bytes
	if w.packets < 75 || p.packets != uint64(w.packets) {
		t.Fatalf("%d padding packets written (%d counted), want about 80", w.packets, p.packets)
	}
	if got := uint16(d.rx.rtxSN.Load()) - first; int(got) != w.packets {
		t.Fatalf("the RTX stream's numbers moved by %d for %d packets", got, w.packets)
	}
}

// padRecorder keeps the headers of what it is written.
type padRecorder struct{ hdrs []rtp.Header }

func (w *padRecorder) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	c := *h
	c.PaddingSize = 0
	if h.Padding && len(payload) > 0 {
		c.PaddingSize = payload[len(payload)-1]
	}
	w.hdrs = append(w.hdrs, c)
	return len(payload), nil
}

func (w *padRecorder) Write(b []byte) (int, error) { return len(b), nil }

// TestProbePaddingWithoutRTX: a simulcast subscriber without RTX is
// probed with padding-only packets on its media stream, numbered in its
// rewritten sequence space: the layer's next packet follows the padding
// without a gap, and one that comes out of order from before the padding
// takes the number of its place (103, which the padding did not take).
// Without mediaPadding the padding would go nowhere (no RTX stream) or
// collide with the media's numbers; without the cut in the ranges
// (snRanges) the late packet would take 102, sent already.
func TestProbePaddingWithoutRTX(t *testing.T) {
	src, ds, _ := newSimTestSource(t, 1, RidR0)
	d := ds[0]
	w := &padRecorder{}
	if _, err := d.Bind(&fakeContext{ssrc: 1000, pt: 96, ws: w}); err != nil {
		t.Fatal(err)
	}
	b := d.binding.Load()
	if b.rtxSSRC != 0 {
		t.Fatal("bound with RTX")
	}
	for _, sn := range []uint16{100, 101, 102, 104} {
		if err := src.writeLayer(0, vp8Packet(sn, uint32(sn)*3000, sn, uint8(sn), sn == 100)); err != nil {
			t.Fatal(err)
		}
	}
	var p prober
	p.pad[probePad-1] = probePad
	p.sendPadding(d, b, 2*(probePad+12))
	_ = src.writeLayer(0, vp8Packet(103, 103*3000, 103, 103, false)) // late, from before the padding
	_ = src.writeLayer(0, vp8Packet(105, 105*3000, 105, 105, false))
	var got []uint16
	for i, h := range w.hdrs {
		got = append(got, h.SequenceNumber)
		if pad := i == 4 || i == 5; pad != (h.PaddingSize == probePad) || h.SSRC != 1000 || pad && h.Timestamp != 104*3000 {
			t.Fatalf("packet %d: %+v", i, h)
		}
	}
	if want := []uint16{100, 101, 102, 104, 105, 106, 103, 107}; !slices.Equal(got, want) {
		t.Fatalf("sequence numbers sent %v, want %v", got, want)
	}
	if p.packets != 2 {
		t.Fatalf("%d padding packets counted", p.packets)
	}
}
