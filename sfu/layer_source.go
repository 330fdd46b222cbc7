package sfu

// The source side of simulcast: a track's layers as they arrive, which are
// active (frame rate over a window), which the subscribers want (the
// demand the relay acts on), and the write path that decides each
// subscriber's layer and fans a layer's packet out.

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
)

// Timing of the layer selection.
const (
	// layerIdle is how long a layer may send no media and still be active.
	layerIdle = 1500 * time.Millisecond
	// minLayerFPS is the frame rate, over a rateWindow, below which a
	// layer is not active.
	minLayerFPS = 2
	rateWindow  = time.Second
	// selectEvery is how often a track's write path re-decides every
	// subscriber's layer (and asks again for a keyframe a switch waits for).
	selectEvery = 250 * time.Millisecond
)

// monoEpoch makes mono's clock monotonic.
var monoEpoch = time.Now()

// mono returns monotonic nanoseconds.
func mono() int64 { return int64(time.Since(monoEpoch)) }

// simSource is the simulcast part of a source.
type simSource struct {
	codec  codecKind
	clock  uint32 // RTP clock rate
	layers [maxLayers]simLayer

	// demand is the layers the subscribers want or move between, a bit per
	// layer; demandFn hears of its changes (the relay, for a remote track).
	demandMu sync.Mutex
	demand   uint8
	demandFn atomic.Pointer[func(rid SimulcastRid, wanted bool)]

	// under source.mu
	selectedAt int64
	winStart   int64            // of the frame count window
	winFrames  [maxLayers]int32 // frames ended in the window, per layer
	prevFrames [maxLayers]int32 // in the window before
	winBytes   [maxLayers]int64 // bytes of the layers in the window
	// bytes of each VP8 or VP9 temporal layer (TID) of the layers in the window
	winTBytes [maxLayers][maxTemporal]int64
	got       [maxLayers]snWindow
	// tidOf is the TID of the last frame of each layer that showed one,
	// for an AV1 packet that holds only the rest of an OBU (none of its
	// own) of that frame.
	tidOf [maxLayers]struct {
		ts  uint32
		tid uint8
		ok  bool
	}
	// rate is each layer's bitrate over the last full window, bps; trate
	// each of its temporal layers' (VP8 and VP9; 0 for other codecs).
	rate  [maxLayers]atomic.Int64
	trate [maxLayers][maxTemporal]atomic.Int64
}

// simLayer is one layer of a simulcast source.
type simLayer struct {
	present  atomic.Bool
	lastSeen atomic.Int64 // mono() of its last media packet
	kf       kfLimiter
	kr       atomic.Pointer[KeyframeRequester]
	sinks    sinkSet
}

func newSimSource(info TrackInfo) *simSource {
	return &simSource{codec: codecKindOf(info.Codec.MimeType), clock: info.Codec.ClockRate}
}

// addLayer makes layer l of the source present, its keyframe requests
// going to kr (nil: none).
func (ss *simSource) addLayer(l int8, kr KeyframeRequester) {
	if kr != nil {
		ss.layers[l].kr.Store(&kr)
	}
	ss.layers[l].present.Store(true)
}

