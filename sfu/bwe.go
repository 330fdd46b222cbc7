package sfu

// The send-side bandwidth estimator of a connection, fed by the
// subscriber's transport-cc feedback (twcc.go). It follows GCC as
// libwebrtc and pion's gcc build it:
//
//   - Delay based. Packets are grouped by send time (5 ms bursts); for
//     each group the delay variation against the previous one (inter-arrival
//     minus inter-departure) is accumulated, smoothed and fitted with a line
//     over the last 20 groups (the trendline filter). The slope, scaled, is
//     compared with an adaptive threshold: above it for 10 ms and rising is
//     overuse, below its negative underuse. The rate controller (AIMD)
//     then cuts to 0.85 of the rate the subscriber acknowledged receiving on
//     overuse (at most by half at once, every 200 ms at most), holds on
//     underuse, and otherwise grows: by about a packet per response time
//     (200 ms) while what the subscriber receives is near the rate of the
//     last cuts (within three standard deviations), else 8% a second. An
//     overuse is not acted on when nothing is lost and the packets the
//     subscriber acknowledged arrived over no more than 1.1 times the time
//     they took to send (jitterOveruse): no queue built up, the delay
//     came from a receiver (or a sender) waiting for its CPU.
//   - Loss based: over 10% loss (measured over 20 packets at least) the
//     estimate drops by half the loss, under 2% it may grow by 5% every
//     200 ms; it never exceeds the delay based one.
//   - Neither is left under the rate the subscriber acknowledged receiving
//     (measured over packets sent after the last cut) while it grows: a
//     collapsed estimate would otherwise take tens of seconds to reach the
//     lowest layer again, and the layer's trial (congestion.go) would end,
//     paused again, before it did; a padding probe (probe.go) lifts it the
//     same way. Nor is the delay based one while it holds on underuse: a
//     queue that drains arrives at the rate the link carries, and a burst
//     (a probe, a keyframe, the layers sent before the cut) can leave
//     seconds of it on a slow link, long enough for the video to pause
//     (libwebrtc holds there; its probes set the estimate instead).
//
// The estimate grows while the subscriber receives what is sent, even when
// that is less than the estimate (as pion's GCC does; libwebrtc instead
// caps it at 1.5 times the acknowledged rate and probes with padding): the
// layer choice (congestion.go) steps up one layer at a time after a hold,
// and probes with padding (probe.go) when the step does not fit yet.
// Nothing here allocates.

import (
	"math"
	"time"
)

const (
	bweGroupUs       = 5_000 // a send-time burst: one group
	bweWindow        = 20    // groups in the trendline's fit
	bweSmoothing     = 0.9
	bweThresholdGain = 4.0
	bweOveruseMs     = 10.0
	bweKUp           = 0.0087
	bweKDown         = 0.039
	bweBeta          = 0.85
	bweAckWindowUs   = 300_000 // acknowledged rate measured over at least this
	bweDecreaseGapNs = 200_000_000
	bweLossLow       = 0.02
	bweLossHigh      = 0.10
	bweLossGapNs     = 200_000_000
	bweLossPackets   = 20          // a loss ratio is measured over this many packets at least
	bweFreshNs       = 600_000_000 // an acknowledged rate this long after a cut measures what was sent after it
	bweQueueSpread   = 1.1         // an acknowledged window arriving over less than this times its send span: no queue (jitterOveruse)
)

// Detector outcomes.
const (
	useNormal = iota
	useOver
	useUnder
)

// Rate controller states.
const (
	rcIncrease = iota
	rcHold
	rcDecrease
)

type bwe struct {
	// the group being built and the last complete one
	gOpen                 bool
	gFirstSend, gLastSend int64 // µs
	gLastArr              int64
	pOK                   bool
	pLastSend, pLastArr   int64

	// arrival times: the feedback's 24-bit reference, unwrapped
	refRaw, refBase int64
	refOK           bool

	// trendline filter
	firstArr  float64 // ms
	firstOK   bool
	acc       float64
	smoothed  float64
	winX      [bweWindow]float64
	winY      [bweWindow]float64
	winN      int
	winAt     int
	numDeltas int
	trend     float64

	// overuse detector
	thresh     float64 // ms
	threshAt   int64   // ns
	overMs     float64
	overCount  int
	prevTrend  float64
	usage      int
	usageOfFbk int // the worst seen in the feedback being read

	// rate controller
	state     int
	rate      float64 // delay based, bps
	changedAt int64   // ns
	decAt     int64   // ns
	linkAvg   float64 // bps at the cuts; 0: not known
	linkVar   float64 // normalised variance
	ackBytes  int
	ackStart  int64 // µs of arrival
	ackLast   int64
	ackSend0  int64 // µs: the earliest and latest send time of the window's packets
	ackSend1  int64
	ackRate   float64 // bps; 0 not measured yet
	// ackSpread is how much longer the last acknowledged window took to
	// arrive than to send (arrival span over send span); 0 not measured.
	ackSpread  float64
	jitterOver int   // overuses not acted on: no queue (jitterOveruse)
	ackAt      int64 // ns: when ackRate was measured
	avgPktBits float64

	// loss based
	lossTotal int // packets reported on since the last loss update
	lossLost  int // of which lost
	lossRate  float64
	avgLoss   float64
	lossAt    int64
	lossIncAt int64
	lossDecAt int64
}

