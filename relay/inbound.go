package relay

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
)

// inTrack is a track a peer relays to this node. It is in its link's
// table (l.in) before the sink's AddRemoteTrack is called, and its writer is
// set when that returns: the receive path drops (and counts) the packets
// that arrive in between, and queues every one after. Each track has its
// own queue and goroutine (dispatch), which hands the packets to the
// writer: the local fan-out of one track never delays another's, nor the
// receive goroutine, and the tracks of a node spread over its cores.
type inTrack struct {
	l      *link
	ch     *channel
	info   TrackInfo
	w      atomic.Pointer[writerRef] // nil until AddRemoteTrack returns; read per packet
	lastKF atomic.Int64
	// unwanted: this node told the peer it does not want the packets
	// (Wanter); demandMu orders the changes and their frames.
	unwanted atomic.Bool
	asked    atomic.Bool
	demandMu sync.Mutex

	mu     sync.Mutex // orders setWriter against close
	closed bool

	q    *trackQueue   // nil until the writer is set
	quit chan struct{} // closed by close: dispatch ends
	gone chan struct{} // closed when dispatch has ended

	// Only the receive goroutine touches these.
	started bool
	highest uint16
}

// writerRef holds a TrackWriter behind an atomic pointer.
type writerRef struct{ TrackWriter }

// setWriter makes w the track's writer and reports whether it did: false
// if the track was closed meanwhile (the caller closes w then).
func (t *inTrack) setWriter(w TrackWriter) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	if t.l.r.cfg.inlineDispatch { // no queue, no goroutine: receive writes
		t.w.Store(&writerRef{w})
		return true
	}
	t.q = newTrackQueue(t.l.r.cfg.TrackQueueLen)
	t.quit, t.gone = make(chan struct{}), make(chan struct{})
	go t.dispatch(w, t.q)
	t.w.Store(&writerRef{w})
	return true
}

// dispatchBatch is how many packets a remote track's goroutine hands to
// its writer before it lets another track's fan-out have its slot.
const dispatchBatch = 16

// dispatch hands the queued packets to w until the track closes. Owned by
// the track: close ends it and waits for it before closing w, so w gets no
// packet after its Close.
//
// A track's fan-out runs while it holds one of the relay's fan-out slots
// (r.fanOuts: as many as processors, at least two), for at most
// dispatchBatch packets at a time, then queues for a slot again (a
// channel's waiting senders are served in order). With a goroutine per
// track and no limit, 50 tracks were up to 50 fan-outs at once, each
// taking the same locks of the SFU (a subscriber's SRTP session, the
// media socket) and crowding its other goroutines out: on the dev VM a
// node at two processors delivered a fifth of what one goroutine did
// (BenchmarkRelayedFanOut, relay/README.md).
func (t *inTrack) dispatch(w TrackWriter, q *trackQueue) {
	defer close(t.gone)
	l, ch, slots := t.l, t.ch, t.l.r.fanOuts
	for {
		select {
		case <-t.quit:
			return
		case <-q.kick:
		}
		for more := true; more; {
			select {
			case <-t.quit:
				return
			case slots <- struct{}{}:
			}
			n := 0
			for ; n < dispatchBatch; n++ {
				pkt, ok := q.front()
				if !ok {
					break
				}
				if err := w.WriteRTP(pkt); err != nil {
					l.stats.drops.writeFailed.Add(1)
					ch.stats.drops.Add(1)
				}
				q.pop()
			}
			<-slots
			more = n == dispatchBatch
		}
	}
}

// close closes the track's writer, if it has one yet; the track is out of
// its link's table already. Safe to call twice.
func (t *inTrack) close() {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.closed = true
	w := t.w.Load()
	t.mu.Unlock()
	if w != nil {
		if t.quit != nil {
			close(t.quit)
			<-t.gone
		}
		_ = w.Close()
	}
}

var (
	_ KeyframeRequester = (*inTrack)(nil)
	_ Wanter            = (*inTrack)(nil)
)

// SetWanted tells the peer whether this node wants the track's packets.
func (t *inTrack) SetWanted(wanted bool) {
	t.asked.Store(true)
	if t.unwanted.Swap(!wanted) == !wanted {
		return
	}
	t.sendDemand()
}

// demanded reports whether the peer must hear this node's demand for the
// track (again): always for a simulcast layer, whose node may have paused
// it for an earlier run of this node, else once SetWanted was called.
func (t *inTrack) demanded() bool { return t.info.Layer != "" || t.asked.Load() }

