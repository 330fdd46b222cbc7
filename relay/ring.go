package relay

import (
	"encoding/binary"
	"sync"
)

// ring keeps the most recent RTP packets of one outgoing track, indexed by
// sequence number, so that the sending side of a hop can answer NACKs. Its
// memory is allocated once; storing and finding allocate nothing.
type ring struct {
	mu   sync.Mutex
	slot int      // bytes per slot
	buf  []byte   // len(seq) * slot bytes
	seq  []uint16 // sequence number held by each slot
	n    []int    // packet length in each slot; 0 = empty
}

func newRing(packets, slot int) *ring {
	return &ring{
		slot: slot,
		buf:  make([]byte, packets*slot),
		seq:  make([]uint16, packets),
		n:    make([]int, packets),
	}
}

// put stores a copy of an RTP packet. A packet larger than a slot, or one
// too short to carry a sequence number, is not kept.
func (r *ring) put(pkt []byte) {
	if len(r.seq) == 0 || len(pkt) < 12 || len(pkt) > r.slot {
		return
	}
	s := binary.BigEndian.Uint16(pkt[2:4])
	i := int(s) % len(r.seq)
	r.mu.Lock()
	copy(r.buf[i*r.slot:], pkt)
	r.seq[i], r.n[i] = s, len(pkt)
	r.mu.Unlock()
}

// get calls fn with the stored packet of sequence number s, if the ring
// still holds it, and reports whether it did. fn runs under the ring's lock
// and must not keep pkt.
func (r *ring) get(s uint16, fn func(pkt []byte)) bool {
	if len(r.seq) == 0 {
		return false
	}
	i := int(s) % len(r.seq)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n[i] == 0 || r.seq[i] != s {
		return false
	}
	fn(r.buf[i*r.slot : i*r.slot+r.n[i]])
	return true
}