// activeMask returns the layers active at now, one bit per layer: media
// seen within layerIdle, and minLayerFPS frames in the last full rateWindow
// or the one going on; and the layers whose media was seen within
// layerIdle, whatever their rate. Called with source.mu held.
func (ss *simSource) activeMask(now int64) (active, seen uint8) {
	if d := now - ss.winStart; d >= int64(rateWindow) {
		ss.prevFrames = ss.winFrames
		if d >= 2*int64(rateWindow) {
			ss.prevFrames = [maxLayers]int32{}
			ss.winBytes = [maxLayers]int64{}
			ss.winTBytes = [maxLayers][maxTemporal]int64{}
		}
		for l := range ss.rate {
			ss.rate[l].Store(smoothRate(ss.rate[l].Load(), ss.winBytes[l]*8*int64(time.Second)/d))
			for t := range ss.trate[l] {
				r := &ss.trate[l][t]
				r.Store(smoothRate(r.Load(), ss.winTBytes[l][t]*8*int64(time.Second)/d))
			}
		}
		ss.winFrames = [maxLayers]int32{}
		ss.winBytes = [maxLayers]int64{}
		ss.winTBytes = [maxLayers][maxTemporal]int64{}
		ss.winStart = now
	}
	min := int32(minLayerFPS * rateWindow / time.Second)
	for l := range ss.layers {
		ly := &ss.layers[l]
		if !ly.present.Load() || now-ly.lastSeen.Load() >= int64(layerIdle) {
			continue
		}
		seen |= 1 << l
		if ss.prevFrames[l] >= min || ss.winFrames[l] >= min {
			active |= 1 << l
		}
	}
	return active, seen
}

// requestLayer asks layer l's publisher for a keyframe, rate-limited.
func (ss *simSource) requestLayer(s *source, l int8) {
	if l < 0 || int(l) >= maxLayers {
		return
	}
	ly := &ss.layers[l]
	kr := ly.kr.Load()
	if kr == nil {
		return
	}
	ly.kf.request(s, s.ch.sfu.cfg.KeyframeInterval, *kr)
}

// requestForwarded asks for a keyframe of every layer a subscriber
// receives or waits for (the relay's requests for the whole track).
func (ss *simSource) requestForwarded(s *source) {
	var m uint8
	for _, d := range *s.subs.Load() {
		if l := d.sim.cur.Load(); l >= 0 {
			m |= 1 << l
		}
		if l := d.sim.target.Load(); l >= 0 {
			m |= 1 << l
		}
	}
	for l := int8(0); l < maxLayers; l++ {
		if m&(1<<l) != 0 {
			ss.requestLayer(s, l)
		}
	}
}

// demandMask returns the layers some subscriber of s wants, receives or
// is to switch to, and every layer between those: a bit per layer.
func (s *source) demandMask() uint8 {
	var m uint8
	for _, d := range *s.subs.Load() {
		lo, hi := int8(maxLayers), int8(-1)
		for _, v := range [3]int32{int32(d.sim.wantLayer()), d.sim.cur.Load(), d.sim.target.Load()} {
			if v >= 0 {
				lo, hi = min(lo, int8(v)), max(hi, int8(v))
			}
		}
		for l := lo; l <= hi; l++ {
			m |= 1 << l
		}
	}
	return m
}

// updateDemand tells the demand function of the layers whose demand
// changed; with report, also of layer report's, changed or not.
func (ss *simSource) updateDemand(s *source, report int8) {
	fn := ss.demandFn.Load()
	if fn == nil {
		return
	}
	ss.demandMu.Lock()
	defer ss.demandMu.Unlock()
	m := s.demandMask()
	changed := m ^ ss.demand
	ss.demand = m
	if report >= 0 {
		changed |= 1 << report
	}
	for l := int8(0); l < maxLayers; l++ {
		if changed&(1<<l) != 0 {
			(*fn)(ridOf(l), m&(1<<l) != 0)
		}
	}
}

// smoothRate returns a layer's bitrate after a window that measured r,
// prev the one before (0: none). A keyframe (asked at every switch, trial
// and PLI) doubles or triples the lowest layer's bitrate over the second it
// arrives in; taken as it is, it would make the layer look far beyond a
// share it fits in on average, and pause it (congestion.go). So the rate
// moves an eighth of the way to a higher measure (a keyframe adds a fifth
// at most; a lasting rise is followed in about eight seconds), except that a layer starting or stopping
// (prev or r 0) takes r at once, and a measure under the average pulls it
// down by half (a publisher lowering its bitrate is followed quicker than
// a burst is believed).
func smoothRate(prev, r int64) int64 {
	switch {
	case prev == 0 || r == 0:
		return r
	case r < prev:
		return prev - (prev-r)/2
	}
	return prev + (r-prev)/8
}