func (t *inTrack) sendDemand() {
	t.demandMu.Lock()
	defer t.demandMu.Unlock()
	v := byte(1)
	if t.unwanted.Load() {
		v = 0
	}
	if s := t.l.sess.Load(); s != nil {
		s.control(KindTrackDemand, t.ch.name, t.info.ID, []byte{v})
	}
}

func (l *link) addInbound(channel string, info TrackInfo) error {
	r := l.r
	r.chMu.RLock()
	ch := r.channels[channel]
	r.chMu.RUnlock()
	if ch == nil {
		return fmt.Errorf("%w: %s", ErrNotRelayed, channel)
	}
	// The track goes into the table before AddRemoteTrack is called, so that
	// no packet arriving once it has returned is taken for an unknown track.
	l.inMu.Lock()
	t := l.in[channel][info.ID]
	resumed := t != nil
	if !resumed {
		t = &inTrack{l: l, ch: ch, info: info}
		m := l.in[channel]
		if m == nil {
			m = map[string]*inTrack{}
			l.in[channel] = m
		}
		m[info.ID] = t
	}
	l.inMu.Unlock()
	if resumed { // the track carries on
		if t.demanded() { // the peer may have forgotten
			t.sendDemand()
		}
		t.requestKeyframe(true)
		return nil
	}
	// Filed first, then checked: a channel that ends from now on drops the
	// track (dropChannel marks it closed before it drops the inbound ones).
	ch.mu.Lock()
	sink, closed := ch.sink, ch.closed
	ch.mu.Unlock()
	if sink == nil || closed {
		l.unfile(channel, t)
		return fmt.Errorf("%w: %s", ErrNotRelayed, channel)
	}
	w, err := sink.AddRemoteTrack(l.peer, info, t)
	if err != nil {
		l.unfile(channel, t)
		return fmt.Errorf("relay: add remote track %s of %s: %w", info.ID, channel, err)
	}
	if !t.setWriter(w) { // removed while AddRemoteTrack ran
		_ = w.Close()
		return nil
	}
	if t.demanded() {
		t.sendDemand()
	}
	t.requestKeyframe(true)
	return nil
}

// unfile takes t out of the link's table, if it is still there, and closes
// it.
func (l *link) unfile(channel string, t *inTrack) {
	l.inMu.Lock()
	if l.in[channel][t.info.ID] == t {
		delete(l.in[channel], t.info.ID)
		if len(l.in[channel]) == 0 {
			delete(l.in, channel)
		}
	}
	l.inMu.Unlock()
	t.close()
}

func (l *link) removeInbound(channel, id string) {
	l.inMu.Lock()
	t := l.in[channel][id]
	if t != nil {
		delete(l.in[channel], id)
		if len(l.in[channel]) == 0 {
			delete(l.in, channel)
		}
	}
	l.inMu.Unlock()
	if t != nil {
		t.close()
	}
}

// dropInbound closes the peer's tracks in channel except those in keep.
func (l *link) dropInbound(channel string, keep map[string]bool) {
	var gone []*inTrack
	l.inMu.Lock()
	for id, t := range l.in[channel] {
		if !keep[id] {
			gone = append(gone, t)
			delete(l.in[channel], id)
		}
	}
	if len(l.in[channel]) == 0 {
		delete(l.in, channel)
	}
	l.inMu.Unlock()
	for _, t := range gone {
		t.close()
	}
}

func (l *link) inboundTracks() []*inTrack {
	l.inMu.RLock()
	defer l.inMu.RUnlock()
	var out []*inTrack
	for _, m := range l.in {
		for _, t := range m {
			out = append(out, t)
		}
	}
	return out
}

