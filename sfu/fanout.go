package sfu

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

var (
	errTrackClosed = fmt.Errorf("sfu: track closed: %w", net.ErrClosed)
	errLayersOnly  = fmt.Errorf("%w: a simulcast track takes its packets by layer (WriteLayerRTP)", ErrInvalidRTP)
)

// source is one track of a channel, local or remote: it fans RTP out to its
// subscribers' down tracks and takes their keyframe requests.
type source struct {
	ch     *Channel
	info   TrackInfo
	kr     KeyframeRequester
	local  *Connection // publisher, nil for a remote track
	closed atomic.Bool

	// write path: mu serializes writers so hdr can be reused.
	mu    sync.Mutex
	hdr   rtp.Header
	got   snWindow                     // the sequence numbers seen of a track without layers (under mu)
	subs  atomic.Pointer[[]*downTrack] // copy on write under subMu
	sinks sinkSet                      // the taps' (source.go)

	subMu sync.Mutex

	// keyframe requests of a track without layers: at most one per
	// interval, the rest coalesced.
	kf kfLimiter

	// spread is set once the fan-out is spread over workers
	// (fanout_pool.go).
	spread atomic.Pointer[spreader]

	// sim is nil for a track without simulcast layers.
	sim *simSource
	ck  codecKind // for the keyframe starts

	// bufs keep the recent packets of a video track for retransmission:
	// bufs[0] for a track without layers, one per layer for simulcast.
	bufs [maxLayers]*packetBuffer
	// rstats measure what arrives: [0] for a track without layers, one
	// per layer for simulcast. Under mu.
	rstats [maxLayers]recvStats
}

func newSource(ch *Channel, info TrackInfo, kr KeyframeRequester, local *Connection) *source {
	s := &source{ch: ch, info: info, kr: kr, local: local, ck: codecKindOf(info.Codec.MimeType)}
	if info.Simulcast {
		s.sim = newSimSource(info)
	}
	if info.Kind == webrtc.RTPCodecTypeVideo {
		n := 1
		if s.sim != nil {
			n = maxLayers
		}
		for i := range n {
			s.bufs[i] = &packetBuffer{}
		}
	}
	s.hdr.CSRC = make([]uint32, 0, 15)
	s.hdr.Extensions = make([]rtp.Extension, 0, 16)
	empty := []*downTrack{}
	s.subs.Store(&empty)
	return s
}

