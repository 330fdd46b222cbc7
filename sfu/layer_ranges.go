package sfu

// Offsets for packets that come out of order. The forwarder numbers a
// layer's packets for a subscriber by offsets that move whenever it drops
// a frame (a temporal layer above what the subscriber gets) or sends
// padding in the subscriber's stream (a probe). A packet that arrives late,
// after such a move, needs the offsets of its own place in the layer's
// sequence, not the current ones: snRanges keeps them, per range of the
// layer's sequence numbers, as LiveKit's RangeMap does, in a fixed array
// (no allocation per packet). A late packet whose number falls between two
// ranges was of a dropped frame; one older than the oldest range is too old
// to place. frameLog keeps the decision for each recent frame, so that a
// late packet of a frame is dropped or forwarded as its frame was.

// snRangeSlots is how many closed ranges are kept: a range closes at each
// dropped run of frames (about one per four frames under the lowest
// temporal layer) and at each padding burst, so 32 cover a second or more.
const snRangeSlots = 32

// snRange is a range of a layer's sequence numbers, start to end
// inclusive, and the offsets its packets were (or are to be) numbered by.
type snRange struct {
	start, end    uint16
	snOff, picOff uint16
}

// snRanges is the offsets of the layer's sequence numbers since the switch
// to it: closed ranges (a ring, newest last) and the open range from
// openStart on, whose offsets are the subscriber's current ones (kept by
// the caller). Under source.mu.
type snRanges struct {
	r         [snRangeSlots]snRange
	head, n   int // r[head] is the oldest of n closed ranges
	openStart uint16
}

// reset starts over at a switch: every number from start on takes the
// current offsets.
func (m *snRanges) reset(start uint16) {
	m.head, m.n, m.openStart = 0, 0, start
}

// cut closes the open range before from with offsets snOff and picOff (the
// current ones, before the caller moves them) and opens the next at next:
// the numbers from..next-1 are left out (a dropped frame's), none when next
// is from (padding goes between from-1 and from). An empty open range is
// not kept. from is after the open range's start, or at it.
func (m *snRanges) cut(from, next, snOff, picOff uint16) {
	if int16(from-m.openStart) > 0 {
		i := (m.head + m.n) % snRangeSlots
		if m.n == snRangeSlots {
			m.head = (m.head + 1) % snRangeSlots // the oldest goes
		} else {
			m.n++
		}
		m.r[i] = snRange{start: m.openStart, end: from - 1, snOff: snOff, picOff: picOff}
	}
	m.openStart = next
}

// lookup returns the offsets of sequence number sn, older than the newest
// seen: snOff and picOff when it is in the open range; ok is false when sn
// falls in a range left out (of a dropped frame) or before the oldest kept.
func (m *snRanges) lookup(sn, snOff, picOff uint16) (uint16, uint16, bool) {
	if int16(sn-m.openStart) >= 0 {
		return snOff, picOff, true
	}
	for k := m.n - 1; k >= 0; k-- {
		r := &m.r[(m.head+k)%snRangeSlots]
		if int16(sn-r.start) >= 0 {
			if int16(r.end-sn) >= 0 {
				return r.snOff, r.picOff, true
			}
			return 0, 0, false // between r and the range after it: left out
		}
	}
	return 0, 0, false
}

// frameLogSlots is how many frames' decisions are kept.
const frameLogSlots = 16

// frameLog is the decision (forwarded or dropped) for each of the last
// frames of the layer seen, by timestamp. Under source.mu.
type frameLog struct {
	ts   [frameLogSlots]uint32
	drop [frameLogSlots]bool
	next int
	n    int
}

func (f *frameLog) reset() { f.next, f.n = 0, 0 }

func (f *frameLog) note(ts uint32, drop bool) {
	f.ts[f.next], f.drop[f.next] = ts, drop
	f.next = (f.next + 1) % frameLogSlots
	f.n = min(f.n+1, frameLogSlots)
}

// decided returns whether the frame of timestamp ts was dropped, if it was
// seen among the last ones.
func (f *frameLog) decided(ts uint32) (drop, ok bool) {
	for k := 1; k <= f.n; k++ {
		i := (f.next - k + frameLogSlots) % frameLogSlots
		if f.ts[i] == ts {
			return f.drop[i], true
		}
	}
	return false, false
}
