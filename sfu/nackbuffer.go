package sfu

// Retransmission state: one packet buffer per source stream (a track, or
// one simulcast layer), shared by all its subscribers, and per subscriber of
// a simulcast track a small sequencer that maps the sequence numbers it was
// sent to the packets in that buffer (a subscriber of a track without
// layers is sent the source's numbers: rtx.go's resendMarks). pion's own NACK responder would instead keep a copy of
// the last 1024 packets for every subscriber.

import (
	"sync"
)

const (
	// bufSlots is how many packets a source stream keeps for
	// retransmission, at most: about 2 s of 2.5 Mbit/s video. A power of
	// two.
	bufSlots = 512
	// bufBytes is the bytes a source stream keeps: bufSlots packets of
	// 1 KB. Larger packets make the window shorter.
	bufBytes = 512 << 10
	// bufSlotSize is the largest packet kept; larger ones are not.
	bufSlotSize = 1500
	// seqSlots is how many sent packets a subscriber remembers. A power of
	// two, at least bufSlots.
	seqSlots = 512
)

// packetBuffer keeps the recent packets of one source stream, as they
// arrived, by sequence number: the last bufSlots, or fewer when they do
// not fit in bufBytes. Packets go one after the other into a ring of
// bytes. The write path adds (one writer at a time, under source.mu);
// subscribers' RTCP readers copy packets out.
type packetBuffer struct {
	mu      sync.RWMutex
	data    []byte // bufBytes, made by the first add
	written uint64 // bytes written to data since the start, wraps included
	meta    [bufSlots]slotMeta
	highest uint16 // highest sequence number added
	started bool
	// asked records, per slot, a missing packet asked of a remote track's
	// origin: 1<<32 | its sequence number<<16 | ms of the ask, modulo 2^16.
	asked [bufSlots]uint64
}

type slotMeta struct {
	at uint64 // where it starts, as a count of bytes written
	sn uint16
	n  uint16 // packet length; 0: empty
}

// add keeps pkt, whose sequence number is sn. A packet older than the
// buffer's window (a late retransmission) is not kept: it would take the
// slot of a newer one.
func (b *packetBuffer) add(sn uint16, pkt []byte) {
	if len(pkt) > bufSlotSize || len(pkt) == 0 {
		return
	}
	b.mu.Lock()
	if b.data == nil {
		b.data = make([]byte, bufBytes)
	}
	switch d := int16(sn - b.highest); {
	case !b.started || d > 0:
		b.highest, b.started = sn, true
	case -int(d) >= bufSlots:
		b.mu.Unlock()
		return
	}
	if off := b.written % bufBytes; off+uint64(len(pkt)) > bufBytes {
		b.written += bufBytes - off // it does not fit before the end: start over
	}
	at := b.written
	copy(b.data[at%bufBytes:], pkt)
	b.written += uint64(len(pkt))
	b.meta[int(sn)&(bufSlots-1)] = slotMeta{at: at, sn: sn, n: uint16(len(pkt))}
	b.mu.Unlock()
}

// get copies packet sn into dst and returns its length, or 0 when the
// buffer does not have it (never had, or its bytes were written over).
func (b *packetBuffer) get(sn uint16, dst []byte) int {
	b.mu.RLock()
	defer b.mu.RUnlock()
	m := b.meta[int(sn)&(bufSlots-1)]
	if m.n == 0 || m.sn != sn || b.written-m.at > bufBytes {
		return 0
	}
	off := m.at % bufBytes
	return copy(dst, b.data[off:off+uint64(m.n)])
}

// ask reports whether sn should be asked of the track's origin at nowMs:
// it is behind the newest packet, within the window, not in the buffer,
// and was not asked within askAgain; if so it records the ask.
func (b *packetBuffer) ask(sn uint16, nowMs int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if d := int16(b.highest - sn); !b.started || d <= 0 || int(d) >= bufSlots {
		return false
	}
	i := int(sn) & (bufSlots - 1)
	if m := b.meta[i]; m.n != 0 && m.sn == sn && b.written-m.at <= bufBytes {
		return false // here after all
	}
	if a := b.asked[i]; a != 0 && uint16(a>>16) == sn && int64(uint16(nowMs)-uint16(a)) < askAgain.Milliseconds() {
		return false
	}
	b.asked[i] = 1<<32 | uint64(sn)<<16 | uint64(uint16(nowMs))
	return true
}

// sequencer remembers, for one subscriber, what each sequence number it
// was sent stands for: the source stream and its sequence number, the
// timestamp sent, the picture id offsets of a simulcast switch, and its
// resends. It is guarded by the source's mu: the write path pushes with it
// held, the subscriber's RTCP reader takes it to look up (plain stores
// cost the fan-out less than atomic ones, and NACKs are rare).
type sequencer struct {
	e [seqSlots]sentPacket
}

// sentPacket is a sequencer entry: 16 bytes.
type sentPacket struct {
	outSN, srcSN uint16
	outTS        uint32
	picOff       uint16
	tl0Off       uint8
	layer        int8 // -1: a track without layers
	flags        uint8
	resends      uint8  // how many times it was resent
	lastResendMs uint16 // when, last (ms modulo 2^16)
}

const (
	seqValid    = 1 << iota // the entry holds a packet
	seqIDs                  // picture ids were rewritten with the offsets
	seqSourceTS             // sent with the source's timestamp (outTS unset)
)

// push records that the subscriber was sent outSN, carrying packet srcSN
// of the stream of layer (-1 for a track without layers), with timestamp
// outTS and, when ids, picture ids moved by picOff and tl0Off. Called
// with source.mu held.
func (q *sequencer) push(outSN, srcSN uint16, outTS uint32, layer int8, ids bool, picOff uint16, tl0Off uint8) {
	flags := uint8(seqValid)
	if ids {
		flags |= seqIDs
	}
	q.e[int(outSN)&(seqSlots-1)] = sentPacket{outSN: outSN, srcSN: srcSN, outTS: outTS, layer: layer, flags: flags, picOff: picOff, tl0Off: tl0Off}
}

// get returns the entry of outSN, if the subscriber was sent it recently.
// Called with source.mu held.
func (q *sequencer) get(outSN uint16) (*sentPacket, bool) {
	p := &q.e[int(outSN)&(seqSlots-1)]
	if p.flags&seqValid == 0 || p.outSN != outSN {
		return nil, false
	}
	return p, true
}