// write fans pkt out. It allocates nothing once the header scratch has grown
// to the packet's CSRC and extension counts.
func (s *source) write(pkt []byte) error {
	if s.closed.Load() {
		return errTrackClosed
	}
	if s.sim != nil {
		return errLayersOnly
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.hdr.Unmarshal(pkt)
	if err != nil {
		return ErrInvalidRTP
	}
	if s.got.seen(s.hdr.SequenceNumber) {
		// Had already (a browser's RTX payload padding, a retransmission
		// of one that came after all): forwarded again under the same
		// number, the subscriber's SRTP would drop it as a replay after
		// its transport-wide number was stamped, which the estimator
		// reads as loss (as for a layer: writeLayer).
		return nil
	}
	payload := pkt[n:]
	if s.hdr.Padding {
		// Keep the padding in the payload and the P bit: the marshalled
		// header is then followed by the same bytes as the original.
		s.hdr.PaddingSize = 0
	}
	// Header extension ids were negotiated with the publisher, not with
	// each subscriber: drop them rather than let a subscriber misread them,
	// all but the audio level, which each subscriber that negotiated it
	// gets under its own id (writeRTP). abs-send-time and the
	// transport-wide sequence number are stamped at send (twcc.go).
	var level []byte
	if s.info.Kind == webrtc.RTPCodecTypeAudio && s.hdr.Extension {
		level = s.hdr.GetExtension(audioLevelExtID)
	}
	s.hdr.Extension = false
	s.hdr.Extensions = s.hdr.Extensions[:0]
	if b := s.bufs[0]; b != nil {
		b.add(s.hdr.SequenceNumber, pkt)
	}
	s.rstats[0].update(&s.hdr, len(payload), mono(), s.info.Codec.ClockRate)
	burst := s.ch.sfu.sendBurst()
	burst.Hold()
	// a keyframe's packets are paced as a burst (pacer.go)
	kf := s.info.Kind == webrtc.RTPCodecTypeVideo && isKeyframeStart(s.ck, payload)
	if subs := *s.subs.Load(); !s.spreadWrite(subs, &s.hdr, payload, level, kf) {
		for _, d := range subs {
			d.writeRTP(&s.hdr, payload, level, kf)
		}
	}
	burst.Release()
	s.sinks.call(pkt)
	return nil
}

func (s *source) addSub(d *downTrack) {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	old := *s.subs.Load()
	next := make([]*downTrack, len(old), len(old)+1)
	copy(next, old)
	next = append(next, d)
	s.subs.Store(&next)
	if s.sim != nil {
		s.sim.updateDemand(s, -1)
	}
}

func (s *source) removeSub(d *downTrack) {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	old := *s.subs.Load()
	next := make([]*downTrack, 0, len(old))
	for _, o := range old {
		if o != d {
			next = append(next, o)
		}
	}
	s.subs.Store(&next)
	if s.sim != nil {
		s.sim.updateDemand(s, -1)
	}
}

// requestKeyframe passes a keyframe request to the publisher, at most once
// per interval; requests inside the interval are coalesced into one sent at
// its end. For a track with simulcast layers it asks for a keyframe of every
// layer some subscriber receives or waits for.
func (s *source) requestKeyframe() {
	if s.info.Kind != webrtc.RTPCodecTypeVideo {
		return
	}
	if s.sim != nil {
		s.sim.requestForwarded(s)
		return
	}
	if s.kr == nil {
		return
	}
	s.kf.request(s, s.ch.sfu.cfg.KeyframeInterval, s.kr)
}

// kfLimiter passes keyframe requests to a KeyframeRequester at most once
// per interval; requests inside the interval are coalesced into one sent at
// its end.
type kfLimiter struct {
	mu      sync.Mutex
	last    time.Time
	timer   *time.Timer
	pending bool
	kr      KeyframeRequester // of the pending request
}

func (k *kfLimiter) request(s *source, interval time.Duration, kr KeyframeRequester) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if s.closed.Load() || k.pending {
		return
	}
	since := time.Since(k.last)
	if since >= interval {
		k.last = time.Now()
		kr.RequestKeyframe()
		return
	}
	k.pending = true
	k.kr = kr
	k.timer = time.AfterFunc(interval-since, func() { k.fire(s) })
}

func (k *kfLimiter) fire(s *source) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.pending = false
	if s.closed.Load() {
		return
	}
	k.last = time.Now()
	k.kr.RequestKeyframe()
}

func (k *kfLimiter) stop() {
	k.mu.Lock()
	if k.timer != nil {
		k.timer.Stop()
	}
	k.mu.Unlock()
}

// close stops the source; writes fail from now on.
func (s *source) close() {
	s.closed.Store(true)
	s.stopSpreader()
	s.kf.stop()
	if s.sim != nil {
		s.sim.stop()
	}
	s.sinks.clear()
}

// binding is what a down track needs to write to one subscriber's sender.
type binding struct {
	ssrc uint32
	pt   uint8
	ws   webrtc.TrackLocalWriter
	// rtxSSRC and rtxPT send retransmissions as RTX; 0 when the
	// subscriber did not negotiate it.
	rtxSSRC uint32
	rtxPT   uint8
	// levelID is the subscriber's id of the audio level extension; 0
	// when it did not negotiate it.
	levelID uint8
}

// downTrack is a source as seen by one subscriber: a webrtc.TrackLocal bound
// to one RTPSender.
type downTrack struct {
	src     *source
	conn    *Connection // the subscriber; nil in unit tests
	sim     *simSub     // nil unless src has simulcast layers
	binding atomic.Pointer[binding]
	// undecodable: the subscriber's answer left out the source's codec.
	undecodable atomic.Bool
	// inKeyframe: the packets sent are a keyframe's, paced (pacer.go).
	// Written by the fan-out (under source.mu, or its spread worker's lock).
	inKeyframe bool
	// rx answers the subscriber's NACKs (video only; nil for audio).
	rx     *rtxState
	stats  downStats
	tr     *webrtc.RTPTransceiver
	sender *webrtc.RTPSender
	// When the track took a free m-line (Connection.reuseLocked): that
	// m-line's entry, and the offer count then. Should the track leave
	// before an offer carries it, the m-line goes back as it was.
	reused   *freeTr
	reusedAt uint64
}

var _ webrtc.TrackLocal = (*downTrack)(nil)

