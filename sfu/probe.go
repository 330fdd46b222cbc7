package sfu

// Probing with padding. A subscriber whose video is paused sends nothing
// for its estimate to grow on, and one whose next layer up does not fit
// grows it only as fast as the estimator's increase. Production SFUs probe:
// LiveKit's stream allocator sends a "probe cluster" of padding at a goal
// above the estimate before it lets a track step up, and stops it when the
// estimator sees congestion; mediasoup's probation stream sends padding
// (RTX) to test a higher rate. Here, when a connection's simulcast tracks
// want more than the estimate allows (a paused video's lowest layer, or the
// next layer up, with the quarter to spare that fitLayer asks for), the
// congestion clock (ccclock.go) sends padding-only packets on a video track's RTX
// stream for probeDur (half a second), topping what the media sends up to
// a goal of probeGain (1.5) times the estimate (at most what the step
// needs), in 10 ms slices: on a link that has no room, half a second of
// half again the estimate fills a queue of a few tens of KB for a moment
// without overflowing it (twice the estimate for a second made the
// limited subscriber of TestCongestionSettlesAndRecovers lose its video
// for seconds). The subscriber's transport-cc feedback on them feeds the
// estimator like media: when the link carries the goal, the acknowledged
// rate lifts the estimate (bwe.go) and the layer steps up after its hold;
// when it does not, the delay or loss based estimate drops, which ends the
// probe at once. After a probe that did not reach its goal the next waits
// twice as long (probeGapMin up to ccProbeMax); after one that did, or a
// step up, probeGapMin. A subscriber without RTX is padded on the media
// stream of a simulcast track, whose sequence numbers the SFU rewrites
// anyway (mediaPadding); one without RTX and without simulcast tracks is
// not probed (its sequence numbers are the publisher's).

import (
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

const (
	probeDur    = 500 * time.Millisecond
	probeSlice  = 10 * time.Millisecond
	probeGain   = 1.5
	probeGapMin = time.Second
	// probePad is a padding packet's payload, all padding (libwebrtc's
	// largest padding packet is 224 bytes; RTP padding counts in one byte).
	probePad = 224
)

// prober is a connection's probe state, the congestion clock's only.
type prober struct {
	goal     int64 // bits/s the probe tops the media up to; 0: none running
	until    int64 // when the probe ends
	next     int64 // no probe starts before
	gap      int64 // wait after a probe that failed
	startEst int64 // the estimate when the probe started
	sent     int64 // padding bytes sent since the probe started
	debt     float64
	at       int64
	hdr      rtp.Header
	pad      [probePad]byte
	packets  uint64 // padding packets sent, for tests
}

// probeNeed returns the estimate the connection's simulcast tracks need for
// their next step (ladderOf: a paused one's lowest step, or the next step
// up within what is asked, each with its margin (upMargin), times the tracks
// sharing the estimate, plus the audio reserve), and what their media
// sends now; need 0 when no track wants more.
func probeNeed(sims []*downTrack, audio int) (need, media int64) {
	var most int64
	for _, d := range sims {
		ld := ladderOf(d.src.sim.rates(), d.src.sim.temporalRates())
		if ld.n == 0 {
			continue
		}
		want := int8(d.sim.want.Load())
		cur := ld.index(int8(d.sim.bwCap.Load()), int8(d.sim.tCap.Load()))
		up := 0
		if cur >= 0 {
			media += ld.r[min(cur, ld.index(want, tidAll))].rate
			up = cur + 1
			for up < ld.n && ld.r[up].rate == 0 {
				up++ // a layer not arriving is skipped
			}
			if up >= ld.n || ld.r[up].layer > want {
				continue
			}
		}
		most = max(most, ld.upMargin(up))
	}
	if most == 0 {
		return 0, media
	}
	audioBits := int64(audio) * ccAudioReserve
	return audioBits + most*int64(len(sims)), media + audioBits
}

// probeStep runs the probe state at a tick of the estimate sharing: it
// starts a probe when the tracks need more than budget, ends one that is
// done or that the estimate dropped in. It returns whether a probe runs.
func (p *prober) probeStep(need, budget, now int64) bool {
	if p.goal != 0 {
		switch {
		case budget < p.startEst*9/10:
			// the estimator saw congestion: stop, wait longer
			p.fail()
		case budget >= p.goal*9/10 || budget >= need:
			// reached: the layer steps up after its hold
			p.goal, p.gap, p.next = 0, 0, now+int64(probeGapMin)
		case now >= p.until:
			p.fail()
		}
		if p.goal != 0 {
			return true
		}
	}
	if need <= budget || now < p.next {
		return false
	}
	p.goal = min(need, int64(probeGain*float64(budget)))
	p.startEst = budget
	p.until = now + int64(probeDur)
	p.sent, p.debt, p.at = 0, 0, now
	return true
}

func (p *prober) fail() {
	p.goal = 0
	p.gap = min(max(2*p.gap, int64(probeGapMin)), int64(ccProbeMax))
	p.next = p.until + p.gap
	if p.next < p.until {
		p.next = p.until
	}
}

// padBytes returns how many padding bytes are due at now, topping media
// (bits/s) up to the goal.
func (p *prober) padBytes(media, now int64) int {
	if p.goal == 0 || p.goal <= media {
		p.at = now
		return 0
	}
	dt := float64(min(now-p.at, int64(4*probeSlice))) / 1e9
	p.at = now
	p.debt += float64(p.goal-media) / 8 * dt
	n := int(p.debt)
	p.debt -= float64(n)
	return n
}

// probeTarget returns a video track of the connection for the padding
// (nil: none): one whose subscriber has RTX, else a simulcast track that
// is forwarding a layer (its sequence numbers are the SFU's own, so that
// padding can take some of them).
func (c *Connection) probeTarget() (*downTrack, *binding) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var sd *downTrack
	var sb *binding
	for src, d := range c.downs {
		if src.info.Kind != webrtc.RTPCodecTypeVideo || d.rx == nil {
			continue
		}
		b := d.binding.Load()
		switch {
		case b == nil:
		case b.rtxSSRC != 0:
			return d, b
		case d.sim != nil && d.rx.seq != nil && d.sim.cur.Load() >= 0:
			sd, sb = d, b
		}
	}
	return sd, sb
}

