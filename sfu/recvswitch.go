package sfu

// The direct receive path of what publishers send (RTP). pion reads a
// publisher's RTP through a chain of goroutines: its UDP mux's reader,
// ICE's candidate loop, webrtc's internal mux, the SRTP session's read
// loop, and the pump (upstream.go) reading the track: four hand-offs per
// datagram. Once a connection is on the direct receive path (the mux
// socket's reader, directrecv.go, decrypts what comes from its remote
// address with the connection's own SRTP context) its streams are
// switched one by one: the mux reader decrypts a switched stream's
// packets and puts them in the stream's queue, and the pump's read takes
// them from there instead of pion's SRTP read stream: one hand-off.
//
// pion's receive interceptors keep working: the switch is an interceptor,
// the innermost (mediaengine.go), whose reader the others wrap; the pump
// still reads the track through all of them (NACK generation, receiver
// reports, transport-cc feedback, RTX repair in TrackRemote), so they see
// every packet either way.
//
// The switch. A stream is switched once pion has set it up (OnTrack
// fired and its pump reads it; a simulcast layer's rid is known) and the
// connection is on the direct receive path. It happens on the pump's
// goroutine, in the switch's read, right after a packet that pion
// decrypted: the SRTP rollover counter of the packets to come is that
// packet's (the switch follows every packet pion decrypted and extends its
// sequence number), handed to the connection's SRTP context for the
// stream's SSRC, and only then does the mux reader take the stream. The
// switch waits for a sequence number at least rocGuard away from a wrap
// (the last one: a stream's first cycle has no earlier one), so that
// neither a late packet of the previous cycle nor one of the next can
// come first with a counter other than the one handed over. A stream
// whose first packet seen is numbered below rocEdge stays on pion's path:
// pion itself reads the first packet of a stream the SDP did not declare
// (a simulcast layer), and had it come before a wrap, pion's counter
// would be one more than the one the switch followed. The
// pump then reads pion's stream for switchDrain more (the packets pion
// had already taken), and from then on the stream's queue: no packet is
// read twice nor by two goroutines, and a packet pion delivers later than
// that is lost (a NACK gets it resent). RTX repair streams (their own
// SSRC) stay on pion's path, as does every stream of a connection not on
// the direct receive path; a connection that leaves it (its selected pair
// no longer on the mux) has its streams switched back to pion's (the
// pump drains the queue first).
//
// The queue is a ring of reused slots, one producer (the mux reader) and
// one consumer (the pump): the reader never blocks; a full queue drops
// the packet and counts it (Drops.UpstreamQueueFull; NACKs get it
// resent). The pump, when the ring is empty, waits on a channel the
// reader signals only when the pump waits.

import (
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
)

const (
	// recvSlotSize is the largest RTP packet a queue holds: what the
	// pump reads into (upstream.go).
	recvSlotSize = 1500
	// recvSlotsVideo and recvSlotsAudio are a queue's slots: a keyframe's
	// burst at a few Mbit/s while the pump is busy (384 KB), or a second of
	// audio.
	recvSlotsVideo = 256
	recvSlotsAudio = 64
	// rocGuard: a stream switches on a sequence number at least this far
	// from a wrap (below).
	rocGuard = 1024
	// rocEdge: a stream whose first packet seen is numbered below this
	// may have wrapped just before, and stays on pion's path
	// (recvStream.edge): one stream in a thousand.
	rocEdge = 64
	// switchDrain is how long the pump still reads pion's stream after
	// the switch: what pion's goroutines had taken before the mux reader
	// took the stream.
	switchDrain = 20 * time.Millisecond
)

// recvSwitchFactory makes one recvSwitch per peer connection and hands it
// to the connection by the peer connection's id (as srFactory).
type recvSwitchFactory struct {
	byPC  pcMap[*upRecv]
	stats *sendState
	drops *atomic.Uint64
}

func (f *recvSwitchFactory) take(id string) *upRecv {
	if f == nil {
		return nil
	}
	return f.byPC.take(id)
}

// NewInterceptor returns the peer connection's switch.
func (f *recvSwitchFactory) NewInterceptor(id string) (interceptor.Interceptor, error) {
	u := &upRecv{stats: f.stats, drops: f.drops}
	f.byPC.put(id, u)
	return &recvSwitch{u: u, f: f, id: id}, nil
}