func newBWE() *bwe {
	return &bwe{thresh: 12.5, overMs: -1, rate: ccInitialBitrate, lossRate: ccInitialBitrate, avgPktBits: 1200 * 8}
}

// onFeedback reads one transport-cc feedback against ring, what was sent.
func (e *bwe) onFeedback(fb *twccFeedback, ring []twccSent, now int64) {
	// Unwrap the 24-bit reference time (64 ms units) into µs.
	raw := fb.refUs
	if !e.refOK {
		e.refOK, e.refRaw = true, raw
	}
	const span = int64(1<<24) * 64_000
	d := raw - e.refRaw
	switch {
	case d < -span/2:
		e.refBase += span
	case d > span/2:
		e.refBase -= span
	}
	e.refRaw = raw
	base := e.refBase
	nowUs := now / 1_000

	total, lost := 0, 0
	e.usageOfFbk = e.usage
	it := fb.iter()
	for {
		seq, recv, arr, ok := it.next()
		if !ok {
			break
		}
		slot := &ring[int(seq)&(len(ring)-1)]
		if slot.seq != seq || slot.size == 0 {
			continue // not ours, too old, or read already
		}
		size := int(slot.size)
		slot.size = 0
		send := nowUs - int64(uint32(nowUs)-slot.atUs)
		total++
		if !recv {
			lost++
			continue
		}
		e.onPacket(send, arr+base, size, now)
	}
	if total == 0 {
		return
	}
	// The loss ratio is taken over bweLossPackets packets at least, summed
	// over feedbacks as libwebrtc's loss based estimator does: at the low
	// layer's 20 to 60 packets a second a feedback reports on 2 to 6, and one
	// lost (or late) among them would read as 15 to 50% loss.
	e.lossTotal += total
	e.lossLost += lost
	if e.lossTotal >= bweLossPackets {
		e.updateLoss(float64(e.lossLost)/float64(e.lossTotal), now)
		e.lossTotal, e.lossLost = 0, 0
	}
	if e.avgLoss < bweLossLow && e.ackFresh(e.lossDecAt) {
		// what gets through, with little loss, measured since the last
		// cut: at every feedback, not only when a ratio is measured
		e.lossRate = max(e.lossRate, e.ackRate)
	}
	e.updateRate(now)
}

// onPacket takes one packet received: its send and arrival times (µs) and
// size.
func (e *bwe) onPacket(send, arr int64, size int, now int64) {
	e.avgPktBits += (float64(size*8) - e.avgPktBits) / 16
	// acknowledged rate
	if e.ackBytes == 0 || arr < e.ackStart {
		e.ackStart, e.ackBytes = arr, 0
		e.ackSend0, e.ackSend1 = send, send
	}
	e.ackBytes += size
	if arr > e.ackLast {
		e.ackLast = arr
	}
	e.ackSend0, e.ackSend1 = min(e.ackSend0, send), max(e.ackSend1, send)
	if span := e.ackLast - e.ackStart; span >= bweAckWindowUs {
		e.ackRate = float64(e.ackBytes) * 8 * 1e6 / float64(span)
		e.ackSpread = 0
		if sent := e.ackSend1 - e.ackSend0; sent > 0 {
			e.ackSpread = float64(span) / float64(sent)
		}
		e.ackBytes = 0
		e.ackAt = now
	}
	// groups
	if !e.gOpen {
		e.gOpen, e.gFirstSend, e.gLastSend, e.gLastArr = true, send, send, arr
		return
	}
	if send < e.gFirstSend {
		return // reordered before the group: ignore
	}
	if send-e.gFirstSend <= bweGroupUs {
		e.gLastSend = max(e.gLastSend, send)
		e.gLastArr = max(e.gLastArr, arr)
		return
	}
	// p's group is complete: compare it with the one before.
	if e.pOK {
		sendDelta := float64(e.gLastSend-e.pLastSend) / 1e3
		arrDelta := float64(e.gLastArr-e.pLastArr) / 1e3
		if sendDelta > 0 && arrDelta >= -1000 {
			e.trendline(arrDelta-sendDelta, sendDelta, float64(e.gLastArr)/1e3, now)
		}
	}
	e.pOK, e.pLastSend, e.pLastArr = true, e.gLastSend, e.gLastArr
	e.gFirstSend, e.gLastSend, e.gLastArr = send, send, arr
}

