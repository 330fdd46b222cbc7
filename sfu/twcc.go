package sfu

// Transport-wide congestion control, the sender's side: the interceptor
// that stamps the transport-wide sequence number and abs-send-time on each
// packet a connection sends, the record of what was sent, and the reading
// of the subscriber's transport-cc feedback (twcc_feedback.go parses it,
// bwe.go estimates from it). One per peer connection; nothing on the
// per-packet path allocates.

import (
	"encoding/binary"
	"sync"
	"sync/atomic"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
)

// The ring of what a connection sent holds sentRingMin packets (a power
// of two) at first: at 1000 packets a second, half a second, well beyond
// the 50 to 100 ms between two feedbacks of a browser plus a round trip.
// When a feedback comes for packets more than half the ring behind what
// was sent last, the ring doubles (growRing), up to sentRingSize: a
// second of 2000 packets per second. A subscriber at a few Mbit/s keeps 4
// KB instead of 16.
const (
	sentRingMin  = 512
	sentRingSize = 2048
)

// twccSent is what the ring keeps of a packet sent: its transport-wide
// sequence number (to tell a stale slot), when (µs on the mono clock,
// modulo 2^32) and its size in bytes.
type twccSent struct {
	atUs uint32
	seq  uint16
	size uint16
}

// twccFactory makes one twccSender per peer connection and hands it to
// the connection through reg (nil: congestion control off, abs-send-time
// only).
type twccFactory struct {
	reg *ccRegistry
}

// NewInterceptor returns the peer connection's sender.
func (f *twccFactory) NewInterceptor(id string) (interceptor.Interceptor, error) {
	t := &twccSender{cc: f.reg != nil, id: id, reg: f.reg}
	if f.reg != nil {
		t.bwe = newBWE()
		f.reg.m.Store(id, t)
	}
	return t, nil
}

// Close forgets the sender in the registry, should the connection never
// have taken it (a Join that failed on the way).
func (t *twccSender) Close() error {
	if t.reg != nil {
		t.reg.m.CompareAndDelete(t.id, t)
	}
	return nil
}

// twccSender is a peer connection's transport-wide sequence numbering and
// its send-side estimator.
type twccSender struct {
	interceptor.NoOp
	cc  bool // stamp transport-wide sequence numbers and estimate
	id  string
	reg *ccRegistry

	// mu orders the stamping with the send: a sequence number is taken
	// and the packet written under it, so that the numbers go out in
	// order. The buffers hold the extensions' bytes while the packet is
	// marshalled below.
	mu     sync.Mutex
	next   uint16
	ring   []twccSent // made by the first stream bound
	tccBuf [2]byte
	astBuf [3]byte

	bwe      *bwe // under mu; nil when cc is off
	feedback atomic.Bool
}

// BindLocalStream stamps the stream's packets with the extensions the
// subscriber negotiated for it.
func (t *twccSender) BindLocalStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	var tcc, ast uint8
	for _, e := range info.RTPHeaderExtensions {
		switch e.URI {
		case sdp.TransportCCURI:
			if t.cc {
				tcc = uint8(e.ID)
			}
		case sdp.ABSSendTimeURI:
			ast = uint8(e.ID)
		}
	}
	if tcc == 0 && ast == 0 {
		return w
	}
	if tcc != 0 {
		t.mu.Lock()
		if t.ring == nil {
			t.ring = make([]twccSent, sentRingMin)
		}
		t.mu.Unlock()
	}
	return &stampWriter{t: t, next: w, tcc: tcc, ast: ast}
}

// BindRTCPReader reads the transport-cc feedback in the RTCP the
// subscriber sends.
func (t *twccSender) BindRTCPReader(r interceptor.RTCPReader) interceptor.RTCPReader {
	if !t.cc {
		return r
	}
	// The feedback is taken out of what goes on up the chain: nothing there
	// needs it, and pion's report interceptor would unmarshal it (an
	// allocation per packet it reports on). A packet of feedback only is
	// not passed on at all: the next one is read.
	return interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		for {
			n, attr, err := r.Read(b, a)
			if err != nil {
				return n, attr, err
			}
			if n = t.onRTCP(b[:n], mono()); n > 0 {
				return n, attr, nil
			}
		}
	})
}