// rates returns each layer's bitrate, smoothed over the windows
// (smoothRate), in bits per second (0: none arrived).
func (ss *simSource) rates() [maxLayers]int64 {
	var r [maxLayers]int64
	for l := range r {
		r[l] = ss.rate[l].Load()
	}
	return r
}

// temporalRates returns, for the lowest layer that arrives, the bitrate of
// its temporal layers up to each TID (TID 0 alone, 0 and 1, ...), for the
// TIDs under its highest one (which is the whole layer, rates()); all 0
// when it has a single temporal layer, or a codec whose temporal layers
// are not dropped (see downTrack.dropTemporal).
func (ss *simSource) temporalRates() [maxTemporal]int64 {
	var cum [maxTemporal]int64
	for l := range ss.rate {
		if ss.rate[l].Load() == 0 {
			continue
		}
		top := -1
		for t := range ss.trate[l] {
			if ss.trate[l][t].Load() > 0 {
				top = t
			}
		}
		var sum int64
		for t := 0; t < top; t++ {
			sum += ss.trate[l][t].Load()
			cum[t] = sum
		}
		break
	}
	return cum
}

func (ss *simSource) stop() {
	for l := range ss.layers {
		ss.layers[l].kf.stop()
		ss.layers[l].sinks.clear()
	}
}

// pickLayer returns the layer to forward to a subscriber that wants layer
// want (-1: none), given the active layers: the highest active at or below
// want, else the lowest active above it. With no layer active it returns
// keep (nothing to decide on).
func pickLayer(want int8, active uint8, keep int8) int8 {
	if want < 0 {
		return -1
	}
	if active == 0 {
		return keep
	}
	for l := want; l >= 0; l-- {
		if active&(1<<l) != 0 {
			return l
		}
	}
	for l := want + 1; l < maxLayers; l++ {
		if active&(1<<l) != 0 {
			return l
		}
	}
	return keep
}

// writeLayer fans out one packet of layer l of a simulcast source. It
// allocates nothing once the header scratch has grown, but for the first
// picture id rewrite of a subscriber.
func (s *source) writeLayer(l int8, pkt []byte) error {
	if s.closed.Load() {
		return errTrackClosed
	}
	if l < 0 || int(l) >= maxLayers {
		return fmt.Errorf("%w: no simulcast layer %d", ErrInvalidRTP, l)
	}
	ss := s.sim
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.hdr.Unmarshal(pkt)
	if err != nil {
		return ErrInvalidRTP
	}
	if ss.got[l].seen(s.hdr.SequenceNumber) {
		// A packet had already: the publisher's retransmission of one
		// that came after all, or a browser's RTX "payload padding" (it
		// pads a layer up to its bitrate, or probes, by resending recent
		// packets). Forwarded again under the same number it would be
		// dropped by the subscriber's SRTP replay check after its
		// transport-wide number was stamped: loss, to the estimator.
		return nil
	}
	if s.hdr.Padding {
		s.hdr.PaddingSize = 0
	}
	s.hdr.Extension = false
	s.hdr.Extensions = s.hdr.Extensions[:0]
	now := mono()
	payload := pkt[n:]
	p := simPacket{layer: l, sn: s.hdr.SequenceNumber, ts: s.hdr.Timestamp, payload: payload, now: now, marker: s.hdr.Marker}
	ss.layers[l].present.Store(true)
	if ss.codec == codecAV1 {
		ids, _ := p.picIDs(ss.codec)
		t := &ss.tidOf[l]
		switch {
		case ids.hasTID:
			t.ts, t.tid, t.ok = p.ts, ids.tid, true
		case t.ok && t.ts == p.ts:
			ids.hasTID, ids.tid = true, t.tid
		}
	}
	if !paddingOnly(&s.hdr, payload) {
		ss.layers[l].lastSeen.Store(now)
		if s.hdr.Marker {
			ss.winFrames[l]++
		}
		ss.winBytes[l] += int64(len(pkt))
		if tid, _, ok := p.temporal(ss.codec); ok {
			ss.winTBytes[l][tid] += int64(len(pkt))
		}
	}
	subs := *s.subs.Load()
	all := now-ss.selectedAt >= int64(selectEvery)
	var active, seen uint8
	masks := false
	if all {
		ss.selectedAt = now
	}
	if b := s.bufs[l]; b != nil {
		b.add(p.sn, pkt)
	}
	s.rstats[l].update(&s.hdr, len(p.payload), now, s.info.Codec.ClockRate)
	burst := s.ch.sfu.sendBurst()
	burst.Hold()
	defer burst.Release()
	for _, d := range subs {
		st := d.sim
		if all || st.dirty.Load() {
			if !masks {
				active, seen = ss.activeMask(now)
				masks = true
			}
			s.selectLocked(d, active, seen, all)
		}
		if st.cur.Load() != int32(l) && st.target.Load() != int32(l) {
			continue
		}
		d.writeLayer(&s.hdr, &p, ss)
	}
	ss.layers[l].sinks.call(pkt)
	return nil
}

