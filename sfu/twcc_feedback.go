package sfu

// The transport-cc feedback (RTCP transport-layer feedback, FMT 15, of
// draft-holmer-rmcat-transport-wide-cc-extensions-01), read in place:
// parseTWCC checks a packet and twccIter walks its packet statuses with
// their arrival times. Neither allocates.

import "encoding/binary"

// The packet statuses of a feedback.
const (
	twccNotReceived = 0
	twccSmallDelta  = 1 // received, a 1-byte delta (0 to 63.75 ms)
	twccLargeDelta  = 2 // received, a 2-byte signed delta
)

// twccFeedback is a checked transport-cc feedback packet.
type twccFeedback struct {
	base   uint16 // the first packet's transport-wide sequence number
	count  int    // the packet statuses it holds
	refUs  int64  // reference time, µs (24 bits of 64 ms; wraps)
	fbSeq  uint8  // the feedback's own count
	chunks []byte // the packet chunks
	deltas []byte // the receive deltas, and padding after them
}

// parseTWCC checks pkt, one RTCP packet (its common header first), as a
// transport-cc feedback: every status its chunks give has its delta.
func parseTWCC(pkt []byte) (twccFeedback, bool) {
	if len(pkt) < 20 || pkt[0]>>6 != 2 || pkt[0]&0x1f != 15 || pkt[1] != 205 {
		return twccFeedback{}, false
	}
	size := (int(binary.BigEndian.Uint16(pkt[2:4])) + 1) * 4
	if size < 20 || size > len(pkt) {
		return twccFeedback{}, false
	}
	pkt = pkt[:size]
	ref := int64(pkt[16])<<16 | int64(pkt[17])<<8 | int64(pkt[18])
	f := twccFeedback{
		base:  binary.BigEndian.Uint16(pkt[12:14]),
		count: int(binary.BigEndian.Uint16(pkt[14:16])),
		refUs: ref * 64_000,
		fbSeq: pkt[19],
	}
	// Walk the chunks until they cover count statuses, adding up the
	// deltas' bytes.
	body := pkt[20:]
	covered, deltaBytes, off := 0, 0, 0
	for covered < f.count {
		if off+2 > len(body) {
			return twccFeedback{}, false
		}
		c := binary.BigEndian.Uint16(body[off:])
		off += 2
		n, st := chunkLen(c)
		if n == 0 && c&0x8000 == 0 {
			continue // an empty run
		}
		for i := 0; i < n && covered < f.count; i++ {
			s := st
			if s < 0 {
				s = chunkSymbol(c, i)
			}
			switch s {
			case twccSmallDelta:
				deltaBytes++
			case twccLargeDelta:
				deltaBytes += 2
			case twccNotReceived:
			default:
				return twccFeedback{}, false // reserved
			}
			covered++
		}
	}
	if off+deltaBytes > len(body) {
		return twccFeedback{}, false
	}
	f.chunks, f.deltas = body[:off], body[off:]
	return f, true
}

// chunkLen returns how many statuses chunk c holds, and their status when
// it is a run (-1 for a status vector).
func chunkLen(c uint16) (int, int) {
	switch {
	case c&0x8000 == 0: // run length: status in 2 bits, length in 13
		return int(c & 0x1fff), int(c>>13) & 3
	case c&0x4000 == 0: // vector of 14 1-bit statuses
		return 14, -1
	default: // vector of 7 2-bit statuses
		return 7, -1
	}
}

// chunkSymbol returns status i of the status vector chunk c.
func chunkSymbol(c uint16, i int) int {
	if c&0x4000 == 0 {
		return int(c>>(13-i)) & 1
	}
	return int(c>>(12-2*i)) & 3
}

// twccIter walks a checked feedback's statuses in order.
type twccIter struct {
	f       *twccFeedback
	i       int // statuses given
	off     int // next chunk
	c       uint16
	left    int // statuses left in c
	pos     int // of the next one in c
	run     int // c's status when a run, else -1
	doff    int // next delta
	arrival int64
}

func (f *twccFeedback) iter() twccIter { return twccIter{f: f, arrival: f.refUs} }

// next returns the next packet's sequence number, whether it was received
// and then when (µs, in the feedback's reference time); ok is false after
// the last.
func (it *twccIter) next() (seq uint16, received bool, arrivalUs int64, ok bool) {
	f := it.f
	for it.left == 0 {
		if it.i >= f.count || it.off+2 > len(f.chunks) {
			return 0, false, 0, false
		}
		it.c = binary.BigEndian.Uint16(f.chunks[it.off:])
		it.off += 2
		it.left, it.run = chunkLen(it.c)
		it.pos = 0
	}
	if it.i >= f.count {
		return 0, false, 0, false
	}
	s := it.run
	if s < 0 {
		s = chunkSymbol(it.c, it.pos)
	}
	it.pos++
	it.left--
	seq = f.base + uint16(it.i)
	it.i++
	switch s {
	case twccSmallDelta:
		it.arrival += int64(f.deltas[it.doff]) * 250
		it.doff++
	case twccLargeDelta:
		it.arrival += int64(int16(binary.BigEndian.Uint16(f.deltas[it.doff:]))) * 250
		it.doff += 2
	default:
		return seq, false, 0, true
	}
	return seq, true, it.arrival, true
}