// stampWriter is a stream's writer below the stamping.
type stampWriter struct {
	t        *twccSender
	next     interceptor.RTPWriter
	tcc, ast uint8 // extension ids; 0: not negotiated
}

// Write sets the extensions on h, notes the packet sent and writes it.
// h is given back as it came: the fan-out hands the same header to every
// subscriber.
func (s *stampWriter) Write(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
	t := s.t
	ext, prof, n0 := h.Extension, h.ExtensionProfile, len(h.Extensions)
	t.mu.Lock()
	t.stampLocked(h, s.tcc, s.ast, len(payload), &t.tccBuf, &t.astBuf)
	n, err := s.next.Write(h, payload, a)
	t.mu.Unlock()
	h.Extension, h.ExtensionProfile, h.Extensions = ext, prof, h.Extensions[:n0]
	return n, err
}

// stampLocked sets abs-send-time (ast) and the next transport-wide
// sequence number (tcc) on h, their bytes held in the buffers given until
// h is marshalled, and notes the packet in the ring. Ids of 0 are not
// negotiated. Under mu; the direct path (direct.go) stamps through it
// too.
func (t *twccSender) stampLocked(h *rtp.Header, tcc, ast uint8, payloadLen int, tccBuf *[2]byte, astBuf *[3]byte) {
	now := mono()
	if ast != 0 {
		// abs-send-time: seconds in 6.18 fixed point, 24 bits.
		v := uint64(now) << 18 / 1e9
		*astBuf = [3]byte{byte(v >> 16), byte(v >> 8), byte(v)}
		_ = h.SetExtension(ast, astBuf[:])
	}
	if tcc != 0 && t.ring != nil {
		seq := t.next
		t.next++
		binary.BigEndian.PutUint16(tccBuf[:], seq)
		if h.SetExtension(tcc, tccBuf[:]) == nil {
			size := h.MarshalSize() + payloadLen
			t.ring[int(seq)&(len(t.ring)-1)] = twccSent{atUs: uint32(now / 1e3), seq: seq, size: uint16(min(size, 0xffff))}
		}
	}
}

// onRTCP feeds the transport-cc feedback of a compound RTCP packet to the
// estimator, and moves the other packets of the compound to the front of
// b: it returns their length. What does not parse is left as it is.
func (t *twccSender) onRTCP(b []byte, now int64) int {
	out, rest := 0, b
	for len(rest) >= 4 {
		if rest[0]>>6 != 2 {
			break
		}
		size := (int(binary.BigEndian.Uint16(rest[2:4])) + 1) * 4
		if size > len(rest) {
			break
		}
		if rest[1] == 205 && rest[0]&0x1f == 15 {
			if fb, ok := parseTWCC(rest[:size]); ok {
				t.feedback.Store(true)
				t.mu.Lock()
				if t.ring != nil {
					t.growRing(fb.base)
					t.bwe.onFeedback(&fb, t.ring, now)
				}
				t.mu.Unlock()
			}
		} else {
			out += copy(b[out:], rest[:size])
		}
		rest = rest[size:]
	}
	return out + copy(b[out:], rest)
}

// growRing doubles the ring of what was sent, up to sentRingSize, while
// base, the first packet a feedback reports on, is more than half of it
// behind the next to be sent: the feedback comes late for the ring's
// size (a high packet rate, a long round trip). The packets it still
// holds are kept. Under mu.
func (t *twccSender) growRing(base uint16) {
	behind := int(t.next - base)
	n := len(t.ring)
	for n < sentRingSize && behind > n/2 {
		n *= 2
	}
	if n == len(t.ring) {
		return
	}
	ring := make([]twccSent, n)
	for _, e := range t.ring {
		if e.size != 0 {
			ring[int(e.seq)&(n-1)] = e
		}
	}
	t.ring = ring
}

// estimate returns the delay and loss based estimate, bits per second,
// and whether any transport-cc feedback came.
func (t *twccSender) estimate(now int64) (int64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.bwe.target(now), t.feedback.Load()
}