// receive queues a relayed packet for the track's dispatch goroutine and
// asks the sending side for packets a gap says were lost. A full queue
// drops the packet, counted.
func (t *inTrack) receive(s *session, pkt []byte, flags uint8) {
	l, ch := t.l, t.ch
	if t.w.Load() == nil { // AddRemoteTrack has not returned yet
		l.stats.drops.trackNotReady.Add(1)
		ch.stats.drops.Add(1)
		return
	}
	if len(pkt) >= 4 {
		seq := binary.BigEndian.Uint16(pkt[2:4])
		switch d := int16(seq - t.highest); {
		case !t.started:
			t.started, t.highest = true, seq
		case d > 1 && d <= maxNACKGap:
			t.nack(s, t.highest+1, seq)
			t.highest = seq
		case d > 0:
			t.highest = seq
		}
	}
	if flags&FlagRetransmit != 0 {
		ch.stats.retransmitsIn.Add(1)
	}
	ch.stats.packetsIn.Add(1)
	ch.stats.bytesIn.Add(uint64(len(pkt)))
	if t.q == nil { // Config.inlineDispatch
		if err := t.w.Load().WriteRTP(pkt); err != nil {
			l.stats.drops.writeFailed.Add(1)
			ch.stats.drops.Add(1)
		}
		return
	}
	switch t.q.push(pkt) {
	case queueFull:
		l.stats.drops.trackQueueFull.Add(1)
		ch.stats.drops.Add(1)
	case queueHalf:
		// The track's goroutine lags: let it run before reading on,
		// rather than drop its packets soon. A track that stays slow
		// costs this goroutine a yield per packet, never a wait.
		runtime.Gosched()
	}
}

// What push found.
const (
	queued    = iota
	queueHalf // queued, and the queue is half full or more
	queueFull // not queued
)

// trackQueue is a remote track's queue of packets: a ring of preallocated
// slots, one writer (the receive goroutine) and one reader (dispatch). It
// allocates nothing once made.
type trackQueue struct {
	mu         sync.Mutex
	slots      [][]byte
	head, tail uint64 // slots[tail%n] .. slots[head%n] hold packets
	kick       chan struct{}
}

func newTrackQueue(n int) *trackQueue {
	return &trackQueue{slots: newSlots(n, maxPacket), kick: make(chan struct{}, 1)}
}

// push copies pkt into the queue: queued, queueHalf or queueFull.
func (q *trackQueue) push(pkt []byte) int {
	q.mu.Lock()
	n := q.head - q.tail
	if n == uint64(len(q.slots)) {
		q.mu.Unlock()
		return queueFull
	}
	i := q.head % uint64(len(q.slots))
	q.slots[i] = append(q.slots[i][:0], pkt...)
	q.head++
	q.mu.Unlock()
	select {
	case q.kick <- struct{}{}:
	default:
	}
	if 2*(n+1) >= uint64(len(q.slots)) {
		return queueHalf
	}
	return queued
}

// front returns the oldest packet, which stays in its slot (untouched by
// push) until pop.
func (q *trackQueue) front() ([]byte, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.head == q.tail {
		return nil, false
	}
	return q.slots[q.tail%uint64(len(q.slots))], true
}

func (q *trackQueue) pop() {
	q.mu.Lock()
	q.tail++
	q.mu.Unlock()
}

// nack asks for sequence numbers from..to-1.
func (t *inTrack) nack(s *session, from, to uint16) {
	p := s.nack[:0]
	for q := from; q != to; q++ {
		p = binary.BigEndian.AppendUint16(p, q)
	}
	if s.sendDatagram(KindNACK, 0, t.ch.name, t.info.ID, p) == nil {
		t.l.stats.nacksOut.Add(1)
	}
}

// RequestRetransmit asks the publisher's node again for packets of the
// track that this node never received, beyond what the receive path asks
// for by itself (a gap over maxNACKGap, a resend lost too): the SFU calls it
// when its subscribers NACK them (sfu.RetransmitRequester). The answers
// come as any resend. It does not block; seqs is not kept.
func (t *inTrack) RequestRetransmit(seqs []uint16) {
	s := t.l.sess.Load()
	if s == nil || len(seqs) == 0 {
		return
	}
	var buf [2 * maxNACKGap]byte
	p := buf[:0]
	for _, q := range seqs[:min(len(seqs), maxNACKGap)] {
		p = binary.BigEndian.AppendUint16(p, q)
	}
	if s.sendDatagram(KindNACK, 0, t.ch.name, t.info.ID, p) == nil {
		t.l.stats.nacksOut.Add(1)
	}
}

// RequestKeyframe asks the publisher's node for a keyframe, coalescing
// requests: at most one per KeyframeInterval crosses the link.
func (t *inTrack) RequestKeyframe() { t.requestKeyframe(false) }

func (t *inTrack) requestKeyframe(force bool) {
	l := t.l
	now := l.r.now()
	if force {
		t.lastKF.Store(now)
	} else if !rateLimit(&t.lastKF, now, int64(l.r.cfg.KeyframeInterval)) {
		l.stats.keyframesCoalesced.Add(1)
		return
	}
	if s := l.sess.Load(); s != nil && s.control(KindKeyframe, t.ch.name, t.info.ID, nil) {
		l.stats.keyframesOut.Add(1)
	}
}