// paddingOnly reports whether a packet carries padding only (its payload,
// padding included, is all padding).
func paddingOnly(h *rtp.Header, payload []byte) bool {
	return len(payload) == 0 || h.Padding && int(payload[len(payload)-1]) >= len(payload)
}

// selectLocked decides the layer of subscriber d: its target, and for a
// target other than the layer forwarded, a keyframe request on it; none
// stops the video at once. A subscriber that receives nothing yet takes
// any layer seen (a new layer has no rate yet); one that receives a layer
// moves only to active ones. With again, a keyframe a switch waits for is
// asked for again (rate-limited).
func (s *source) selectLocked(d *downTrack, active, seen uint8, again bool) {
	st := d.sim
	trigger := TriggerSender
	if st.dirty.Swap(false) {
		trigger = TriggerReceiver
	}
	cur, old := int8(st.cur.Load()), int8(st.target.Load())
	if cur < 0 {
		active = seen
	}
	t := pickLayer(st.wantLayer(), active, old)
	if t != old {
		st.target.Store(int32(t))
		st.reason = trigger
	}
	switch {
	case t < 0 && cur >= 0:
		st.cur.Store(-1) // stopped; a later start waits for a keyframe
		d.switched(cur, -1, st.reason)
	case t >= 0 && t != cur && (t != old || again):
		s.sim.requestLayer(s, t)
	}
	if t != old || t < 0 && cur >= 0 {
		s.sim.updateDemand(s, -1)
	}
}

// snWindow remembers which of a stream's last 128 sequence numbers
// arrived.
type snWindow struct {
	top  uint16    // the highest sequence number seen
	bits [2]uint64 // bit i: top-i arrived
	ok   bool
}

// seen notes sequence number sn and reports whether it had arrived
// already. One older than the window is taken as new.
func (w *snWindow) seen(sn uint16) bool {
	if !w.ok {
		w.ok, w.top, w.bits = true, sn, [2]uint64{1, 0}
		return false
	}
	d := int(int16(sn - w.top))
	switch {
	case d > 0:
		switch {
		case d >= 128:
			w.bits = [2]uint64{}
		case d >= 64:
			w.bits = [2]uint64{0, w.bits[0] << (d - 64)}
		default:
			w.bits = [2]uint64{w.bits[0] << d, w.bits[1]<<d | w.bits[0]>>(64-d)}
		}
		w.top = sn
		w.bits[0] |= 1
		return false
	case d <= -128:
		return false
	}
	i := -d
	m := uint64(1) << (i % 64)
	if w.bits[i/64]&m != 0 {
		return true
	}
	w.bits[i/64] |= m
	return false
}