// recvSwitch is the interceptor: it wraps each remote stream's reader.
type recvSwitch struct {
	interceptor.NoOp
	u  *upRecv
	f  *recvSwitchFactory
	id string
}

func (r *recvSwitch) BindRemoteStream(info *interceptor.StreamInfo, rd interceptor.RTPReader) interceptor.RTPReader {
	return r.u.bind(info, rd)
}

func (r *recvSwitch) UnbindRemoteStream(info *interceptor.StreamInfo) { r.u.unbind(info) }

// Close ends every stream's queue: the peer connection closed.
func (r *recvSwitch) Close() error {
	r.f.byPC.forget(r.id, r.u) // a connection that never took it
	r.u.close()
	return nil
}

// upRecv is a connection's switch: its remote streams, and the hook the
// mux reader asks about each RTP packet from the connection's address.
type upRecv struct {
	stats *sendState
	drops *atomic.Uint64

	// taken are the switched streams: the mux reader's lookup, without a
	// lock (a connection has a few).
	taken atomic.Pointer[[]*recvStream]

	mu      sync.Mutex
	streams []*recvStream
	closed  bool
	// setROC sets the rollover counter of the connection's SRTP context
	// for an SSRC, before the mux reader takes it (false: no context);
	// nil while the connection is not on the direct receive path.
	setROC func(ssrc, roc uint32) bool
}

var _ upstreamHook = (*upRecv)(nil)

// takesSSRC reports whether the mux reader takes the RTP packets of ssrc
// (it then hands them, decrypted, to onRTP).
func (u *upRecv) takesSSRC(ssrc uint32) bool { return u.lookup(ssrc) != nil }

// onRTP queues a decrypted RTP packet for its stream's pump, or drops it
// (the queue is full, or the stream left the direct path meanwhile).
// Called by the mux reader only; it never blocks and allocates nothing.
func (u *upRecv) onRTP(h *rtp.Header, pkt []byte) {
	if s := u.lookup(h.SSRC); s != nil && s.q.push(pkt) {
		u.stats.recvPackets.Add(1)
		return
	}
	u.drops.Add(1)
}

func (u *upRecv) lookup(ssrc uint32) *recvStream {
	if p := u.taken.Load(); p != nil {
		for _, s := range *p {
			if s.ssrc == ssrc {
				return s
			}
		}
	}
	return nil
}

// direct puts the connection on the direct receive path (setROC not nil)
// or takes it off: its pumped streams switch at their next packet, or go
// back to pion's read stream.
func (u *upRecv) direct(setROC func(ssrc, roc uint32) bool) {
	if u == nil {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return
	}
	u.setROC = setROC
	for _, s := range u.streams {
		if setROC != nil {
			s.armed.Store(s.pumped.Load() != nil && !u.isTaken(s))
			continue
		}
		s.armed.Store(false)
		if u.dropLocked(s) {
			s.q.back()
		}
	}
}

// pumped is called by a stream's pump before it first reads: the stream
// may switch. deadline is its track's SetReadDeadline.
func (u *upRecv) pumped(ssrc uint32, deadline func(time.Time) error) {
	if u == nil {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, s := range u.streams {
		if s.ssrc == ssrc {
			s.pumped.Store(&deadline)
			s.armed.Store(u.setROC != nil && !u.closed)
		}
	}
}

func (u *upRecv) bind(info *interceptor.StreamInfo, rd interceptor.RTPReader) interceptor.RTPReader {
	slots := recvSlotsVideo
	if strings.HasPrefix(strings.ToLower(info.MimeType), "audio/") {
		slots = recvSlotsAudio
	}
	s := &recvStream{u: u, info: info, ssrc: info.SSRC, next: rd, q: newRecvQueue(slots)}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		s.q.close()
	}
	u.streams = append(u.streams, s)
	return s
}

func (u *upRecv) unbind(info *interceptor.StreamInfo) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for i, s := range u.streams {
		if s.info == info {
			u.dropLocked(s)
			s.q.close()
			u.streams = append(u.streams[:i], u.streams[i+1:]...)
			return
		}
	}
}

func (u *upRecv) close() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.closed = true
	u.taken.Store(nil)
	for _, s := range u.streams {
		s.q.close()
	}
	u.streams = nil
}

