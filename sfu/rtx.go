package sfu

// Retransmission to subscribers: NACKs are answered from the source
// stream's shared packet buffer (nackbuffer.go), as RTX (RFC 4588) when the
// subscriber negotiated it, else as the packet itself. Also the RTCP the
// subscriber sends back: receiver reports (loss, jitter, RTT).

import (
	"encoding/binary"
	"maps"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

const (
	// maxResends bounds how often one packet is resent to one subscriber.
	maxResends = 4
	// minResendGap is the least time between two resends of one packet to
	// one subscriber, added to its round-trip time.
	minResendGap = 10 * time.Millisecond
)

// rtxState is a video down track's retransmission state. The sequencer is
// written by the fan-out; the rest belongs to the track's RTCP reader.
//
// Only a track with simulcast layers has a sequencer: its subscriber's
// sequence numbers and timestamps are rewritten at each switch. A track
// without layers is sent with the source's sequence numbers and
// timestamps, so the packet a NACK asks for is the source's of that
// number, and all a subscriber needs is the count of its resends (marks,
// 6 bytes a packet instead of 16).
type rtxState struct {
	seq    *sequencer    // a track with layers; nil without
	marks  *resendMarks  // a track without layers; nil with
	budget rtxBudget     // under source.mu
	rtxSN  atomic.Uint32 // the RTX stream's next sequence number (low 16 bits): resends and padding probes (probe.go)
	rtt    atomic.Int64  // ns, from the subscriber's receiver reports; 0 unknown
}

func newRtxState(layers bool) *rtxState {
	rx := &rtxState{}
	rx.rtxSN.Store(uint32(uint16(time.Now().UnixNano())))
	if layers {
		rx.seq = &sequencer{}
	} else {
		rx.marks = &resendMarks{}
	}
	return rx
}

// resendMarks counts the resends of the recent packets of a track without
// layers, by sequence number (seqSlots of them). Used by the down track's
// RTCP reader only.
type resendMarks struct {
	e [seqSlots]resendMark
}

type resendMark struct {
	sn           uint16
	lastResendMs uint16 // ms modulo 2^16
	resends      uint8
}

// get returns the mark of sn, a fresh one if its slot held another
// packet's.
func (m *resendMarks) get(sn uint16) *resendMark {
	e := &m.e[int(sn)&(seqSlots-1)]
	if e.sn != sn {
		*e = resendMark{sn: sn}
	}
	return e
}

// rtxScratch is what a resend works in: taken from a pool for one RTCP
// packet, so that idle subscribers hold none.
type rtxScratch struct {
	ask []uint16 // packets to ask of a remote track's origin (missing)
	hdr rtp.Header
	pkt [bufSlotSize]byte     // a packet copied out of the buffer
	out [bufSlotSize + 2]byte // an RTX payload: the original sequence number, the payload
}

var rtxScratchPool = sync.Pool{New: func() any {
	sc := &rtxScratch{ask: make([]uint16, 0, 17*maxAsk)}
	sc.hdr.CSRC = make([]uint32, 0, 15)
	sc.hdr.Extensions = make([]rtp.Extension, 0, 16)
	return sc
}}

// bufferOf returns the packet buffer of the source's stream of layer (-1:
// the track without layers), nil if it has none.
func (s *source) bufferOf(layer int8) *packetBuffer {
	if layer < 0 {
		layer = 0
	}
	if int(layer) >= len(s.bufs) {
		return nil
	}
	return s.bufs[layer]
}

// handleNack resends what a NACK's FCI entry (pid, blp) asks for.
func (d *downTrack) handleNack(b *binding, sc *rtxScratch, pid, blp uint16) {
	d.resend(b, sc, pid)
	for i := uint16(0); i < 16; i++ {
		if blp&(1<<i) != 0 {
			d.resend(b, sc, pid+i+1)
		}
	}
}

// resend sends packet sn again to the subscriber, from the shared buffer.
// Called from the down track's RTCP reader only.
func (d *downTrack) resend(b *binding, sc *rtxScratch, sn uint16) {
	rx := d.rx
	d.stats.nacked.Add(1)
	nowMs := mono() / int64(time.Millisecond)
	gap := (time.Duration(rx.rtt.Load()) + minResendGap).Milliseconds()
	var (
		sent    sentPacket
		n       int
		resends *uint8
		last    *uint16
	)
	if rx.seq == nil {
		// A track without layers: the source's packet sn, if it has it.
		sent = sentPacket{outSN: sn, srcSN: sn, layer: -1, flags: seqValid | seqSourceTS}
		if buf := d.src.bufferOf(-1); buf != nil {
			n = buf.get(sn, sc.pkt[:])
		}
		if n == 0 {
			d.missing(sc, sn, nowMs)
			return
		}
	}
	// Look up and mark under the lock the fan-out holds while it writes
	// the sequencer and the counters the budget reads (the source's, or
	// its spread worker's).
	mu := d.lockSent()
	if rx.seq != nil {
		p, ok := rx.seq.get(sn)
		if !ok {
			mu.Unlock()
			d.missing(sc, sn, nowMs)
			return
		}
		sent = *p
		resends, last = &p.resends, &p.lastResendMs
	} else {
		m := rx.marks.get(sn)
		resends, last = &m.resends, &m.lastResendMs
	}
	if *resends >= maxResends || (*resends > 0 && int64(uint16(nowMs)-*last) < gap) {
		mu.Unlock()
		return // resent enough, or too recently
	}
	if !rx.budget.allow(nowMs, d.stats.bytes) {
		mu.Unlock()
		d.stats.rtxLimited.Add(1)
		return
	}
	*resends++
	*last = uint16(nowMs)
	mu.Unlock()
	if rx.seq != nil {
		buf := d.src.bufferOf(sent.layer)
		if buf == nil {
			return
		}
		if n = buf.get(sent.srcSN, sc.pkt[:]); n == 0 {
			d.stats.nackMissing.Add(1)
			return
		}
	}
	h := &sc.hdr
	hn, err := h.Unmarshal(sc.pkt[:n])
	if err != nil {
		return
	}
	payload := sc.pkt[hn:n]
	if h.Padding {
		pad := int(payload[len(payload)-1])
		if pad > len(payload) {
			return
		}
		payload = payload[:len(payload)-pad]
		h.Padding, h.PaddingSize = false, 0
	}
	if len(payload) == 0 {
		return // padding only: nothing worth resending
	}
	if sent.flags&seqIDs != 0 {
		if ids, ok := parsePicIDs(codecKindOf(d.src.info.Codec.MimeType), payload); ok {
			if ids.picAt != 0 {
				ids.putPic(payload, (ids.pic-sent.picOff)&ids.picMask())
			}
			if ids.tl0At != 0 {
				payload[ids.tl0At] = ids.tl0 - sent.tl0Off
			}
		}
	}
	h.Extension = false
	h.Extensions = h.Extensions[:0]
	if sent.flags&seqSourceTS == 0 {
		h.Timestamp = sent.outTS
	}
	if b.rtxSSRC != 0 {
		binary.BigEndian.PutUint16(sc.out[:2], sn)
		m := copy(sc.out[2:], payload)
		h.SSRC, h.PayloadType, h.SequenceNumber = b.rtxSSRC, b.rtxPT, uint16(rx.rtxSN.Add(1)-1)
		payload = sc.out[:2+m]
	} else {
		h.SSRC, h.PayloadType, h.SequenceNumber = b.ssrc, b.pt, sn
	}
	if _, err := b.ws.WriteRTP(h, payload); err == nil {
		d.stats.resent.Add(1)
		d.stats.resentBytes.Add(uint64(len(payload)))
	} else {
		d.src.ch.sfu.drops.mediaWriteFailed.Add(1)
	}
}

// handleRTCP reads the RTCP of a down track's subscriber: keyframe
// requests go to the source, NACKs are answered, receiver reports about
// the track are kept for its stats. It parses the packets' fixed fields
// and allocates nothing.
func (d *downTrack) handleRTCP(pkt []byte) {
	b := d.binding.Load()
	for rest := pkt; len(rest) >= 8; {
		if rest[0]>>6 != 2 {
			return
		}
		count := int(rest[0] & 0x1f)
		pt := rest[1]
		size := (int(binary.BigEndian.Uint16(rest[2:4])) + 1) * 4
		if size > len(rest) {
			return
		}
		body := rest[4:size]
		rest = rest[size:]
		switch {
		case pt == 205 && count == 1 && len(body) >= 8: // generic NACK
			if b == nil || d.rx == nil || binary.BigEndian.Uint32(body[4:8]) != b.ssrc {
				continue
			}
			d.stats.nacks.Add(1)
			sc := rtxScratchPool.Get().(*rtxScratch)
			sc.ask = sc.ask[:0]
			for fci := body[8:]; len(fci) >= 4; fci = fci[4:] {
				d.handleNack(b, sc, binary.BigEndian.Uint16(fci[0:2]), binary.BigEndian.Uint16(fci[2:4]))
			}
			if len(sc.ask) > 0 {
				d.stats.nackForwarded.Add(uint64(len(sc.ask)))
				d.src.kr.(RetransmitRequester).RequestRetransmit(sc.ask)
			}
			rtxScratchPool.Put(sc)
		case pt == 201 || pt == 200: // RR, SR: report blocks after the sender's part
			skip := 4 // RR: the sender's SSRC
			if pt == 200 {
				skip = 24 // SR: the sender's SSRC and sender info
			}
			if len(body) < skip {
				continue
			}
			blocks := body[skip:]
			for i := 0; i < count && len(blocks) >= 24; i, blocks = i+1, blocks[24:] {
				if b == nil || binary.BigEndian.Uint32(blocks[0:4]) != b.ssrc {
					continue
				}
				d.receiverReport(blocks[:24])
			}
		}
	}
	if hasKeyframeRequest(pkt) {
		d.stats.keyframeRequests.Add(1)
		d.requestKeyframe()
	}
}

// receiverReport keeps what one report block says of the track: loss,
// jitter and, from LSR and DLSR, the round-trip time.
func (d *downTrack) receiverReport(rb []byte) {
	st := &d.stats
	st.fractionLost.Store(uint32(rb[4]))
	lost := int32(uint32(rb[5])<<16|uint32(rb[6])<<8|uint32(rb[7])) << 8 >> 8 // 24-bit signed
	st.cumulativeLost.Store(int64(lost))
	st.jitter.Store(binary.BigEndian.Uint32(rb[12:16]))
	lsr, dlsr := binary.BigEndian.Uint32(rb[16:20]), binary.BigEndian.Uint32(rb[20:24])
	if lsr == 0 {
		return
	}
	if rtt := ntpMiddle(time.Now()) - lsr - dlsr; rtt < 1<<31 {
		ns := int64(rtt) * int64(time.Second) >> 16
		st.rtt.Store(ns)
		if d.rx != nil {
			d.rx.rtt.Store(ns)
		}
	}
}

// ntpMiddle returns the middle 32 bits of t's NTP timestamp, the unit of
// LSR and DLSR (1/65536 s).
func ntpMiddle(t time.Time) uint32 {
	secs := uint64(t.Unix()) + 2208988800
	frac := uint64(t.Nanosecond()) << 32 / uint64(time.Second)
	return uint32((secs<<32 | frac) >> 16)
}

// rtxGate is an interceptor factory registered three times. Outermost, it
// sends the stream's RTX packets (known by their SSRC) straight to the
// writer the inner gate kept for the stream: RTX then skips the
// interceptors in between, the sender reports above all, whose RTP
// timestamp would otherwise follow an old resent packet (pion's own NACK
// responder gets the same by its place in the chain). On the way the RTX
// packet carries the stream's own SSRC and an attribute saying so, so that
// what sits below the inner gate and knows streams only by their SSRC
// (pion's pacer) takes it; the innermost gate, nearest the transport,
// puts the RTX SSRC back.
type rtxGate struct {
	role  int
	inner *sync.Map // *interceptor.StreamInfo -> interceptor.RTPWriter
}

const (
	gateUnmask = iota // innermost: restores the RTX SSRC
	gateInner         // keeps each stream's writer toward the transport
	gateOuter         // outermost: routes RTX to the inner gate's writer
)

// rtxAttr marks an RTX packet that travels under its stream's SSRC.
type rtxAttr struct{}

// newRtxGates returns the innermost, inner and outer gate.
func newRtxGates() (unmask, inner, outer *rtxGate) {
	m := &sync.Map{}
	return &rtxGate{role: gateUnmask, inner: m}, &rtxGate{role: gateInner, inner: m}, &rtxGate{role: gateOuter, inner: m}
}

// NewInterceptor returns the gate itself: it keeps no state per peer
// connection.
func (g *rtxGate) NewInterceptor(string) (interceptor.Interceptor, error) {
	return gateInterceptor{g}, nil
}

type gateInterceptor struct{ g *rtxGate }

func (gi gateInterceptor) BindLocalStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	g := gi.g
	rtx := info.SSRCRetransmission
	switch {
	case g.role == gateInner:
		g.inner.Store(info, w)
		return w
	case rtx == 0:
		return w
	case g.role == gateUnmask:
		return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
			if _, ok := a[rtxAttr{}]; ok {
				h.SSRC = rtx
			}
			return w.Write(h, payload, a)
		})
	}
	v, ok := g.inner.Load(info)
	if !ok {
		return w
	}
	transport := v.(interceptor.RTPWriter)
	main := info.SSRC
	mark := interceptor.Attributes{rtxAttr{}: true} // read only, shared
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		if h.SSRC != rtx {
			return w.Write(h, payload, a)
		}
		h.SSRC = main
		if len(a) == 0 {
			a = mark
		} else {
			a = maps.Clone(a)
			a[rtxAttr{}] = true
		}
		return transport.Write(h, payload, a)
	})
}

