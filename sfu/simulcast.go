package sfu

// Simulcast: a publisher sends its video as up to three layers (rids r0,
// r1, r2, lowest first, as Sora's SDKs do); the channel keeps them as one
// track and forwards one layer to each subscriber. The subscriber's sender
// sees one stream: its SSRC, sequence numbers, timestamps and (VP8, VP9)
// picture ids and TL0PICIDX continue across a layer switch, which happens
// only on a keyframe of the new layer, asked for when the switch is decided.
//
// Which layer a subscriber gets is decided in the write path of the track
// (selectLocked), from what it asked for (Connection.SetSimulcastRid, connect's
// simulcast_rid) and which layers arrive: the highest layer at or below the
// one asked for that is active, else the lowest active one above. A layer is
// active while its media keeps coming at minLayerFPS frames a second or more
// (a browser short of bandwidth keeps a layer alive with a frame now and
// then, and pads it when probing: neither counts).

import (
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
)

// SimulcastRid names a simulcast layer, as Sora's signaling does.
type SimulcastRid string

// The simulcast rids.
const (
	// RidNone receives no video of simulcast publishers.
	RidNone SimulcastRid = "none"
	// RidR0, RidR1 and RidR2 are the layers, lowest resolution first.
	RidR0 SimulcastRid = "r0"
	RidR1 SimulcastRid = "r1"
	RidR2 SimulcastRid = "r2"
)

// ParseSimulcastRid parses "none", "r0", "r1" or "r2".
func ParseSimulcastRid(s string) (SimulcastRid, error) {
	switch r := SimulcastRid(s); r {
	case RidNone, RidR0, RidR1, RidR2:
		return r, nil
	}
	return "", fmt.Errorf("%w: simulcast rid %q is not none, r0, r1 or r2", ErrInvalidRequest, s)
}

// layer returns the layer index of r: -1 for none (or anything else).
func (r SimulcastRid) layer() int8 {
	switch r {
	case RidR0:
		return 0
	case RidR1:
		return 1
	case RidR2:
		return 2
	}
	return -1
}

// ridOf names layer l; "none" for -1.
func ridOf(l int8) SimulcastRid {
	switch l {
	case 0:
		return RidR0
	case 1:
		return RidR1
	case 2:
		return RidR2
	}
	return RidNone
}

// maxLayers is the number of simulcast layers a track may have.
const maxLayers = 3

// Encoding is one entry of offer.encodings: the parameters a Sora SDK
// gives to RTCRtpSender.setParameters for one simulcast layer.
type Encoding struct {
	RID                   SimulcastRid
	Active                bool
	ScaleResolutionDownBy float64 // 0: not sent
	MaxBitrate            int     // bits per second; 0: not sent
	MaxFramerate          float64 // 0: not sent
}

// DefaultSimulcastEncodings are the encodings offered to a simulcast
// publisher: r0 at a quarter of the resolution, r1 at half, r2 at full.
func DefaultSimulcastEncodings() []Encoding {
	return []Encoding{
		{RID: RidR0, Active: true, ScaleResolutionDownBy: 4},
		{RID: RidR1, Active: true, ScaleResolutionDownBy: 2},
		{RID: RidR2, Active: true, ScaleResolutionDownBy: 1},
	}
}

// SwitchTrigger says why a subscriber's layer changed.
type SwitchTrigger string

// The triggers of a layer switch, as in Sora's simulcast.switched notify.
const (
	// TriggerReceiver: the subscriber asked for another layer.
	TriggerReceiver SwitchTrigger = "receiver"
	// TriggerSender: the publisher's layers changed (one stopped or came).
	TriggerSender SwitchTrigger = "sender"
)

// SimulcastSwitch tells a subscriber that the layer it receives of one
// publisher's video changed. It is reported only between two layers: not
// when the first layer starts, nor when video stops for RidNone.
type SimulcastSwitch struct {
	// SenderConnectionID is the publisher's connection id.
	SenderConnectionID string
	// TrackID is the track's id.
	TrackID string
	// Requested is what the subscriber asks for.
	Requested SimulcastRid
	// Previous and Current are the layers before and after the switch.
	Previous, Current SimulcastRid
	// Trigger says whether the subscriber's request or the publisher's
	// layers caused the switch.
	Trigger SwitchTrigger
}

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

	// under source.mu
	selectedAt int64
	winStart   int64            // of the frame count window
	winFrames  [maxLayers]int32 // frames ended in the window, per layer
	prevFrames [maxLayers]int32 // in the window before
}

