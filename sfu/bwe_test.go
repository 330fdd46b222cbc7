package sfu

import (
	"encoding/binary"
	"math"
	"testing"
	"time"

	"github.com/pion/rtcp"
)

// encodeTWCC builds a transport-cc feedback for packets base.. whose
// arrivals (µs; -1 lost) are given, with 2-bit status vector chunks, as a
// receiver would.
func encodeTWCC(base uint16, arrivals []int64, fbSeq uint8) []byte {
	ref := int64(0)
	for _, a := range arrivals {
		if a >= 0 {
			ref = a / 64_000
			break
		}
	}
	var chunks, deltas []byte
	last := ref * 64_000
	for i := 0; i < len(arrivals); i += 7 {
		c := uint16(0xc000)
		for j := 0; j < 7 && i+j < len(arrivals); j++ {
			a := arrivals[i+j]
			if a < 0 {
				continue
			}
			d := (a - last) / 250
			last += d * 250
			s := uint16(1)
			if d < 0 || d > 255 {
				s = 2
				deltas = binary.BigEndian.AppendUint16(deltas, uint16(int16(d)))
			} else {
				deltas = append(deltas, byte(d))
			}
			c |= s << (12 - 2*j)
		}
		chunks = binary.BigEndian.AppendUint16(chunks, c)
	}
	body := make([]byte, 20, 20+len(chunks)+len(deltas)+3)
	body = append(append(body, chunks...), deltas...)
	for len(body)%4 != 0 {
		body = append(body, 0)
	}
	body[0] = 0x80 | 15
	body[1] = 205
	binary.BigEndian.PutUint16(body[2:], uint16(len(body)/4-1))
	binary.BigEndian.PutUint16(body[12:], base)
	binary.BigEndian.PutUint16(body[14:], uint16(len(arrivals)))
	body[16], body[17], body[18], body[19] = byte(ref>>16), byte(ref>>8), byte(ref), fbSeq
	return body
}

type twccStatus struct {
	seq  uint16
	recv bool
	at   int64
}

func readTWCC(t testing.TB, b []byte) []twccStatus {
	f, ok := parseTWCC(b)
	if !ok {
		t.Fatalf("feedback not parsed: % x", b)
	}
	var out []twccStatus
	it := f.iter()
	for {
		seq, recv, at, ok := it.next()
		if !ok {
			return out
		}
		out = append(out, twccStatus{seq, recv, at})
	}
}