func (u *upRecv) isTaken(s *recvStream) bool {
	if p := u.taken.Load(); p != nil {
		for _, t := range *p {
			if t == s {
				return true
			}
		}
	}
	return false
}

// addLocked has the mux reader take s.
func (u *upRecv) addLocked(s *recvStream) {
	var next []*recvStream
	if p := u.taken.Load(); p != nil {
		next = append(next, *p...)
	}
	next = append(next, s)
	u.taken.Store(&next)
}

// dropLocked has the mux reader no longer take s; it reports whether it
// took it.
func (u *upRecv) dropLocked(s *recvStream) bool {
	p := u.taken.Load()
	if p == nil {
		return false
	}
	next := make([]*recvStream, 0, len(*p))
	found := false
	for _, t := range *p {
		if t == s {
			found = true
			continue
		}
		next = append(next, t)
	}
	if found {
		u.taken.Store(&next)
	}
	return found
}

// The modes of a stream's reader (recvStream.mode, the pump's own).
const (
	modePion     = iota // pion's read stream
	modeDraining        // pion's, until switchDrain has passed
	modeQueue           // the queue
)

// recvStream is one remote stream's reader: pion's read stream (next),
// then, once switched, its queue.
type recvStream struct {
	u    *upRecv
	info *interceptor.StreamInfo
	ssrc uint32
	next interceptor.RTPReader
	q    *recvQueue

	pumped atomic.Pointer[func(time.Time) error] // the track's SetReadDeadline; nil: not pumped
	armed  atomic.Bool                           // switch at the next packet

	// the pump's
	mode    int
	ext     uint64 // the highest extended sequence number pion decrypted
	started bool
	// edge: the first packet seen was within rocEdge after a wrap. pion
	// reads the first packet of a stream the SDP did not declare (a
	// simulcast layer) itself, before the switch can see it: if that one
	// came before the wrap, pion's counter is one more than ours, and
	// nothing seen later tells. Such a stream stays on pion's path.
	edge bool
}

// Read is the pump's (through pion's interceptors): the next packet of
// the stream.
func (s *recvStream) Read(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
	for {
		switch s.mode {
		case modeQueue:
			n, err := s.q.pop(b)
			if errors.Is(err, errBack) {
				s.mode = modePion
				if dl := s.pumped.Load(); dl != nil {
					_ = (*dl)(time.Time{})
				}
				continue
			}
			if err == nil && n >= 4 {
				s.note(uint16(b[2])<<8 | uint16(b[3]))
			}
			return n, a, err
		case modeDraining:
			n, a2, err := s.next.Read(b, a)
			var ne net.Error
			if err != nil && errors.As(err, &ne) && ne.Timeout() {
				s.mode = modeQueue
				continue
			}
			if err == nil && n >= 4 {
				s.note(uint16(b[2])<<8 | uint16(b[3]))
			}
			return n, a2, err
		}
		n, a2, err := s.next.Read(b, a)
		if err != nil || n < 4 {
			return n, a2, err
		}
		s.note(uint16(b[2])<<8 | uint16(b[3]))
		if s.armed.Load() {
			s.trySwitch()
		}
		return n, a2, err
	}
}

// note extends the sequence number of a packet pion decrypted, as SRTP
// does: pion's context starts the stream at rollover counter 0.
func (s *recvStream) note(seq uint16) {
	if !s.started {
		s.ext, s.started, s.edge = uint64(seq), true, seq < rocEdge
		return
	}
	if d := int16(seq - uint16(s.ext)); d > 0 {
		s.ext += uint64(d)
	}
}

// trySwitch switches the stream to the queue, when its sequence number is
// away from a wrap and the connection still on the direct receive path.
func (s *recvStream) trySwitch() {
	seq := uint16(s.ext)
	if s.edge || seq > 1<<16-1-rocGuard || (seq < rocGuard && s.ext >= 1<<16) {
		return
	}
	dl := s.pumped.Load()
	u := s.u
	u.mu.Lock()
	defer u.mu.Unlock()
	if !s.armed.Load() || u.setROC == nil || u.closed || dl == nil {
		return
	}
	if !u.setROC(s.ssrc, uint32(s.ext>>16)) {
		return // no remote context (yet)
	}
	s.armed.Store(false)
	s.q.reset() // allocates the ring at the first switch
	u.addLocked(s)
	u.stats.recvStreams.Add(1)
	_ = (*dl)(time.Now().Add(switchDrain))
	s.mode = modeDraining
}