func (gi gateInterceptor) UnbindLocalStream(info *interceptor.StreamInfo) {
	if gi.g.role == gateInner {
		gi.g.inner.Delete(info)
	}
}

func (gateInterceptor) BindRTCPReader(r interceptor.RTCPReader) interceptor.RTCPReader { return r }
func (gateInterceptor) BindRTCPWriter(w interceptor.RTCPWriter) interceptor.RTCPWriter { return w }
func (gateInterceptor) BindRemoteStream(_ *interceptor.StreamInfo, r interceptor.RTPReader) interceptor.RTPReader {
	return r
}
func (gateInterceptor) UnbindRemoteStream(*interceptor.StreamInfo) {}
func (gateInterceptor) Close() error                               { return nil }

// rtxPayloadType returns the payload type of the RTX codec whose apt is
// pt among a subscriber's codecs, 0 if it has none.
func rtxPayloadType(codecs []webrtc.RTPCodecParameters, pt webrtc.PayloadType) uint8 {
	apt := "apt=" + strconv.Itoa(int(pt))
	for _, c := range codecs {
		if strings.EqualFold(c.MimeType, webrtc.MimeTypeRTX) && c.SDPFmtpLine == apt {
			return uint8(c.PayloadType)
		}
	}
	return 0
}

// RetransmitRequester is an optional interface of the KeyframeRequester
// given to Channel.AddRemoteTrack (the relay implements it). The SFU
// answers a subscriber's NACK from the node's own buffer of the track; the
// packets the node never received (lost before it, on the hop) it asks
// of the track's origin with RequestRetransmit, once per packet within
// askAgain, and fans out what comes back (through TrackWriter.WriteRTP) to
// every subscriber of the node, as they all lack it. Only tracks without
// simulcast layers are asked for. RequestRetransmit is called from a
// subscriber's RTCP reader: it must not block, nor keep seqs.
type RetransmitRequester interface {
	RequestRetransmit(seqs []uint16)
}

