package sfu

// Downlink congestion control. Every connection stamps a transport-wide
// sequence number on each packet it sends and keeps what it sent in a
// ring (twcc.go); the subscriber's transport-cc feedback feeds a send-side
// estimator (bwe.go: GCC's delay based trendline filter and overuse
// detector, AIMD, and a loss based bound). A REMB from the client caps the
// estimate, and is the estimate of a client without transport-cc. Video
// keyframe bursts are paced (pacer.go); otherwise packets go out as they
// come, and the layer choice below is what keeps the sending rate within
// the estimate. Every ccTick the connection shares the estimate among its
// tracks: audio first (ccAudioReserve each), the rest split evenly among
// its simulcast tracks, each of which gets the highest layer whose measured
// bitrate fits, with hysteresis (fitLayer): down at once when far off,
// after a while when a little; up one layer at a time after a hold, longer
// after tries that failed. When even the lowest layer is far off, the video
// of that track pauses (audio keeps flowing) until the lowest fits again,
// or until a trial of it. The estimate keeps growing while the link carries
// what is sent, and padding probes (probe.go) test a higher rate when the
// tracks want more, so a lowered subscriber climbs back when its link
// recovers.

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"
)

// Congestion control settings.
const (
	// ccInitialBitrate is a new connection's estimate before feedback.
	ccInitialBitrate = 1_500_000
	ccMinBitrate     = 30_000
	ccMaxBitrate     = 20_000_000
	// ccTick is how often a connection shares its estimate among its tracks.
	ccTick = 200 * time.Millisecond
	// ccUpHold is how long a layer up must fit, with a quarter to spare,
	// before the switch up (or the resume of a paused video).
	ccUpHold = 2 * time.Second
	// ccAudioReserve is what each audio track is given first (Opus as
	// browsers send it, headers included).
	ccAudioReserve = 40_000
	// ccProbeAfter and ccProbeMax bound the wait before a paused video
	// tries its lowest layer again, and the up hold after failed tries.
	ccProbeAfter = 4 * time.Second
	ccProbeMax   = 30 * time.Second
	// ccDownHold is how long a share a little under the layer's bitrate
	// lasts before the switch down.
	ccDownHold = 3 * time.Second
	// ccUpKeep is how long a step up must hold for the next one to come
	// without backoff.
	ccUpKeep = 10 * time.Second
	// ccPauseHold is how long the share must stay under the lowest step
	// of a track (its lowest layer's lowest temporal layer) before its
	// video pauses.
	ccPauseHold = 3 * time.Second
)

// ccRegistry hands each new peer connection's transport-wide sender
// (twcc.go), which holds its estimator, to its Connection: the interceptor
// factory registers it, by peer connection id, while the peer connection is
// made.
type ccRegistry struct {
	m     sync.Map // peer connection id → *twccSender
	clock ccClock  // runs every connection's steps (ccclock.go)
}

// configure offers REMB feedback; transport-cc is offered with its
// feedback by configureInterceptors.
func (r *ccRegistry) configure(m *webrtc.MediaEngine) {
	m.RegisterFeedback(webrtc.RTCPFeedback{Type: "goog-remb"}, webrtc.RTPCodecTypeVideo)
}

// take returns and forgets the sender of the peer connection id.
func (r *ccRegistry) take(id string) *twccSender {
	if r == nil {
		return nil
	}
	v, ok := r.m.LoadAndDelete(id)
	if !ok {
		return nil
	}
	t, _ := v.(*twccSender)
	return t
}

// downlink is a connection's congestion control. The estimate it uses is
// kept in Connection.bwe.
type downlink struct {
	tw   *twccSender
	remb atomic.Int64 // the client's last REMB, bps; 0: none

	// the congestion clock's (ccclock.go), under stepMu: padding probes
	// (probe.go), whether one runs, and what the media sends, from the
	// last sharing of the estimate; stopped once the connection closed
	stepMu  sync.Mutex
	stopped bool
	probing bool
	probe   prober
	media   int64
	probes  atomic.Uint64 // padding packets sent
}