func TestParseTWCC(t *testing.T) {
	// As pion's marshaller writes it: run length and 1-bit and 2-bit
	// vector chunks, small and large (negative) deltas.
	fb := &rtcp.TransportLayerCC{
		SenderSSRC: 1, MediaSSRC: 2, BaseSequenceNumber: 65530, PacketStatusCount: 30,
		ReferenceTime: 100, FbPktCount: 7,
		PacketChunks: []rtcp.PacketStatusChunk{
			&rtcp.RunLengthChunk{PacketStatusSymbol: rtcp.TypeTCCPacketReceivedSmallDelta, RunLength: 3},
			&rtcp.StatusVectorChunk{SymbolSize: rtcp.TypeTCCSymbolSizeOneBit, SymbolList: []uint16{1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}},
			&rtcp.StatusVectorChunk{SymbolSize: rtcp.TypeTCCSymbolSizeTwoBit, SymbolList: []uint16{2, 1, 0, 2, 1, 1, 0}},
			&rtcp.RunLengthChunk{PacketStatusSymbol: rtcp.TypeTCCPacketNotReceived, RunLength: 6},
		},
	}
	var want []twccStatus
	at := int64(100) * 64_000
	deltas := []int64{250, 500, 750, 1000, 0, 63750, 100_000, 250, -8000, 750, 30_000}
	di := 0
	seq := uint16(65530)
	add := func(recv, large bool) {
		if recv {
			d := deltas[di]
			di++
			typ := uint16(rtcp.TypeTCCPacketReceivedSmallDelta)
			if large {
				typ = rtcp.TypeTCCPacketReceivedLargeDelta
			}
			fb.RecvDeltas = append(fb.RecvDeltas, &rtcp.RecvDelta{Type: typ, Delta: d})
			at += d
			want = append(want, twccStatus{seq, true, at})
		} else {
			want = append(want, twccStatus{seq: seq})
		}
		seq++
	}
	for range 3 {
		add(true, false)
	}
	for _, s := range []uint16{1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1} {
		add(s == 1, false)
	}
	for _, s := range []uint16{2, 1, 0, 2, 1, 1, 0} {
		add(s != 0, s == 2)
	}
	for range 6 {
		add(false, false)
	}
	fb.Header = rtcp.Header{Count: rtcp.FormatTCC, Type: rtcp.TypeTransportSpecificFeedback, Length: uint16(fb.MarshalSize()/4 - 1)}
	b, err := fb.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	// in a compound packet, after a receiver report
	rr, _ := (&rtcp.ReceiverReport{SSRC: 1}).Marshal()
	got := readTWCC(t, b)
	if len(got) != len(want) {
		t.Fatalf("%d statuses, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("status %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if f, _ := parseTWCC(b); f.fbSeq != 7 || f.base != 65530 {
		t.Fatalf("header %+v", f)
	}
	// Truncated, or with a reserved status: refused.
	for _, bad := range [][]byte{b[:20], b[:len(b)-4], rr, append([]byte{}, b[:8]...)} {
		bad = append([]byte{}, bad...)
		if len(bad) >= 4 {
			binary.BigEndian.PutUint16(bad[2:], uint16(len(bad)/4-1))
		}
		if _, ok := parseTWCC(bad); ok {
			t.Fatalf("parsed % x", bad)
		}
	}
	reserved := append([]byte{}, b...)
	binary.BigEndian.PutUint16(reserved[20:], 0x6003) // a run of 3 reserved statuses
	if _, ok := parseTWCC(reserved); ok {
		t.Fatal("reserved status parsed")
	}
	if allocs := testing.AllocsPerRun(100, func() {
		f, _ := parseTWCC(b)
		it := f.iter()
		for _, _, _, ok := it.next(); ok; _, _, _, ok = it.next() {
		}
	}); allocs != 0 {
		t.Fatalf("parsing allocates %v", allocs)
	}
	// Our own encoder (2-bit vectors) reads back too.
	arr := []int64{1_000_000, 1_001_000, -1, 1_200_000, 1_150_000, 1_150_250, -1, -1, 1_300_000}
	got = readTWCC(t, encodeTWCC(10, arr, 0))
	for i, a := range arr {
		if got[i].seq != uint16(10+i) || got[i].recv != (a >= 0) || (a >= 0 && got[i].at != a) {
			t.Fatalf("own encoding, status %d: %+v, arrival %d", i, got[i], a)
		}
	}
}

// TestTWCCFeedbackTakenOut: the sender takes the transport-cc feedback out
// of a compound packet and passes the rest on.
func TestTWCCFeedbackTakenOut(t *testing.T) {
	tw := &twccSender{cc: true, bwe: newBWE(), ring: make([]twccSent, sentRingSize)}
	rr, _ := (&rtcp.ReceiverReport{SSRC: 1}).Marshal()
	pli, _ := (&rtcp.PictureLossIndication{MediaSSRC: 5}).Marshal()
	fb := encodeTWCC(3, []int64{1000, 2000}, 0)
	b := append(append(append(append([]byte{}, rr...), fb...), pli...), fb...)
	n := tw.onRTCP(b, int64(time.Second))
	if want := append(append([]byte{}, rr...), pli...); string(b[:n]) != string(want) {
		t.Fatalf("left % x, want % x", b[:n], want)
	}
	if !tw.feedback.Load() {
		t.Fatal("the feedback was not read")
	}
	if n := tw.onRTCP(append([]byte{}, fb...), int64(time.Second)); n != 0 {
		t.Fatalf("feedback only: %d bytes left", n)
	}
	if allocs := testing.AllocsPerRun(100, func() { tw.onRTCP(b, int64(time.Second)) }); allocs != 0 {
		t.Fatalf("onRTCP allocates %v", allocs)
	}
}

func FuzzParseTWCC(f *testing.F) {
	f.Add(encodeTWCC(1, []int64{1000, 2000, -1, 70_000, 60_000}, 1))
	f.Add(encodeTWCC(65535, []int64{-1, -1, 5_000_000}, 2))
	f.Fuzz(func(t *testing.T, b []byte) {
		// the whole sender path takes any compound packet without trouble
		tw := &twccSender{cc: true, bwe: newBWE(), ring: make([]twccSent, sentRingSize)}
		for i := range tw.ring {
			tw.ring[i] = twccSent{atUs: uint32(i * 500), seq: uint16(i), size: 1200}
		}
		c := append([]byte(nil), b...)
		n := tw.onRTCP(c, int64(time.Second))
		if n > len(b) {
			t.Fatalf("%d bytes left of %d", n, len(b))
		}
		for rest := c[:n]; len(rest) >= 4; {
			size := (int(binary.BigEndian.Uint16(rest[2:4])) + 1) * 4
			if size > len(rest) || rest[0]>>6 != 2 {
				break
			}
			if _, ok := parseTWCC(rest[:size]); ok {
				t.Fatal("a feedback was left in the packet")
			}
			rest = rest[size:]
		}
		copy(c, b)
		tw.onRTCP(c, int64(2*time.Second))
		if est, _ := tw.estimate(0); est < ccMinBitrate || est > ccMaxBitrate {
			t.Fatalf("estimate %d", est)
		}
		fb, ok := parseTWCC(b)
		if !ok {
			return
		}
		n = 0
		it := fb.iter()
		for seq, _, _, ok := it.next(); ok; seq, _, _, ok = it.next() {
			if seq != fb.base+uint16(n) {
				t.Fatalf("status %d has sequence number %d, base %d", n, seq, fb.base)
			}
			n++
		}
		if n != fb.count {
			t.Fatalf("%d statuses read, the feedback says %d", n, fb.count)
		}
	})
}

// linkSim is a bottleneck link: a FIFO of capacity bps with a queue of at
// most queueBytes (tail drop) and a fixed propagation delay, fed with what
// a twccSender's estimator allows, its feedback every 100 ms.
type linkSim struct {
	e        *bwe
	ring     []twccSent
	seq      uint16
	capacity float64 // bps
	queue    int     // bytes
	free     int64   // µs: when the link finishes what it holds
	fixed    bool    // send appRate whatever the estimate (a layer's trial)
	// stall, when set, returns how late the receiver reads a packet that
	// arrived at its µs (a receiver waiting for a CPU).
	stall   func(arr int64) int64
	pending []int64 // arrivals (µs, -1 lost) from seq base
	base    uint16
	nowUs   int64
	fbSeq   uint8
}

func newLinkSim(capacity float64) *linkSim {
	return &linkSim{e: newBWE(), ring: make([]twccSent, sentRingSize), capacity: capacity, queue: 60_000, nowUs: 1_000_000}
}

// run sends for d at min(estimate, appRate), 1200-byte packets, and
// returns the estimate at the end.
func (l *linkSim) run(d time.Duration, appRate float64) int64 {
	end := l.nowUs + d.Microseconds()
	nextFb := l.nowUs + 100_000
	for l.nowUs < end {
		rate := min(float64(l.e.target(l.nowUs*1000)), appRate)
		if l.fixed {
			rate = appRate
		}
		const size = 1200
		l.ring[l.seq&(sentRingSize-1)] = twccSent{atUs: uint32(l.nowUs), seq: l.seq, size: size}
		if len(l.pending) == 0 {
			l.base = l.seq
		}
		l.seq++
		tx := int64(size * 8 * 1e6 / l.capacity)
		start := max(l.free, l.nowUs)
		if queued := float64(start-l.nowUs) * l.capacity / 8e6; queued > float64(l.queue) {
			l.pending = append(l.pending, -1)
		} else {
			l.free = start + tx
			arr := l.free + 20_000
			if l.stall != nil {
				arr += l.stall(arr)
			}
			l.pending = append(l.pending, arr)
		}
		l.nowUs += int64(size * 8 * 1e6 / rate)
		for l.nowUs >= nextFb {
			l.feedback(nextFb)
			nextFb += 100_000
		}
	}
	return l.e.target(l.nowUs * 1000)
}

// feedback reports, at t, the packets that arrived by then (and the lost
// ones before them).
func (l *linkSim) feedback(t int64) {
	n := 0
	for n < len(l.pending) && l.pending[n] <= t {
		n++
	}
	if n == 0 {
		return
	}
	fb, ok := parseTWCC(encodeTWCC(l.base, l.pending[:n], l.fbSeq))
	if !ok {
		panic("feedback not parsed")
	}
	l.fbSeq++
	// the ring's clock is the sender's mono µs: the same as the link's here
	l.e.onFeedback(&fb, l.ring, t*1000)
	l.pending = l.pending[n:]
	l.base += uint16(n)
}

func TestBWEFollowsLink(t *testing.T) {
	l := newLinkSim(1_000_000)
	if est := l.run(20*time.Second, 5_000_000); est < 600_000 || est > 1_300_000 {
		t.Fatalf("on a 1 Mbit/s link the estimate is %d after 20 s", est)
	}
	l.capacity = 300_000
	if est := l.run(5*time.Second, 5_000_000); est > 400_000 || est < 100_000 {
		t.Fatalf("5 s after the link fell to 300 kbit/s the estimate is %d", est)
	}
	t.Logf("on 300 kbit/s: %d", l.e.target(0))
	// Sending less than the estimate allows (an application limit), the
	// estimate still grows while what is sent gets through, so that the
	// layer choice can try a layer up once the link has room again.
	l.capacity = 3_000_000
	est := l.run(30*time.Second, 200_000)
	if est < 1_000_000 {
		t.Fatalf("30 s after the link rose to 3 Mbit/s, sending 200 kbit/s, the estimate is %d", est)
	}
	t.Logf("app limited at 200 kbit/s on 3 Mbit/s: %d", est)
	if est := l.run(20*time.Second, 5_000_000); est < 2_000_000 || est > 3_900_000 {
		t.Fatalf("on a 3 Mbit/s link the estimate is %d", est)
	}
	// A collapsed estimate (as after a stall) and a trial of a layer at
	// 150 kbit/s, sent whatever the estimate, on a link with room: the
	// estimate is lifted to what gets through within about a second, not
	// 8% a second.
	l.e.rate, l.e.lossRate, l.e.decAt, l.e.lossDecAt = 40_000, 40_000, l.nowUs*1000, l.nowUs*1000
	l.fixed = true
	if est := l.run(1500*time.Millisecond, 150_000); est < 130_000 {
		t.Fatalf("1.5 s into a 150 kbit/s trial after a collapse to 40 kbit/s the estimate is %d", est)
	}
	l.fixed = false
	// A link that loses a quarter of what it carries without queueing
	// (loss, not delay): the loss based estimate drops.
	l2 := newLinkSim(10_000_000)
	before := l2.run(5*time.Second, 2_000_000)
	// 20 feedbacks 100 ms apart, of 100 packets each, a quarter lost.
	var fbs [][]byte
	start, seq0 := l2.nowUs, l2.seq
	for i := range 20 {
		arr := make([]int64, 100)
		for j := range arr {
			arr[j] = -1
			if j%4 != 0 {
				arr[j] = start + int64(i*100_000+j*1000) + 20_000
			}
		}
		fbs = append(fbs, encodeTWCC(seq0+uint16(i*100), arr, uint8(i)))
	}
	lossy := func() {
		for i, b := range fbs {
			for j := range 100 {
				seq := seq0 + uint16(i*100+j)
				l2.ring[seq&(sentRingSize-1)] = twccSent{atUs: uint32(start + int64(i*100_000+j*1000)), seq: seq, size: 1200}
			}
			f, _ := parseTWCC(b)
			l2.e.onFeedback(&f, l2.ring, (start+int64(i*100_000)+150_000)*1000)
		}
	}
	lossy()
	if after := l2.e.target(0); after > before/2 {
		t.Fatalf("25%% loss for 2 s: estimate %d, before %d", after, before)
	}
	if allocs := testing.AllocsPerRun(20, lossy); allocs != 0 {
		t.Fatalf("reading feedback allocates %v", allocs)
	}
}

// TestBWELossOverPackets: at the low layer's packet rate a feedback reports
// on three packets; one lost in four feedbacks is 8% loss, which must not
// lower the loss based estimate (over 10% does), though the feedback that
// holds it reads 33%.
func TestBWELossOverPackets(t *testing.T) {
	run := func(lostEvery int) float64 {
		e := newBWE()
		ring := make([]twccSent, sentRingSize)
		var seq uint16
		nowUs := int64(1_000_000)
		for fbn := range 100 {
			base := seq
			arr := make([]int64, 3)
			for i := range arr {
				send := nowUs + int64(i)*33_000
				ring[seq&(sentRingSize-1)] = twccSent{atUs: uint32(send), seq: seq, size: 1000}
				seq++
				arr[i] = send + 20_000
				if i == 1 && fbn%lostEvery == 0 {
					arr[i] = -1
				}
			}
			nowUs += 100_000
			fb, ok := parseTWCC(encodeTWCC(base, arr, uint8(fbn)))
			if !ok {
				t.Fatal("feedback not parsed")
			}
			e.onFeedback(&fb, ring, nowUs*1000)
		}
		return e.lossRate
	}
	if got := run(4); got < ccInitialBitrate {
		t.Errorf("8%% loss, one packet in four feedbacks of three: loss based estimate %.0f, under the initial %d", got, ccInitialBitrate)
	}
	if got := run(1); got >= ccInitialBitrate/2 {
		t.Errorf("33%% loss for 10 s: loss based estimate %.0f, not under half the initial %d", got, ccInitialBitrate)
	}
}

// TestBWEJitterIsNotCongestion: a subscriber on a link with room whose
// packets are read late now and then (its host's CPU busy for tens of ms)
// sees delay jumps that GCC's trendline can take for a queue. The estimate
// must not be cut for them: what arrives keeps up with what is sent, and
// nothing is lost (jitterOveruse). Without that check the estimate of this
// 300 kbit/s sender on a 3 Mbit/s link fell under what it sends.
func TestBWEJitterIsNotCongestion(t *testing.T) {
	l := newLinkSim(3_000_000)
	// Now and then (every 0.2 to 1 s) the receiver's CPU is shared for
	// 50 to 250 ms: it reads what arrives a fifth slower than it comes, so
	// a backlog (delay, up to 62 ms) builds up as a queue's would; then it
	// catches up at once.
	var busyFrom, busyTo, x int64 = 0, 0, 7
	rnd := func(n int64) int64 { x = (x*1103515245 + 12345) & 0x7fffffff; return x % n }
	l.stall = func(arr int64) int64 {
		if arr >= busyTo {
			busyFrom = arr + 200_000 + rnd(800_000)
			busyTo = busyFrom + 50_000 + rnd(200_000)
		}
		if arr >= busyFrom {
			return (arr - busyFrom) / 4
		}
		return 0
	}
	l.run(5*time.Second, 300_000)
	low := int64(math.MaxInt64)
	for range 60 {
		low = min(low, l.run(500*time.Millisecond, 300_000))
	}
	t.Logf("lowest estimate over 30 s: %d; overuses taken for jitter: %d", low, l.e.jitterOver)
	if low < 300_000 {
		t.Fatalf("sending 300 kbit/s on a 3 Mbit/s link with a busy receiver, the estimate fell to %d", low)
	}
}

// TestBWEQueueDrainsLifts: after a cut to 120 kbit/s, a link whose queue
// drains (a probe, a keyframe or the higher layers sent before the cut
// filled it): the subscriber acknowledges 290 kbit/s, the rate the link
// carries, and the delay falls (underuse), which holds the estimate. Held
// at 120 kbit/s, under the lowest layer and the audio reserve, for the two
// seconds and more the queue takes to drain, the estimate made fitLayer
// pause the video (ccPauseHold) of TestCongestionSettlesAndRecovers'
// limited subscriber on pion's vnet: the estimate must come up to what
// gets through (the loss based estimate follows at the next feedback
// with little loss: onFeedback).
func TestBWEQueueDrainsLifts(t *testing.T) {
	e := newBWE()
	now := int64(20e9)
	e.rate, e.lossRate, e.state = 120_000, 120_000, rcHold
	e.decAt, e.lossDecAt = now-int64(2e9), now-int64(2e9)
	e.ackRate, e.ackAt, e.ackSpread = 290_000, now, 0.7
	e.usage, e.usageOfFbk = useUnder, useUnder
	e.updateRate(now)
	if e.rate != 290_000 {
		t.Fatalf("underuse while 290 kbit/s got through since the cut: delay based estimate %.0f, want 290000", e.rate)
	}
	// An acknowledged rate measured over packets sent before the cut
	// (not fresh) lifts nothing.
	e.rate, e.lossRate, e.decAt = 120_000, 120_000, now
	e.updateRate(now + int64(2e8))
	if e.rate != 120_000 {
		t.Fatalf("underuse right after a cut: delay based estimate %.0f, want 120000", e.rate)
	}
}
