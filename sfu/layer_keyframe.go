package sfu

// What the simulcast forwarder reads in a video payload: whether a packet
// starts a keyframe (a layer switch may only happen there), the VP8 and
// VP9 picture ids and TL0PICIDX, which it rewrites so that a subscriber sees
// one continuous stream across switches, and the temporal layer index
// (TID) and layer sync bit of VP8 (Y) and VP9 (U, the switching up point),
// by which it drops temporal layers. Every function here reads the payload
// in place and allocates nothing.

import "strings"

// codecKind is a video codec as far as payload parsing goes.
type codecKind uint8

const (
	codecOther codecKind = iota
	codecVP8
	codecVP9
	codecH264
	codecH265
	codecAV1
)

func codecKindOf(mimeType string) codecKind {
	_, name, ok := strings.Cut(mimeType, "/")
	if !ok || !strings.HasPrefix(strings.ToLower(mimeType), "video/") {
		return codecOther
	}
	switch strings.ToUpper(name) {
	case "VP8":
		return codecVP8
	case "VP9":
		return codecVP9
	case "H264":
		return codecH264
	case "H265":
		return codecH265
	case "AV1":
		return codecAV1
	}
	return codecOther
}

// isKeyframeStart reports whether payload is the first packet of a
// keyframe (for H.264 and H.265, of the parameter sets or the IDR picture
// that start one). For a codec it does not know it reports false: such a
// layer is never switched to once another is forwarded.
func isKeyframeStart(k codecKind, payload []byte) bool {
	switch k {
	case codecVP8:
		return vp8KeyframeStart(payload)
	case codecVP9:
		return vp9KeyframeStart(payload)
	case codecH264:
		return h264KeyframeStart(payload)
	case codecH265:
		return h265KeyframeStart(payload)
	case codecAV1:
		// RFC 9066-style aggregation header Z|Y|W W|N|-|-|-: N is set on the
		// first packet of a coded video sequence, which starts with a
		// keyframe.
		return len(payload) > 0 && payload[0]&0x08 != 0
	}
	return false
}

// vp8KeyframeStart: RFC 7741 payload descriptor with S set and partition
// index 0, then a VP8 payload header whose P bit (inverse key frame) is 0.
func vp8KeyframeStart(p []byte) bool {
	d, ok := parseVP8(p)
	if !ok || !d.start || d.hdrLen >= len(p) {
		return false
	}
	return p[d.hdrLen]&0x01 == 0
}

// vp9KeyframeStart: the descriptor's B (start of frame) set, P (inter
// predicted) clear, and the spatial layer, if any, 0.
func vp9KeyframeStart(p []byte) bool {
	d, ok := parseVP9(p)
	if !ok || !d.start || d.interPredicted {
		return false
	}
	return d.sid == 0
}

// h264KeyframeStart: a single NAL unit, a STAP-A holding one, or the
// first fragment of an FU-A, that is an SPS (7) or an IDR slice (5). The
// browsers send the SPS and PPS in front of every IDR.
func h264KeyframeStart(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	switch t := p[0] & 0x1f; t {
	case 5, 7:
		return true
	case 24: // STAP-A: 16-bit sizes, then NAL units
		for i := 1; i+2 < len(p); {
			size := int(p[i])<<8 | int(p[i+1])
			i += 2
			if size == 0 || i+size > len(p) {
				return false
			}
			if nt := p[i] & 0x1f; nt == 5 || nt == 7 {
				return true
			}
			i += size
		}
	case 28: // FU-A: indicator, then header S|E|R|type
		return len(p) > 1 && p[1]&0x80 != 0 && (p[1]&0x1f == 5 || p[1]&0x1f == 7)
	}
	return false
}

// h265KeyframeStart: a NAL unit, an aggregation packet's first one, or
// the first fragment of a fragmentation unit, that is a VPS (32), an SPS
// (33) or an IRAP picture (16 to 21).
func h265KeyframeStart(p []byte) bool {
	if len(p) < 2 {
		return false
	}
	key := func(t byte) bool { return t == 32 || t == 33 || (t >= 16 && t <= 21) }
	switch t := (p[0] >> 1) & 0x3f; t {
	case 48: // AP: 2-byte header, then 16-bit size and NAL unit
		return len(p) > 4 && key((p[4]>>1)&0x3f)
	case 49: // FU: 2-byte header, then S|E|type
		return len(p) > 2 && p[2]&0x80 != 0 && key(p[2]&0x3f)
	default:
		return key(t)
	}
}

// picIDs are the picture id and TL0PICIDX of a VP8 or VP9 descriptor, with
// their offsets in the payload (0: absent; a picture id at picAt is 7 bits
// when !wide).
type picIDs struct {
	pic    uint16
	picAt  int
	wide   bool
	tl0    uint8
	tl0At  int
	hdrLen int // length of the descriptor (VP8: where the VP8 header starts)

	start          bool // S (VP8, with partition 0) or B (VP9)
	interPredicted bool // VP9 P
	sid            uint8

	// The temporal layer: TID and, for VP8, the layer sync bit Y (when
	// the descriptor has its T bit), for VP9 the switching up point U (when
	// it has layer indices, its L bit). A VP9 TID over maxTemporal-1 is
	// not read (hasTID false): Chromium sends three temporal layers at
	// most.
	hasTID bool
	tid    uint8
	sync   bool
}