// startCongestion starts the connection's congestion control, if its peer
// connection has an estimator: its steps run on the SFU's congestion clock
// (ccclock.go) until the connection closes. Called by Join before the
// connection is visible.
func (c *Connection) startCongestion() {
	tw := c.sfu.cc.take(c.pc.ID())
	if tw == nil {
		return
	}
	c.dl = &downlink{tw: tw}
	c.pacer = newPacer()
	c.pacer.drops = &c.sfu.drops
	c.wg.Add(1)
	go c.runPacer(c.pacer)
	c.sfu.cc.clock.add(c)
}

// sendProbe sends the padding a running probe owes.
func (c *Connection) sendProbe(now int64) {
	dl := c.dl
	n := dl.probe.padBytes(dl.media, now)
	if n <= 0 {
		return
	}
	d, b := c.probeTarget()
	if d == nil {
		dl.probe.goal = 0
		return
	}
	before := dl.probe.packets
	dl.probe.sendPadding(d, b, n)
	dl.probes.Add(dl.probe.packets - before)
}

// budget is the connection's estimate: the send-side one, capped by the
// client's REMB; the REMB alone when no transport-cc feedback came (a client
// without transport-cc).
func (dl *downlink) budget(now int64) int64 {
	est, fed := dl.tw.estimate(now)
	r := dl.remb.Load()
	switch {
	case r > 0 && !fed:
		return r
	case r > 0 && r < est:
		return r
	}
	return est
}

// EstimatedBitrate returns the connection's downlink bandwidth estimate in
// bits per second (send-side, capped by the client's REMB), or 0 when congestion
// control is off.
func (c *Connection) EstimatedBitrate() int { return int(c.bwe.Load()) }

// shareEstimate gives each simulcast track of the connection the highest
// layer that fits its share of the estimate, and starts or ends a padding
// probe (probe.go): it returns whether one runs.
func (c *Connection) shareEstimate(now int64) bool {
	budget := c.dl.budget(now)
	c.bwe.Store(uint64(budget))
	c.pacer.setRate(budget)
	var sims []*downTrack
	audio := 0
	c.mu.Lock()
	for src, d := range c.downs {
		switch {
		case d.sim != nil:
			if d.sim.want.Load() >= 0 {
				sims = append(sims, d)
			}
		case src.info.Kind == webrtc.RTPCodecTypeAudio:
			audio++
		}
	}
	c.mu.Unlock()
	if len(sims) == 0 {
		c.dl.probe.goal = 0
		return false
	}
	share := (budget - int64(audio)*ccAudioReserve) / int64(len(sims))
	for _, d := range sims {
		d.sim.fitLayer(d.src.sim.rates(), d.src.sim.temporalRates(), share, now)
	}
	need, media := probeNeed(sims, audio)
	c.dl.media = media
	return c.dl.probe.probeStep(need, budget, now)
}

