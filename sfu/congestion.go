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
)

// ccRegistry hands each new peer connection's transport-wide sender
// (twcc.go), which holds its estimator, to its Connection: the interceptor
// factory registers it, by peer connection id, while the peer connection is
// made.
type ccRegistry struct {
	m sync.Map // peer connection id → *twccSender
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

	// the congestion goroutine's: padding probes (probe.go) and what the
	// media sends, from the last sharing of the estimate
	probe  prober
	media  int64
	probes atomic.Uint64 // padding packets sent
}

// startCongestion starts the connection's congestion control, if its peer
// connection has an estimator. Called by Join before the connection is
// visible.
func (c *Connection) startCongestion() {
	tw := c.sfu.cc.take(c.pc.ID())
	if tw == nil {
		return
	}
	c.dl = &downlink{tw: tw}
	c.pacer = newPacer()
	c.pacer.drops = &c.sfu.drops
	c.wg.Add(2)
	go c.runCongestion()
	go c.runPacer(c.pacer)
}

func (c *Connection) runCongestion() {
	defer c.wg.Done()
	t := time.NewTicker(ccTick)
	defer t.Stop()
	pt := time.NewTicker(probeSlice)
	pt.Stop()
	defer pt.Stop()
	probing := false
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
			p := c.shareEstimate(mono())
			switch {
			case p && !probing:
				pt.Reset(probeSlice)
			case !p && probing:
				pt.Stop()
			}
			probing = p
		case <-pt.C:
			c.sendProbe(mono())
		}
	}
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
		d.sim.fitLayer(d.src.sim.rates(), share, now)
	}
	need, media := probeNeed(sims, audio)
	c.dl.media = media
	return c.dl.probe.probeStep(need, budget, now)
}

// fitLayer sets the subscriber's layer cap from its share of the estimate
// and the layers' bitrates (layerFit), with hysteresis both ways:
//
//   - Down: at once when the share is under three quarters of the layer's
//     bitrate; when it is under the bitrate but not that far, only once it
//     stayed under for ccDownHold (the estimate drops to 0.85 of what it
//     receives at each overuse it sees, a queue that built up for a moment
//     included, and is back within two or three seconds when the link has
//     room).
//   - Up: one layer at a time, once the next fits with a quarter to spare
//     for the up hold: ccUpHold, twice as long after each try that went
//     down again within ccUpKeep, up to ccProbeMax.
//   - Pause: when the share is under half the lowest layer arriving (so
//     that the estimator's drop after an overuse does not pause it). Nothing is sent
//     then to measure the link by, so the
//     estimate stands still unless audio flows: the lowest layer is tried
//     again after ccProbeAfter, then after twice as long each time it
//     pauses again (up to ccProbeMax), and kept for ccUpHold at least.
func (st *simSub) fitLayer(rates [maxLayers]int64, share, now int64) {
	lowest, fits, far := layerFit(rates, share)
	if lowest < 0 {
		return // nothing measured: no decision
	}
	cur := int8(st.bwCap.Load())
	next := cur
	switch {
	case cur >= 0 && now < st.holdUntil:
		// a trial of the lowest layer: the estimate needs time to follow
	case far < cur:
		next = far
	case fits < cur:
		if st.downSince == 0 {
			st.downSince = now
		}
		if now-st.downSince >= int64(ccDownHold) {
			next = fits
		}
	case fits > cur && cur >= 0 || cur < 0 && far >= 0:
		st.downSince = 0
		up := max(cur+1, lowest)
		if rates[up]*5/4 > share {
			st.upSince = 0
			break
		}
		if st.upSince == 0 {
			st.upSince = now
		}
		if now-st.upSince >= max(st.upHold, int64(ccUpHold)) {
			next = up
		}
	default:
		st.downSince, st.upSince = 0, 0
		if cur < 0 && now-st.pausedAt >= st.probeAfter {
			next, st.holdUntil = lowest, now+int64(ccUpHold)
		}
		if cur >= 0 && st.upAt != 0 && now-st.upAt >= int64(ccUpKeep) {
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
	if next != cur {
		st.bwCap.Store(int32(next))
		st.dirty.Store(true)
	}
}

// layerFit returns, for a share of the estimate and the layers' bitrates,
// the lowest layer measured (-1: none), the highest layer that fits (all
// measured layers up to it within the share; a layer not measured, as not
// arriving, is taken to fit), and the highest that is not far off (within
// four thirds of the share; for the lowest, within twice the share); -1
// when not even the lowest measured one is.
func layerFit(rates [maxLayers]int64, share int64) (lowest, fits, far int8) {
	lowest = -1
	for l := int8(0); l < maxLayers; l++ {
		if rates[l] > 0 {
			lowest = l
			break
		}
	}
	if lowest < 0 {
		return -1, -1, -1
	}
	fits, far = maxLayers-1, maxLayers-1
	for l := int8(maxLayers - 1); l >= lowest; l-- {
		if rates[l] > share {
			fits = l - 1
		}
		if rates[l]*3 > share*4 {
			far = l - 1
		}
	}
	if fits < lowest {
		fits = lowest // only a pause (far) stops the lowest layer
	}
	if far < lowest {
		far = lowest
		if rates[lowest] > 2*share {
			far = -1
		}
	}
	return lowest, fits, far
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