const (
	// maxAsk bounds the packets asked of a track's origin for one NACK
	// entry of 17 packets, per RTCP packet: 4 entries.
	maxAsk = 4
	// askAgain is the least time before a missing packet is asked of the
	// origin again.
	askAgain = 100 * time.Millisecond
)

// missing handles a NACK for sn, which the subscriber was never sent: if
// the track is remote and has no layers, and sn is a packet the node never
// received but should have (behind the newest, within the buffer's
// window), it is added to the packets asked of the origin.
func (d *downTrack) missing(sc *rtxScratch, sn uint16, nowMs int64) {
	src := d.src
	if src.local != nil || d.sim != nil || len(sc.ask) >= cap(sc.ask) {
		return
	}
	if _, ok := src.kr.(RetransmitRequester); !ok {
		return
	}
	if buf := src.bufs[0]; buf != nil && buf.ask(sn, nowMs) {
		d.stats.nackMissing.Add(1)
		sc.ask = append(sc.ask, sn)
	}
}

// Retransmission budget: what a subscriber is resent, per window, is at
// most 1/rtxShare of what it was forwarded in the window before, plus
// rtxBurst. A subscriber on a lossy, congested link NACKs much; resending
// all of it would only add to the congestion (and to the pacer's queue)
// that lost it, and keep its bandwidth estimate from recovering (with a
// quarter plus 16 KB, a subscriber limited to 300 kbit/s never climbed
// back once the limit was lifted: TestCongestionSettlesAndRecovers).
const (
	rtxWindow = 500  // ms
	rtxShare  = 10   // a tenth
	rtxBurst  = 3000 // two packets
)

// rtxBudget counts a down track's retransmissions per window. Under
// source.mu.
type rtxBudget struct {
	start     int64  // ms
	mediaAt   uint64 // the track's forwarded bytes when the window began
	allowance uint64 // bytes that may be resent in this window
	used      uint64
}

// allow reports whether one more packet may be resent at nowMs (its size
// is not known yet: a packet counts as a full one). media is the bytes
// forwarded to the subscriber so far.
func (b *rtxBudget) allow(nowMs int64, media uint64) bool {
	if b.start == 0 || nowMs-b.start >= rtxWindow {
		b.allowance = (media-b.mediaAt)/rtxShare + rtxBurst
		b.start, b.mediaAt, b.used = nowMs, media, 0
	}
	if b.used+bufSlotSize > b.allowance {
		return false
	}
	b.used += bufSlotSize
	return true
}