// fitLayer sets the subscriber's caps (bwCap, tCap) from its share of
// the estimate and the track's ladder (ladderOf: the lowest layer's
// temporal layers, then the layers), with hysteresis both ways:
//
//   - Down: at once when the share is under three quarters of the step's
//     bitrate; when it is under the bitrate but not that far, only once it
//     stayed under for ccDownHold (the estimate drops to 0.85 of what it
//     receives at each overuse it sees, a queue that built up for a moment
//     included, and is back within two or three seconds when the link has
//     room). A step down within the lowest layer's temporal layers is
//     only a matter of forwarding fewer frames: the subscriber keeps
//     decoding, at a lower frame rate.
//   - Up: one step at a time, once the next fits for the up hold (a layer
//     with a quarter to spare, a temporal layer as it is: upMargin):
//     ccUpHold, twice as long after each try that went down again within
//     ccUpKeep, up to ccProbeMax.
//   - Pause: only when the share stayed under the lowest step (the lowest
//     layer's lowest temporal layer) for ccPauseHold: the estimate of a
//     link that carries that step dips under it after an overuse or a
//     burst of loss, and is back within a second or two. Nothing is sent
//     then to measure the link by, so the estimate stands still unless
//     audio flows or a probe runs: the lowest step is tried again after
//     ccProbeAfter, then after twice as long each time it pauses again (up
//     to ccProbeMax), and kept for ccUpHold at least.
func (st *simSub) fitLayer(rates [maxLayers]int64, trates [maxTemporal]int64, share, now int64) {
	ld := ladderOf(rates, trates)
	if ld.n == 0 {
		return // nothing measured: no decision
	}
	fits, far := ld.fit(share)
	cur := ld.index(int8(st.bwCap.Load()), int8(st.tCap.Load()))
	under := ld.r[0].rate > share
	switch {
	case !under:
		st.pauseSince = 0
	case st.pauseSince == 0:
		st.pauseSince = now
	}
	next := cur
	switch {
	case cur >= 0 && now < st.holdUntil:
		// a trial of the lowest step: the estimate needs time to follow
	case cur >= 0 && under && now-st.pauseSince >= int64(ccPauseHold):
		next = -1
	case cur < 0:
		st.downSince = 0
		if ld.upMargin(0) > share {
			st.upSince = 0
		} else if st.upSince == 0 {
			st.upSince = now
		}
		switch {
		case st.upSince != 0 && now-st.upSince >= max(st.upHold, int64(ccUpHold)):
			next = 0
		case now-st.pausedAt >= st.probeAfter:
			next, st.holdUntil = 0, now+int64(ccUpHold)
		}
	case far < cur:
		next = far
	case fits < cur:
		if st.downSince == 0 {
			st.downSince = now
		}
		if now-st.downSince >= int64(ccDownHold) {
			next = fits
		}
	case fits > cur:
		st.downSince = 0
		if ld.upMargin(cur+1) > share {
			st.upSince = 0
			break
		}
		if st.upSince == 0 {
			st.upSince = now
		}
		if now-st.upSince >= max(st.upHold, int64(ccUpHold)) {
			next = cur + 1
		}
	default:
		st.downSince, st.upSince = 0, 0
		if st.upAt != 0 && now-st.upAt >= int64(ccUpKeep) {
			st.upHold, st.upAt = 0, 0 // the last step up held: no backoff
		}
	}
	switch {
	case next < cur:
		st.downSince, st.upSince = 0, 0
		if st.upAt != 0 && now-st.upAt < int64(ccUpKeep) {
			st.upHold = min(2*max(st.upHold, int64(ccUpHold)), int64(ccProbeMax))
		}
		st.upAt = 0
		if next < 0 {
			st.pausedAt = now
			st.probeAfter = min(max(2*st.probeAfter, int64(ccProbeAfter)), int64(ccProbeMax))
		}
	case next > cur:
		st.downSince, st.upSince = 0, 0
		st.upAt = now
		if cur >= 0 {
			st.probeAfter = 0 // the video flows: a later pause probes early again
		}
	}
	if next == cur {
		return
	}
	l, t := int8(-1), int8(tidAll)
	if next >= 0 {
		l, t = ld.r[next].layer, ld.r[next].tid
	}
	st.tCap.Store(int32(t))
	if int8(st.bwCap.Swap(int32(l))) != l {
		st.dirty.Store(true)
	}
}

// A track's ladder: the steps of bitrate a subscriber can be given, lowest
// first. Under the lowest layer that arrives, its temporal layers (VP8, VP9:
// TID 0 alone, then 0 and 1, ...; LiveKit's stream allocator and
// mediasoup's SimulcastConsumer step through them the same way), then each
// layer whole.
type rung struct {
	layer, tid int8 // tid tidAll: the whole layer
	rate       int64
}

type ladder struct {
	r [maxTemporal - 1 + maxLayers]rung
	n int
}