// sendPadding sends n bytes (rounded up to whole packets) of padding-only
// packets on d's RTX stream, or, for a subscriber without RTX, on its media
// stream (mediaPadding).
func (p *prober) sendPadding(d *downTrack, b *binding, n int) {
	p.pad[probePad-1] = probePad
	if b.rtxSSRC == 0 {
		p.mediaPadding(d, b, n)
		return
	}
	for ; n > 0; n -= probePad + 12 {
		h := &p.hdr
		*h = rtp.Header{Version: 2, Padding: true, PayloadType: b.rtxPT, SSRC: b.rtxSSRC,
			SequenceNumber: uint16(d.rx.rtxSN.Add(1) - 1), Timestamp: 0, Extensions: h.Extensions[:0]}
		if _, err := b.ws.WriteRTP(h, p.pad[:]); err != nil {
			return
		}
		p.sent += probePad + 12
		p.packets++
	}
}

// mediaPadding sends n bytes of padding-only packets on the media stream of
// d, a simulcast track's subscriber without RTX, as libwebrtc and LiveKit
// pad when RTX is not negotiated: each takes the next sequence number of
// the subscriber's stream (the layer's packets after it are numbered one
// further on: snOff) and the timestamp of the last packet sent; a packet of
// the layer that comes out of order from before the padding keeps the
// number of its place (st.ranges). The receiver drops the padding once its
// transport-wide number is read. Under the source's lock, as the write
// path; through the pacer, behind media it holds.
func (p *prober) mediaPadding(d *downTrack, b *binding, n int) {
	src, st := d.src, d.sim
	src.mu.Lock()
	defer src.mu.Unlock()
	if !st.started || st.cur.Load() < 0 || d.binding.Load() != b {
		return
	}
	for ; n > 0; n -= probePad + 12 {
		st.ranges.cut(st.srcTop+1, st.srcTop+1, st.snOff, st.picOff)
		st.lastSN++
		st.snOff--
		h := &p.hdr
		*h = rtp.Header{Version: 2, Padding: true, PayloadType: b.pt, SSRC: b.ssrc,
			SequenceNumber: st.lastSN, Timestamp: st.lastTS, Extensions: h.Extensions[:0]}
		d.send(b, h, p.pad[:], false)
		p.sent += probePad + 12
		p.packets++
	}
}
