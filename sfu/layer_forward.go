package sfu

// The subscriber side of simulcast: the layer a subscriber receives and the
// switch to another, which makes the subscriber's one stream go on without a
// seam: the next sequence number, a timestamp advanced by the time elapsed,
// the next VP8 or VP9 picture id and TL0PICIDX.

import (
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
)

// simSub is a subscriber's state for a simulcast source.
type simSub struct {
	// want is the layer asked for (-1: none; the highest for auto, which
	// auto says); dirty says it changed and the write path must decide
	// again. They are set from any goroutine.
	want  atomic.Int32
	auto  atomic.Bool
	dirty atomic.Bool
	// cur is the layer forwarded (-1: none), target the one to switch to
	// at its next keyframe. Written under source.mu, read anywhere.
	cur    atomic.Int32
	target atomic.Int32
	// bwCap is the highest layer the connection's bandwidth estimate
	// allows (-1: none; congestion.go), tCap the highest temporal layer
	// (VP8 TID) it allows of that layer (tidAll: every one); the fields
	// after them are the congestion control goroutine's only.
	bwCap      atomic.Int32
	tCap       atomic.Int32
	upSince    int64 // when the next layer up began to fit
	pauseSince int64 // when the share fell under the lowest step
	downSince  int64 // when the share fell under the layer's bitrate
	upAt       int64 // when the cap last went up
	upHold     int64 // how long a layer up must fit first (0: ccUpHold)
	pausedAt   int64 // when the video paused
	probeAfter int64 // how long a pause lasts before a trial of the lowest layer
	holdUntil  int64 // no switch down before, during a trial

	// The rest is the write path's, under source.mu.
	reason  SwitchTrigger // of the last target change
	started bool          // a layer was forwarded: offsets are relative
	startSN uint16        // first sequence number of cur after the switch
	snOff   uint16
	tsOff   uint32
	lastSN  uint16 // highest sequence number sent
	lastTS  uint32 // timestamp of that packet
	lastAt  int64  // mono() when it was sent
	picOff  uint16
	tl0Off  uint8
	lastPic uint16
	lastTl0 uint8
	scratch []byte // payload copy for the picture id rewrite

	// The temporal layer filter (dropTemporal), for the layer forwarded.
	fwdTid    uint8  // the highest TID forwarded now
	srcTop    uint16 // highest sequence number of the layer seen
	frameTS   uint32 // timestamp of the frame of srcTop
	frameOK   bool   // frameTS is set
	frameDrop bool   // that frame is dropped
	topMarker bool   // srcTop had the marker bit (ended its frame)
	// The offsets of the layer's earlier sequence numbers, and the last
	// frames' decisions, for packets that come out of order.
	ranges snRanges
	frames frameLog
}

func newSimSub(want SimulcastRid) *simSub {
	st := &simSub{}
	st.want.Store(int32(want.ceiling()))
	st.auto.Store(want == RidAuto)
	st.cur.Store(-1)
	st.target.Store(-1)
	st.bwCap.Store(maxLayers - 1)
	st.tCap.Store(tidAll)
	st.dirty.Store(true)
	return st
}

// wantLayer is the layer the subscriber is to get at most: what it asked
// for, within what its bandwidth allows.
func (st *simSub) wantLayer() int8 {
	w := int8(st.want.Load())
	if c := int8(st.bwCap.Load()); c < w {
		return c
	}
	return w
}

// setWant asks for layer rid from now on.
func (st *simSub) setWant(rid SimulcastRid) {
	st.want.Store(int32(rid.ceiling()))
	st.auto.Store(rid == RidAuto)
	st.dirty.Store(true)
}

// simPacket is one packet of a layer as the write path sees it, with what
// is parsed from it at most once whatever the number of subscribers.
type simPacket struct {
	layer   int8
	sn      uint16
	ts      uint32
	payload []byte
	now     int64
	marker  bool
	kf      int8 // keyframe start: 0 not known yet, 1 yes, -1 no
	ids     picIDs
	idsOK   int8 // like kf
}