// maxTemporal is the number of temporal layers read (VP8's TID is 2 bits;
// VP9's is 3, of which Chromium uses TIDs 0 to 2); tidAll stands for all
// of them.
const (
	maxTemporal = 4
	tidAll      = maxTemporal - 1
)

// ladderOf returns the ladder of a track whose layers have the bitrates
// rates and whose lowest layer's temporal layers up to each TID have
// trates (0: not a step). Layers above the lowest that do not arrive
// (rate 0) are steps that fit any share.
func ladderOf(rates [maxLayers]int64, trates [maxTemporal]int64) ladder {
	var ld ladder
	lowest := int8(-1)
	for l := int8(0); l < maxLayers; l++ {
		if rates[l] > 0 {
			lowest = l
			break
		}
	}
	if lowest < 0 {
		return ld
	}
	for t := int8(0); t < tidAll; t++ {
		if r := trates[t]; r > 0 && r < rates[lowest] {
			ld.r[ld.n] = rung{lowest, t, r}
			ld.n++
		}
	}
	for l := lowest; l < maxLayers; l++ {
		ld.r[ld.n] = rung{l, tidAll, rates[l]}
		ld.n++
	}
	return ld
}

// index returns the step of the caps layer l and temporal layer t (-1
// for a pause). A cap under the lowest layer arriving is its whole layer.
func (ld *ladder) index(l, t int8) int {
	if l < 0 {
		return -1
	}
	for i := 0; i < ld.n; i++ {
		r := ld.r[i]
		if r.layer > l && r.tid == tidAll || r.layer == l && r.tid >= t {
			return i
		}
	}
	return ld.n - 1
}

// upMargin returns the share step i needs before a step up to it: its
// bitrate and a quarter more for a layer, or the lowest step after a
// pause (a switch costs a keyframe, and the way back down waits for
// another), the bitrate alone for a step within the lowest layer's
// temporal layers (forwarded from the next sync frame, dropped again from
// the next frame).
func (ld *ladder) upMargin(i int) int64 {
	r := ld.r[i]
	if i > 0 && ld.r[i-1].layer == r.layer {
		return r.rate // a temporal step: from a step of the same layer
	}
	return r.rate * 5 / 4
}

// fit returns the highest step that fits the share (every step up to it
// within it; at least the lowest) and the highest that is not far off
// (every step up to it within four thirds of the share; at least the
// lowest: only a sustained shortfall pauses, see fitLayer).
func (ld *ladder) fit(share int64) (fits, far int) {
	fits, far = ld.n-1, ld.n-1
	for i := ld.n - 1; i >= 0; i-- {
		if ld.r[i].rate > share {
			fits = i - 1
		}
		if ld.r[i].rate*3 > share*4 {
			far = i - 1
		}
	}
	return max(fits, 0), max(far, 0)
}

// noteREMB records the bitrate of a REMB in a compound RTCP packet.
func (c *Connection) noteREMB(b []byte) {
	if c.dl == nil {
		return
	}
	if r, ok := rembBitrate(b); ok {
		c.dl.remb.Store(int64(r))
	}
}

// rembBitrate returns the bitrate of the first REMB (RTCP PSFB, FMT 15,
// "REMB") in a compound RTCP packet. It allocates nothing.
func rembBitrate(b []byte) (uint64, bool) {
	for len(b) >= 4 {
		if b[0]>>6 != 2 {
			return 0, false
		}
		size := (int(binary.BigEndian.Uint16(b[2:4])) + 1) * 4
		if size > len(b) {
			return 0, false
		}
		if b[1] == 206 && b[0]&0x1f == 15 && size >= 20 && string(b[12:16]) == "REMB" {
			exp := b[17] >> 2
			mantissa := uint64(b[17]&0x03)<<16 | uint64(b[18])<<8 | uint64(b[19])
			if exp > 46 {
				return 0, false
			}
			return mantissa << exp, true
		}
		b = b[size:]
	}
	return 0, false
}