// simLayer is one layer of a simulcast source.
type simLayer struct {
	present  atomic.Bool
	lastSeen atomic.Int64 // mono() of its last media packet
	kf       kfLimiter
	kr       atomic.Pointer[KeyframeRequester]
	sink     atomic.Pointer[func([]byte)]
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
		}
		ss.winFrames = [maxLayers]int32{}
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

func (ss *simSource) stop() {
	for l := range ss.layers {
		ss.layers[l].kf.stop()
		ss.layers[l].sink.Store(nil)
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

// simSub is a subscriber's state for a simulcast source.
type simSub struct {
	// want is the layer asked for (-1: none); dirty says it changed and
	// the write path must decide again. Both are set from any goroutine.
	want  atomic.Int32
	dirty atomic.Bool
	// cur is the layer forwarded (-1: none), target the one to switch to
	// at its next keyframe. Written under source.mu, read anywhere.
	cur    atomic.Int32
	target atomic.Int32

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
}

func newSimSub(want SimulcastRid) *simSub {
	st := &simSub{}
	st.want.Store(int32(want.layer()))
	st.cur.Store(-1)
	st.target.Store(-1)
	st.dirty.Store(true)
	return st
}

// setWant asks for layer rid from now on.
func (st *simSub) setWant(rid SimulcastRid) {
	st.want.Store(int32(rid.layer()))
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
		if d, ok := parsePicIDs(k, p.payload); ok && (d.picAt != 0 || d.tl0At != 0) {
			p.ids, p.idsOK = d, 1
		}
	}
	return &p.ids, p.idsOK == 1
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
	if s.hdr.Padding {
		s.hdr.PaddingSize = 0
	}
	s.hdr.Extension = false
	s.hdr.Extensions = s.hdr.Extensions[:0]
	now := mono()
	payload := pkt[n:]
	ss.layers[l].present.Store(true)
	if !paddingOnly(&s.hdr, payload) {
		ss.layers[l].lastSeen.Store(now)
		if s.hdr.Marker {
			ss.winFrames[l]++
		}
	}
	subs := *s.subs.Load()
	all := now-ss.selectedAt >= int64(selectEvery)
	var active, seen uint8
	masks := false
	if all {
		ss.selectedAt = now
	}
	p := simPacket{layer: l, sn: s.hdr.SequenceNumber, ts: s.hdr.Timestamp, payload: payload, now: now}
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
	if fn := ss.layers[l].sink.Load(); fn != nil {
		(*fn)(pkt)
	}
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
	t := pickLayer(int8(st.want.Load()), active, old)
	if t != old {
		st.target.Store(int32(t))
		st.reason = trigger
	}
	switch {
	case t < 0 && cur >= 0:
		st.cur.Store(-1) // stopped; a later start waits for a keyframe
	case t >= 0 && t != cur && (t != old || again):
		s.sim.requestLayer(s, t)
	}
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
		if prev >= 0 && prev != p.layer {
			d.switched(prev, p.layer, st.reason)
		}
	}
	if int16(p.sn-st.startSN) < 0 {
		return // a packet of this layer from before the switch
	}
	sn := p.sn - st.snOff
	ts := p.ts - st.tsOff
	if int16(sn-st.lastSN) > 0 {
		st.lastSN, st.lastTS, st.lastAt = sn, ts, p.now
	}
	payload := p.payload
	if ids, ok := p.picIDs(ss.codec); ok {
		payload = st.rewriteIDs(payload, ids)
	}
	h.SequenceNumber = sn
	h.Timestamp = ts
	h.PayloadType = b.pt
	h.SSRC = b.ssrc
	_, _ = b.ws.WriteRTP(h, payload)
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

// rewriteIDs returns payload with its picture id and TL0PICIDX moved by the
// subscriber's offsets (a copy when they are not 0), and notes the last ones
// sent.
func (st *simSub) rewriteIDs(payload []byte, ids *picIDs) []byte {
	pic := (ids.pic - st.picOff) & ids.picMask()
	tl0 := ids.tl0 - st.tl0Off
	if ids.picAt != 0 && newerMod(pic, st.lastPic, ids.picMask()) {
		st.lastPic = pic
	}
	if ids.tl0At != 0 && int8(tl0-st.lastTl0) > 0 {
		st.lastTl0 = tl0
	}
	if st.picOff == 0 && st.tl0Off == 0 {
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

// switched reports a layer switch to the subscriber's connection.
func (d *downTrack) switched(prev, cur int8, trigger SwitchTrigger) {
	c := d.conn
	if c == nil || c.hooks.SimulcastSwitched == nil {
		return
	}
	ev := SimulcastSwitch{
		SenderConnectionID: d.src.info.StreamID,
		TrackID:            d.src.info.ID,
		Requested:          ridOf(int8(d.sim.want.Load())),
		Previous:           ridOf(prev),
		Current:            ridOf(cur),
		Trigger:            trigger,
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

// simulcastRids are the rids a simulcast publisher is offered.
var simulcastRids = [maxLayers]SimulcastRid{RidR0, RidR1, RidR2}

// subscriptionRids is what a connection asks to receive of simulcast
// tracks: a default and per-publisher choices. Guarded by Connection.mu.
type subscriptionRids struct {
	def      SimulcastRid
	bySender map[string]SimulcastRid
}

func (r *subscriptionRids) of(sender string) SimulcastRid {
	if rid, ok := r.bySender[sender]; ok {
		return rid
	}
	return r.def
}

// SetSimulcastRid changes the layer the connection receives of the
// simulcast video of the publisher sender (a connection id), or of every
// publisher, present and future, when sender is "". The switch happens at
// the next keyframe of that layer, which is asked for at once; RidNone
// stops the video at once. A layer that is not active gives the nearest
// one below it, else above it. Non-simulcast tracks are not affected.
func (c *Connection) SetSimulcastRid(sender string, rid SimulcastRid) error {
	if _, err := ParseSimulcastRid(string(rid)); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return fmt.Errorf("sfu: set simulcast rid: %w", net.ErrClosed)
	}
	if sender == "" {
		c.rids.def = rid
		c.rids.bySender = nil
	} else {
		if c.rids.bySender == nil {
			c.rids.bySender = map[string]SimulcastRid{}
		}
		c.rids.bySender[sender] = rid
	}
	for src, d := range c.downs {
		if d.sim != nil && (sender == "" || src.info.StreamID == sender) {
			d.sim.setWant(rid)
		}
	}
	return nil
}

// SimulcastRid returns the layer the connection asks for of the publisher
// sender's simulcast video ("": the default), and the layer it receives now
// ("none" when it receives none, or sender publishes no simulcast track).
func (c *Connection) SimulcastRid(sender string) (requested, current SimulcastRid) {
	c.mu.Lock()
	defer c.mu.Unlock()
	requested, current = c.rids.of(sender), RidNone
	for src, d := range c.downs {
		if d.sim != nil && src.info.StreamID == sender {
			current = ridOf(int8(d.sim.cur.Load()))
		}
	}
	return requested, current
}

// addSimulcastRecv adds to the m-line mid of an offer the receive
// simulcast lines of the layers r0 to r2 (RFC 8851, RFC 8853):
//
//	a=rid:r0 recv
//	a=rid:r1 recv
//	a=rid:r2 recv
//	a=simulcast:recv r0;r1;r2
//
// An SDP without that m-line, or already with the lines, is returned as it
// is.
func addSimulcastRecv(sdpText, mid string) string {
	lines := strings.SplitAfter(sdpText, "\r\n")
	var b strings.Builder
	b.Grow(len(sdpText) + 100)
	in := false // in the m-line mid
	done := false
	flush := func() {
		if in && !done {
			rids := make([]string, 0, maxLayers)
			for _, r := range simulcastRids {
				b.WriteString("a=rid:" + string(r) + " recv\r\n")
				rids = append(rids, string(r))
			}
			b.WriteString("a=simulcast:recv " + strings.Join(rids, ";") + "\r\n")
			done = true
		}
	}
	for _, l := range lines {
		if strings.HasPrefix(l, "m=") {
			flush()
			in = false
		}
		if l == "a=mid:"+mid+"\r\n" {
			in = true
		}
		if in && strings.HasPrefix(l, "a=simulcast:") {
			done = true
		}
		b.WriteString(l)
	}
	flush()
	return b.String()
}