func (p *simPacket) keyframe(k codecKind) bool {
	if p.kf == 0 {
		p.kf = -1
		if isKeyframeStart(k, p.payload) {
			p.kf = 1
		}
	}
	return p.kf == 1
}

func (p *simPacket) picIDs(k codecKind) (*picIDs, bool) {
	if p.idsOK == 0 {
		p.idsOK = -1
		if d, ok := parsePicIDs(k, p.payload); ok {
			p.ids = d
			if d.picAt != 0 || d.tl0At != 0 {
				p.idsOK = 1
			}
		}
	}
	return &p.ids, p.idsOK == 1
}

// temporal returns the temporal layer of p (TID) and its layer sync bit
// (VP8's Y, VP9's switching up point U; AV1 has none); ok is false for
// other codecs and for a payload without a TID.
func (p *simPacket) temporal(k codecKind) (tid uint8, sync, ok bool) {
	if k != codecVP8 && k != codecVP9 && k != codecAV1 {
		return 0, false, false
	}
	ids, _ := p.picIDs(k)
	return ids.tid, ids.sync, ids.hasTID
}

// writeLayer forwards p to the subscriber if it is of the layer forwarded,
// or switches to p's layer when it is the target and p starts a keyframe.
// Called with source.mu held.
func (d *downTrack) writeLayer(h *rtp.Header, p *simPacket, ss *simSource) {
	b := d.binding.Load()
	if b == nil {
		return
	}
	st := d.sim
	if int8(st.cur.Load()) != p.layer {
		if int8(st.target.Load()) != p.layer || !p.keyframe(ss.codec) {
			return
		}
		prev := int8(st.cur.Load())
		st.switchTo(p, ss)
		d.src.sim.updateDemand(d.src, -1)
		if prev != p.layer {
			d.switched(prev, p.layer, st.reason)
		}
	}
	if int16(p.sn-st.startSN) < 0 {
		return // a packet of this layer from before the switch
	}
	newer := int16(p.sn-st.srcTop) > 0
	prevTop, prevMarker := st.srcTop, st.topMarker
	var snOff, picOff uint16
	if newer {
		st.srcTop, st.topMarker = p.sn, p.marker
		if st.dropTemporal(p, ss, true, prevTop, prevMarker) {
			return
		}
		snOff, picOff = st.snOff, st.picOff
	} else {
		// Out of order: numbered by the offsets of its place, which a
		// dropped frame or a padding probe since may have moved; none
		// when it was of a dropped frame, or is too old to place.
		var ok bool
		if snOff, picOff, ok = st.ranges.lookup(p.sn, st.snOff, st.picOff); !ok {
			return
		}
		if st.dropTemporal(p, ss, false, prevTop, prevMarker) {
			return
		}
	}
	sn := p.sn - snOff
	ts := p.ts - st.tsOff
	if int16(sn-st.lastSN) > 0 {
		st.lastSN, st.lastTS, st.lastAt = sn, ts, p.now
	}
	payload := p.payload
	ids, idsOK := p.picIDs(ss.codec)
	if idsOK {
		payload = st.rewriteIDs(payload, ids, picOff)
	}
	h.SequenceNumber = sn
	h.Timestamp = ts
	h.PayloadType = b.pt
	h.SSRC = b.ssrc
	if d.rx != nil {
		d.rx.seq.push(sn, p.sn, ts, p.layer, idsOK, picOff, st.tl0Off)
	}
	d.stats.packets++
	d.stats.bytes += uint64(len(payload))
	d.send(b, h, payload, p.keyframe(ss.codec))
	h.SequenceNumber, h.Timestamp = p.sn, p.ts
}