// newDownTrack returns src as subscriber c (nil in unit tests) gets it.
func newDownTrack(src *source, c *Connection) *downTrack {
	d := &downTrack{src: src, conn: c}
	if src.info.Kind == webrtc.RTPCodecTypeVideo {
		d.rx = newRtxState(src.sim != nil)
	}
	return d
}

// writeRTP sends a packet of a track without layers; level is the
// publisher's audio level extension (nil: none), keyframe says the packet
// starts a keyframe.
func (d *downTrack) writeRTP(h *rtp.Header, payload, level []byte, keyframe bool) {
	b := d.binding.Load()
	if b == nil {
		return
	}
	withLevel := level != nil && b.levelID != 0 && h.SetExtension(b.levelID, level) == nil
	h.PayloadType = b.pt
	h.SSRC = b.ssrc
	d.stats.packets++
	d.stats.bytes += uint64(len(payload))
	// Errors are a subscriber's own trouble (closing, congested); they must
	// not stop the fan-out to the others.
	d.send(b, h, payload, keyframe)
	if withLevel {
		h.Extension, h.Extensions = false, h.Extensions[:0]
	}
}

// Bind picks the subscriber's payload type for the source's codec.
func (d *downTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	want := d.src.info.Codec
	var found *webrtc.RTPCodecParameters
	for _, c := range ctx.CodecParameters() {
		if !strings.EqualFold(c.MimeType, want.MimeType) || c.ClockRate != want.ClockRate {
			continue
		}
		if found == nil || (c.SDPFmtpLine == want.SDPFmtpLine && found.SDPFmtpLine != want.SDPFmtpLine) {
			c := c
			found = &c
		}
	}
	if found == nil {
		return d.bindUndecodable(ctx), nil
	}
	nb := &binding{ssrc: uint32(ctx.SSRC()), pt: uint8(found.PayloadType), ws: ctx.WriteStream()}
	var tcc, ast uint8
	for _, e := range ctx.HeaderExtensions() {
		switch e.URI {
		case sdp.AudioLevelURI:
			if d.src.info.Kind == webrtc.RTPCodecTypeAudio {
				nb.levelID = uint8(e.ID)
			}
		case sdp.TransportCCURI:
			tcc = uint8(e.ID)
		case sdp.ABSSendTimeURI:
			ast = uint8(e.ID)
		}
	}
	if d.conn != nil && d.conn.direct != nil {
		// Everything written to the subscriber (fan-out, pacer, RTX,
		// probes) goes through the direct path once it is on (direct.go).
		nb.ws = &directWriter{ds: d.conn.direct, next: nb.ws, ssrc: nb.ssrc, tcc: tcc, ast: ast, srs: d.conn.srs}
	}
	if pt := rtxPayloadType(ctx.CodecParameters(), found.PayloadType); pt != 0 && ctx.SSRCRetransmission() != 0 {
		nb.rtxSSRC, nb.rtxPT = uint32(ctx.SSRCRetransmission()), pt
	}
	d.binding.Store(nb)
	// A new subscriber needs a keyframe to start decoding. For a simulcast
	// track the write path asks for one of the layer it picks.
	if d.sim != nil {
		d.sim.dirty.Store(true)
	} else {
		d.src.requestKeyframe()
	}
	return *found, nil
}

// Unbind stops writing to the sender.
func (d *downTrack) Unbind(webrtc.TrackLocalContext) error {
	d.binding.Store(nil)
	return nil
}

// ID is the track id of a=msid.
func (d *downTrack) ID() string { return d.src.info.ID }

// RID is empty: no simulcast.
func (d *downTrack) RID() string { return "" }

// StreamID is the publisher's connection id, the stream id of a=msid.
func (d *downTrack) StreamID() string { return d.src.info.StreamID }

// Kind is the source's kind.
func (d *downTrack) Kind() webrtc.RTPCodecType { return d.src.info.Kind }

// hasKeyframeRequest reports whether a compound RTCP packet holds a PLI or a
// FIR. It parses only the common headers and allocates nothing.
func hasKeyframeRequest(b []byte) bool {
	for len(b) >= 4 {
		if b[0]>>6 != 2 {
			return false
		}
		fmtCount := b[0] & 0x1f
		pt := b[1]
		size := (int(b[2])<<8 | int(b[3]) + 1) * 4
		if size > len(b) {
			return false
		}
		// RFC 4585: payload-specific feedback (206), FMT 1 = PLI; RFC 5104: FMT 4 = FIR.
		if pt == 206 && (fmtCount == 1 || fmtCount == 4) {
			return true
		}
		b = b[size:]
	}
	return false
}