// trendline adds a group's delay variation (ms) and runs the detector.
func (e *bwe) trendline(delta, sendDelta, arrMs float64, now int64) {
	e.numDeltas = min(e.numDeltas+1, 1000)
	if !e.firstOK {
		e.firstOK, e.firstArr = true, arrMs
	}
	e.acc += delta
	e.smoothed = bweSmoothing*e.smoothed + (1-bweSmoothing)*e.acc
	e.winX[e.winAt] = arrMs - e.firstArr
	e.winY[e.winAt] = e.smoothed
	e.winAt = (e.winAt + 1) % bweWindow
	if e.winN < bweWindow {
		e.winN++
	}
	if e.winN == bweWindow {
		e.trend = slope(e.winX[:], e.winY[:])
	}
	e.detect(sendDelta, now)
}

// slope is the least-squares slope of y over x; 0 when x does not vary.
func slope(x, y []float64) float64 {
	var sx, sy float64
	for i := range x {
		sx += x[i]
		sy += y[i]
	}
	mx, my := sx/float64(len(x)), sy/float64(len(x))
	var num, den float64
	for i := range x {
		num += (x[i] - mx) * (y[i] - my)
		den += (x[i] - mx) * (x[i] - mx)
	}
	if den == 0 {
		return 0
	}
	return num / den
}

// detect compares the trend with the adaptive threshold.
func (e *bwe) detect(sendDelta float64, now int64) {
	if e.numDeltas < 2 {
		return
	}
	m := float64(min(e.numDeltas, 60)) * e.trend * bweThresholdGain
	switch {
	case m > e.thresh:
		if e.overMs < 0 {
			e.overMs = sendDelta / 2
		} else {
			e.overMs += sendDelta
		}
		e.overCount++
		if e.overMs > bweOveruseMs && e.overCount > 1 && e.trend >= e.prevTrend {
			e.overMs, e.overCount = 0, 0
			e.usage = useOver
		}
	case m < -e.thresh:
		e.overMs, e.overCount = -1, 0
		e.usage = useUnder
	default:
		e.overMs, e.overCount = -1, 0
		e.usage = useNormal
	}
	if e.usageOfFbk != useOver {
		e.usageOfFbk = e.usage // an overuse anywhere in the feedback counts
	}
	e.prevTrend = e.trend
	// the threshold follows the trend, slowly up, faster down
	am := math.Abs(m)
	if e.threshAt == 0 {
		e.threshAt = now
	}
	if am > e.thresh+15 {
		e.threshAt = now
		return
	}
	k := bweKUp
	if am < e.thresh {
		k = bweKDown
	}
	dt := min(float64(now-e.threshAt)/1e6, 100)
	e.thresh = min(max(e.thresh+k*(am-e.thresh)*dt, 6), 600)
	e.threshAt = now
}