// switchTo makes p's layer the one forwarded, p (a keyframe's first packet)
// the first packet sent of it. The offsets make p follow the last packet
// sent: next sequence number, a timestamp advanced by the time elapsed,
// next picture id and TL0PICIDX. The first layer ever forwarded keeps its
// numbers.
func (st *simSub) switchTo(p *simPacket, ss *simSource) {
	st.cur.Store(int32(p.layer))
	st.startSN = p.sn
	st.srcTop, st.frameOK, st.topMarker = p.sn-1, false, false
	st.ranges.reset(p.sn)
	st.frames.reset()
	if !st.started {
		st.started = true
		st.lastSN, st.lastTS, st.lastAt = p.sn-1, p.ts, p.now
		if ids, ok := p.picIDs(ss.codec); ok {
			st.lastPic, st.lastTl0 = (ids.pic-1)&ids.picMask(), ids.tl0-1
		}
		return
	}
	st.snOff = p.sn - (st.lastSN + 1)
	step := uint32(1)
	if elapsed := p.now - st.lastAt; elapsed > 0 {
		if n := uint32(uint64(elapsed) * uint64(ss.clock) / uint64(time.Second)); n > step {
			step = n
		}
	}
	st.tsOff = p.ts - (st.lastTS + step)
	if ids, ok := p.picIDs(ss.codec); ok {
		st.picOff = (ids.pic - (st.lastPic + 1)) & ids.picMask()
		st.tl0Off = ids.tl0 - (st.lastTl0 + 1)
	}
}

// dropTemporal reports whether p, a packet of the layer forwarded, is of a
// temporal layer above what the subscriber gets (tCap), as LiveKit's and
// mediasoup's VP8 and VP9 forwarders do to step a subscriber under its
// lowest layer's bitrate before pausing it. Whole frames are dropped,
// decided at the first packet of each frame seen: down at once, up only on
// a frame that can be decoded from what was forwarded (a keyframe, or a
// frame with VP8's layer sync bit or VP9's switching up point, which
// reference TL0 only; libwebrtc sets them on one frame of each layer every
// eight, VP9 on its GOF's TL1 and first TL2 frames). The subscriber's
// sequence numbers go on without a gap: a dropped packet moves the
// sequence number offset by one. A dropped VP8 frame moves the picture id
// offset by one too, so that VP8 picture ids go on without a gap
// (TL0PICIDX needs nothing: TL0 is never dropped); VP9 picture ids are
// left as sent, as LiveKit and mediasoup leave them: a VP9 receiver finds
// a frame's references by picture id distance (the descriptor's P_DIFF,
// or in non-flexible mode the GOF's, whose place in the GOF it counts from
// the picture id), which renumbering would break, and it takes a gap in a
// temporal layer above a frame's as no loss.
//
// Packets missing when a later one comes (lost, or coming out of order)
// are given to the frame they belong to, when that can be told: to p's
// frame when they are within it, or when the packet before them ended its
// frame (prevMarker); to the frame before when p starts its frame. Those
// of a dropped frame are left out of the numbering at once (the offset
// moves by their count), the others keep their numbers. The numbers left
// out are noted in st.ranges, each frame's decision in st.frames, for
// packets that come out of order (!newer): one is dropped or forwarded as
// its frame was, with the offsets of its place. When the missing packets
// cannot be told (p is not its frame's first and the frame before did not
// end), they keep their numbers, and one of a dropped frame, when it
// comes, leaves a gap the subscriber takes for a loss. prevTop and
// prevMarker are the newest packet seen before p and its marker bit.
// Called with source.mu held.
func (st *simSub) dropTemporal(p *simPacket, ss *simSource, newer bool, prevTop uint16, prevMarker bool) bool {
	tid, sync, ok := p.temporal(ss.codec)
	if !newer {
		if drop, seen := st.frames.decided(p.ts); seen {
			return drop
		}
		return ok && tid > st.fwdTid // a frame none of whose packets came yet
	}
	if !ok {
		return false
	}
	from, pics := p.sn, uint16(0)
	gap := p.sn != prevTop+1
	if !st.frameOK || p.ts != st.frameTS {
		// the first packet of a frame seen: decide for the frame
		prevDrop := st.frameOK && st.frameDrop
		capT := uint8(st.tCap.Load())
		switch {
		case p.keyframe(ss.codec) || !st.frameOK:
			st.fwdTid = capT
		case capT < st.fwdTid:
			st.fwdTid = capT
		case sync && tid > st.fwdTid && tid <= capT:
			st.fwdTid = tid
		case ss.codec == codecAV1 && tid == st.fwdTid+1 && tid <= capT:
			// AV1 carries no sync bit: one temporal layer up at a time,
			// at its next frame, which in libwebrtc's L1T2 and L1T3
			// references only the layers under it
			st.fwdTid = tid
		}
		st.frameTS, st.frameOK = p.ts, true
		st.frameDrop = tid > st.fwdTid
		st.frames.note(p.ts, st.frameDrop)
		ids, _ := p.picIDs(ss.codec)
		switch {
		case !gap:
		case prevMarker:
			from = prevTop + 1 // the missing packets are p's frame's
		case ids.start && prevDrop:
			// the missing packets end the frame before, dropped
			st.ranges.cut(prevTop+1, p.sn, st.snOff, st.picOff)
			st.snOff += p.sn - (prevTop + 1)
		}
		if st.frameDrop && ss.codec == codecVP8 && ids.picAt != 0 {
			pics = 1
		}
	} else if st.frameDrop {
		from = prevTop + 1 // packets missing within the frame are its own
	}
	if !st.frameDrop {
		return false
	}
	st.ranges.cut(from, p.sn+1, st.snOff, st.picOff)
	st.snOff += p.sn - from + 1
	if pics != 0 {
		ids, _ := p.picIDs(ss.codec)
		st.picOff = (st.picOff + pics) & ids.picMask()
	}
	return true
}