// readPictureID reads the picture id at p[i], 7 bits or, with the M bit,
// 15 (the same field in VP8 and VP9 descriptors), and returns where the
// descriptor goes on.
func (d *picIDs) readPictureID(p []byte, i int) (int, bool) {
	if i >= len(p) {
		return i, false
	}
	d.picAt = i
	if p[i]&0x80 == 0 {
		d.pic = uint16(p[i] & 0x7f)
		return i + 1, true
	}
	if i+1 >= len(p) {
		return i, false
	}
	d.wide = true
	d.pic = uint16(p[i]&0x7f)<<8 | uint16(p[i+1])
	return i + 2, true
}

// parseVP8 reads an RFC 7741 payload descriptor.
func parseVP8(p []byte) (d picIDs, ok bool) {
	if len(p) < 1 {
		return d, false
	}
	d.start = p[0]&0x10 != 0 && p[0]&0x07 == 0
	i := 1
	if p[0]&0x80 != 0 { // X
		if len(p) < 2 {
			return d, false
		}
		x := p[1]
		i = 2
		if x&0x80 != 0 { // I
			if i, ok = d.readPictureID(p, i); !ok {
				return d, false
			}
		}
		if x&0x40 != 0 { // L
			if i >= len(p) {
				return d, false
			}
			d.tl0At = i
			d.tl0 = p[i]
			i++
		}
		if x&0x30 != 0 { // T or K: one byte, TID|Y|KEYIDX
			if i >= len(p) {
				return d, false
			}
			if x&0x20 != 0 {
				d.hasTID, d.tid, d.sync = true, p[i]>>6, p[i]&0x20 != 0
			}
			i++
		}
	}
	if i > len(p) {
		return d, false
	}
	d.hdrLen = i
	return d, true
}

// parseVP9 reads the VP9 payload descriptor (RFC 9628) up to the
// TL0PICIDX.
func parseVP9(p []byte) (d picIDs, ok bool) {
	if len(p) < 1 {
		return d, false
	}
	b0 := p[0]
	d.interPredicted = b0&0x40 != 0
	d.start = b0&0x08 != 0
	flexible := b0&0x10 != 0
	i := 1
	if b0&0x80 != 0 { // I
		if i, ok = d.readPictureID(p, i); !ok {
			return d, false
		}
	}
	if b0&0x20 != 0 { // L: TID|U|SID|D
		if i >= len(p) {
			return d, false
		}
		d.sid = (p[i] >> 1) & 0x07
		if tid := p[i] >> 5; tid < maxTemporal {
			d.hasTID, d.tid, d.sync = true, tid, p[i]&0x10 != 0
		}
		i++
		if !flexible {
			if i >= len(p) {
				return d, false
			}
			d.tl0At = i
			d.tl0 = p[i]
			i++
		}
	}
	d.hdrLen = i
	return d, true
}

// parseAV1 reads the temporal layer of an AV1 payload (the AV1 RTP
// payload format): the aggregation header Z|Y|W|N, then OBU elements, each
// with a LEB128 length but the last when W is set; the first is the rest
// of an OBU when Z is set, else each starts with its OBU header, and an
// OBU header with its extension flag is followed by the extension header
// temporal_id|spatial_id. The TID is the first extension header's; a
// packet that holds only the rest of an OBU has none (the write path gives
// it its frame's: simSource.tidOf). AV1 has no layer sync bit.
func parseAV1(p []byte) (d picIDs, ok bool) {
	if len(p) < 1 {
		return d, false
	}
	z, w := p[0]&0x80 != 0, int(p[0]>>4)&0x03
	d.hdrLen = 1
	for e, i := 0, 1; i < len(p); e++ {
		last := w != 0 && e == w-1
		n := len(p) - i
		if !last {
			v, k := readLEB128(p[i:])
			if k == 0 || v > uint64(len(p)-i-k) {
				return d, true
			}
			i += k
			n = int(v)
		}
		if (e > 0 || !z) && n > 1 && p[i]&0x04 != 0 { // an OBU header with its extension flag
			if tid := p[i+1] >> 5; tid < maxTemporal {
				d.hasTID, d.tid = true, tid
			}
			return d, true
		}
		i += n
		if last {
			break
		}
	}
	return d, true
}

// readLEB128 reads an unsigned LEB128 number of at most 8 bytes; k is
// how many bytes it took (0: none ends in p).
func readLEB128(p []byte) (v uint64, k int) {
	for i := 0; i < len(p) && i < 8; i++ {
		v |= uint64(p[i]&0x7f) << (7 * i)
		if p[i]&0x80 == 0 {
			return v, i + 1
		}
	}
	return 0, 0
}

// parsePicIDs reads the ids of a VP8 or VP9 payload, and the temporal
// layer of an AV1 one; ok is false for other codecs and for payloads too
// short to hold their descriptor.
func parsePicIDs(k codecKind, p []byte) (picIDs, bool) {
	switch k {
	case codecVP8:
		return parseVP8(p)
	case codecVP9:
		return parseVP9(p)
	case codecAV1:
		return parseAV1(p)
	}
	return picIDs{}, false
}

// putPic writes picture id v at d.picAt in p, in the width it has there.
func (d *picIDs) putPic(p []byte, v uint16) {
	if d.wide {
		p[d.picAt] = 0x80 | byte(v>>8)&0x7f
		p[d.picAt+1] = byte(v)
		return
	}
	p[d.picAt] = byte(v) & 0x7f
}

// picMask is the modulus of the picture id as sent (7 or 15 bits), less one.
func (d *picIDs) picMask() uint16 {
	if d.wide {
		return 0x7fff
	}
	return 0x7f
}