// updateRate runs the AIMD rate controller once per feedback.
func (e *bwe) updateRate(now int64) {
	if e.usageOfFbk == useOver && e.jitterOveruse(now) {
		e.usageOfFbk = useNormal
		e.jitterOver++
	}
	switch e.usageOfFbk {
	case useOver:
		e.state = rcDecrease
	case useUnder:
		e.state = rcHold
	default:
		if e.state == rcHold || e.state == rcDecrease {
			e.state = rcIncrease
			e.changedAt = now
		}
	}
	dt := float64(now-e.changedAt) / 1e9
	if e.changedAt == 0 || dt < 0 {
		dt = 0
	}
	switch e.state {
	case rcIncrease:
		sd := math.Sqrt(e.linkVar * e.linkAvg)
		if e.linkAvg > 0 && e.ackRate > e.linkAvg+3*sd {
			e.linkAvg, e.linkVar = 0, 0 // well above the cuts: the link changed
		}
		next := e.rate
		if e.linkAvg > 0 && e.ackRate > e.linkAvg-3*sd {
			// near the link's capacity: about a packet per response time
			// (100 ms plus a round trip, taken as 100 ms)
			next += max(1000, e.avgPktBits/0.2) * min(dt, 1)
		} else {
			next *= math.Pow(1.08, min(dt, 1))
		}
		if c := 1.5*e.ackRate + 10_000; e.ackRate > 0 && next > c && c > e.rate {
			// not far beyond what gets through, unless sending less
			// than the estimate already (see above)
			next = c
		}
		if e.ackFresh(e.decAt) {
			// never under what gets through without overuse: after a
			// collapse, a trial of a layer lifts the estimate at once
			next = max(next, e.ackRate)
		}
		e.rate = next
		e.changedAt = now
	case rcDecrease:
		if now-e.decAt >= bweDecreaseGapNs {
			cut := bweBeta * e.rate
			if e.ackRate > 0 {
				// to 0.85 of what got through, but not below half the
				// estimate at once: an acknowledged rate measured over a
				// pause of the video, or a stall, would collapse it
				cut = min(max(bweBeta*e.ackRate, e.rate/2), e.rate)
				e.noteCut(e.ackRate)
			}
			e.rate = cut
			e.decAt = now
		}
		e.state = rcHold
		e.changedAt = now
	case rcHold:
		e.changedAt = now
		if e.usageOfFbk == useUnder && e.ackFresh(e.decAt) {
			// a queue drains: what arrives is what the link carries, a
			// rate that got through since the cut. Held under it, the
			// estimate of a link that a burst (a probe, a keyframe, a
			// layer left) filled stays under the lowest layer for the
			// seconds the queue takes to drain, and the video pauses.
			e.rate = max(e.rate, e.ackRate)
		}
	}
	e.rate = min(max(e.rate, ccMinBitrate), ccMaxBitrate)
}

// jitterOveruse reports whether an overuse the detector signals is
// better taken for jitter: no loss, and the last window of packets the
// subscriber acknowledged (bweAckWindowUs at least, measured within the
// last second) arrived over no more than bweQueueSpread times the time they
// took to send. A queue at a bottleneck spreads its packets' arrivals
// over more time than their sending took, as it receives faster than it
// drains; a subscriber whose packets wait for a CPU now and then (a loaded
// host, the race detector, a virtual network's goroutines) sees its
// delays jump back and forth, which the trendline can read as a rising
// delay (libwebrtc has no such check: its arrival times come from the
// network, not from a scheduler).
func (e *bwe) jitterOveruse(now int64) bool {
	return e.avgLoss < bweLossLow && e.ackSpread > 0 && e.ackSpread < bweQueueSpread && now-e.ackAt < int64(time.Second)
}

// ackFresh reports whether the acknowledged rate was measured over
// packets sent after the cut at since (its window and a round trip later).
func (e *bwe) ackFresh(since int64) bool {
	return e.ackRate > 0 && e.ackAt-since > bweFreshNs
}

// noteCut keeps the average and variance of the acknowledged rate at the
// cuts, the link's capacity as the controller sees it.
func (e *bwe) noteCut(ack float64) {
	if e.linkAvg == 0 {
		e.linkAvg = ack
		return
	}
	const alpha = 0.05
	d := ack - e.linkAvg
	e.linkAvg += alpha * d
	norm := max(e.linkAvg, 1)
	e.linkVar = (1-alpha)*e.linkVar + alpha*d*d/norm
	e.linkVar = min(max(e.linkVar, 400), 2500)
}

// updateLoss runs the loss based estimator on one feedback's loss ratio.
func (e *bwe) updateLoss(loss float64, now int64) {
	if e.lossAt == 0 {
		e.avgLoss = loss
	} else {
		w := math.Exp(-float64(now-e.lossAt) / 200e6)
		e.avgLoss = loss + w*(e.avgLoss-loss)
	}
	e.lossAt = now
	hi, lo := max(e.avgLoss, loss), min(e.avgLoss, loss)
	switch {
	case hi < bweLossLow && now-e.lossIncAt > bweLossGapNs:
		// 5% per 200 ms since the last growth (a ratio may take a second
		// or more to measure at a low packet rate)
		e.lossRate *= math.Pow(1.05, float64(min(now-e.lossIncAt, int64(time.Second)))/bweLossGapNs)
		if e.ackFresh(e.lossDecAt) {
			e.lossRate = max(e.lossRate, e.ackRate)
		}
		e.lossIncAt = now
	case lo > bweLossHigh && now-e.lossDecAt > bweLossGapNs:
		e.lossRate *= 1 - 0.5*lo
		e.lossDecAt = now
	}
	e.lossRate = min(max(e.lossRate, ccMinBitrate), ccMaxBitrate)
}

// target is the estimate: the lower of the delay and loss based ones.
func (e *bwe) target(int64) int64 {
	e.lossRate = min(e.lossRate, max(e.rate, ccMinBitrate))
	return int64(min(e.rate, e.lossRate))
}