// rewriteIDs returns payload with its picture id moved by picOff and its
// TL0PICIDX by the subscriber's offset (a copy when they are not 0), and
// notes the last ones sent.
func (st *simSub) rewriteIDs(payload []byte, ids *picIDs, picOff uint16) []byte {
	pic := (ids.pic - picOff) & ids.picMask()
	tl0 := ids.tl0 - st.tl0Off
	if ids.picAt != 0 && newerMod(pic, st.lastPic, ids.picMask()) {
		st.lastPic = pic
	}
	if ids.tl0At != 0 && int8(tl0-st.lastTl0) > 0 {
		st.lastTl0 = tl0
	}
	if picOff == 0 && st.tl0Off == 0 {
		return payload
	}
	if cap(st.scratch) < len(payload) {
		st.scratch = make([]byte, len(payload), max(len(payload), 1500))
	}
	out := st.scratch[:len(payload)]
	copy(out, payload)
	if ids.picAt != 0 {
		ids.putPic(out, pic)
	}
	if ids.tl0At != 0 {
		out[ids.tl0At] = tl0
	}
	return out
}

// newerMod reports whether a is after b in a sequence counted modulo
// mask+1 (a power of two).
func newerMod(a, b, mask uint16) bool {
	d := (a - b) & mask
	return d != 0 && d <= mask/2
}

// switched reports a layer switch to the subscriber's connection: from
// none when a layer starts, to none when the video stops.
func (d *downTrack) switched(prev, cur int8, trigger SwitchTrigger) {
	c := d.conn
	if c == nil || c.hooks.SimulcastSwitched == nil {
		return
	}
	st := d.sim
	requested := ridOf(int8(st.want.Load()))
	if st.auto.Load() {
		requested = RidAuto
	}
	var auto []SimulcastRid
	if c.dl != nil { // congestion control on: what the estimate allows
		for l := int8(0); l <= int8(st.bwCap.Load()); l++ {
			auto = append(auto, ridOf(l))
		}
	}
	ev := SimulcastSwitch{
		SenderConnectionID: d.src.info.StreamID,
		TrackID:            d.src.info.ID,
		Requested:          requested,
		Previous:           ridOf(prev),
		Current:            ridOf(cur),
		Trigger:            trigger,
		AutoRids:           auto,
	}
	fn := c.hooks.SimulcastSwitched
	c.q.push(func() { fn(ev) })
}

// requestKeyframe passes a subscriber's keyframe request on: for a
// simulcast track, to the layer it receives (or waits for).
func (d *downTrack) requestKeyframe() {
	if d.sim == nil {
		d.src.requestKeyframe()
		return
	}
	l := int8(d.sim.cur.Load())
	if l < 0 {
		l = int8(d.sim.target.Load())
	}
	d.src.sim.requestLayer(d.src, l)
}