// errBack: the stream went back to pion's read stream.
var errBack = errors.New("sfu: upstream back on pion's path")

// recvQueue is a stream's ring: the mux reader pushes, the pump pops.
// Its slots are allocated at the stream's first switch (most streams of
// an SFU without the mux, and RTX repair streams, never switch).
type recvQueue struct {
	size    int
	slots   []recvSlot
	head    atomic.Uint64 // the next to pop; the pump's
	tail    atomic.Uint64 // the next to push; the reader's
	waiting atomic.Bool   // the pump waits on wake
	wake    chan struct{} // capacity 1
	done    chan struct{} // closed: the stream ended
	once    sync.Once
	backed  atomic.Bool // go back to pion's read stream once empty
}

type recvSlot struct {
	n   int
	buf [recvSlotSize]byte
}

func newRecvQueue(slots int) *recvQueue {
	return &recvQueue{size: slots, wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// push copies pkt into the next slot; false: the ring is full, or pkt too
// large.
func (q *recvQueue) push(pkt []byte) bool {
	t := q.tail.Load()
	if t-q.head.Load() >= uint64(len(q.slots)) || len(pkt) > recvSlotSize {
		return false
	}
	sl := &q.slots[t%uint64(len(q.slots))]
	sl.n = copy(sl.buf[:], pkt)
	q.tail.Store(t + 1)
	if q.waiting.Load() {
		q.signal()
	}
	return true
}

func (q *recvQueue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// pop copies the next packet into b, waiting for one. io.EOF: the stream
// ended; errBack: it went back to pion's read stream (the ring empty).
func (q *recvQueue) pop(b []byte) (int, error) {
	for {
		h := q.head.Load()
		if h != q.tail.Load() {
			sl := &q.slots[h%uint64(len(q.slots))]
			full := sl.n
			n := copy(b, sl.buf[:full])
			q.head.Store(h + 1) // the slot is the reader's again
			if n < full {
				return n, io.ErrShortBuffer
			}
			return n, nil
		}
		if q.backed.Load() {
			q.backed.Store(false)
			return 0, errBack
		}
		q.waiting.Store(true)
		if h != q.tail.Load() || q.backed.Load() {
			q.waiting.Store(false)
			continue
		}
		select {
		case <-q.wake:
		case <-q.done:
			q.waiting.Store(false)
			return 0, io.EOF
		}
		q.waiting.Store(false)
	}
}

// reset empties the ring before the reader takes the stream (again): the
// pump does not read it, the reader does not write it (the stream is not
// in upRecv.taken).
func (q *recvQueue) reset() {
	if q.slots == nil {
		q.slots = make([]recvSlot, q.size)
	}
	q.head.Store(q.tail.Load())
	q.backed.Store(false)
}

// back has the pump go back to pion's read stream once the ring is empty.
func (q *recvQueue) back() {
	q.backed.Store(true)
	q.signal()
}

func (q *recvQueue) close() { q.once.Do(func() { close(q.done) }) }

// enableDirectRecv puts the connection's streams on the direct receive
// path, once it sends directly (enableDirect registered it with the mux
// socket's reader, directrecv.go).
func (c *Connection) enableDirectRecv() {
	ds := c.direct
	if ds == nil || ds.rc == nil || c.upsw == nil {
		return
	}
	ds.setup.Lock()
	defer ds.setup.Unlock()
	if ds.stopped || ds.addr.Load() == nil {
		return
	}
	ds.setUpstreamHook(c.upsw)
	c.upsw.direct(ds.setRemoteROC)
}

// followRecv keeps the connection's streams in step with its registration
// with the mux reader (followLocked): off it (a selected pair not on the
// mux) the switched ones go back to pion's read stream, which gets their
// packets again; on it again they switch again. With ds.setup held.
func (ds *directSend) followRecv(on bool) {
	c := ds.rx.c
	if c == nil || c.upsw == nil || ds.rx.up.Load() == nil || ds.stopped {
		return // not switching yet (enableDirectRecv), or closing
	}
	if on {
		c.upsw.direct(ds.setRemoteROC)
	} else {
		c.upsw.direct(nil)
	}
}
