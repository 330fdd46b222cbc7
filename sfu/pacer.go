package sfu

// Pacing. Production SFUs do not hold media back to a rate: LiveKit's
// send-side estimator goes with a pacer that only moves the sends to a
// goroutine of their own (its "no queue" pacer, the default; a leaky bucket
// exists but is off by default; with REMB it passes packets through), and
// mediasoup paces only its probation packets, the media going out as it
// comes. What keeps a subscriber's rate within its link is the layer
// choice (congestion.go). Holding media in a queue to a rate would add
// delay, and a queue that a track without layers overruns grows for as
// long as the link is short.
//
// What this pacer bounds is the burst: a keyframe arrives as tens of
// packets at once, and is fanned out to every subscriber at once. Video
// packets of a keyframe (from its first packet to its marker bit) leave
// at once while a token bucket filled at 2.5 times the connection's
// estimate (libwebrtc's pacing factor) has tokens, up to 20 ms of it
// (pacerWindow; at least pacerMinBurst); the rest waits in a FIFO of at
// most pacerSlots packets and is sent as the bucket refills. Anything the
// connection sends of its video while packets wait goes behind them, so
// that no stream is reordered; other video packets take tokens (down to a
// debt of one bucket) but never wait for them. Audio never waits. When the
// FIFO is full its oldest packet is dropped (counted in PacerDropped; the
// subscriber's NACK can still get it from the source's buffer). The FIFO's
// memory (pacerSlots packets) is taken from a pool for the length of a
// burst only. With congestion control off nothing is paced.

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

const (
	pacingFactor  = 2.5
	pacerWindow   = 20 * time.Millisecond
	pacerMinBurst = 8 * 1200 // bytes
	pacerSlots    = 128
)

// pacerSlot is a packet waiting: the header (its CSRCs copied in) and the
// payload.
type pacerSlot struct {
	ws   webrtc.TrackLocalWriter
	hdr  rtp.Header
	csrc [15]uint32
	exts [4]rtp.Extension // room for what twcc.go stamps
	n    int
	buf  [bufSlotSize]byte
}

type pacerQueue struct {
	slots [pacerSlots]pacerSlot
}

var pacerPool = sync.Pool{New: func() any { return &pacerQueue{} }}

// pacer is a connection's burst pacer.
type pacer struct {
	mu     sync.Mutex
	rate   float64 // bytes a second; 0: no estimate yet, nothing paced
	tokens float64 // bytes; negative: a debt
	at     int64   // mono() of the last refill
	q      *pacerQueue
	head   int
	n      int
	wake   chan struct{}

	queued  atomic.Uint64 // packets that waited
	dropped atomic.Uint64 // packets dropped from a full FIFO

	// drops are the SFU's counters (set before the pacer is used; nil in
	// unit tests): PacerQueueFull and MediaWriteFailed.
	drops *dropCounters
}

func newPacer() *pacer { return &pacer{wake: make(chan struct{}, 1)} }

// setRate sets the bucket's rate from the connection's estimate (bits/s).
func (p *pacer) setRate(bps int64) {
	p.mu.Lock()
	p.refill(mono())
	first := p.rate == 0
	p.rate = float64(bps) * pacingFactor / 8
	if first {
		p.tokens = p.depth() // the bucket starts full
	}
	p.mu.Unlock()
}

func (p *pacer) depth() float64 {
	return max(p.rate*pacerWindow.Seconds(), pacerMinBurst)
}

func (p *pacer) refill(now int64) {
	if p.rate > 0 {
		p.tokens = min(p.tokens+float64(now-p.at)*p.rate/1e9, p.depth())
	}
	p.at = now
}

// send writes a video packet to ws now, or queues it: when it is part of
// a keyframe (burst) and the bucket is empty, or when packets wait.
func (p *pacer) send(ws webrtc.TrackLocalWriter, h *rtp.Header, payload []byte, burst bool) {
	p.mu.Lock()
	if p.rate == 0 {
		p.mu.Unlock()
		p.write(ws, h, payload)
		return
	}
	p.refill(mono())
	size := float64(len(payload) + 12)
	if p.n == 0 && (!burst || p.tokens >= 0) {
		p.tokens = max(p.tokens-size, -p.depth())
		p.mu.Unlock()
		p.write(ws, h, payload)
		return
	}
	if len(payload) > bufSlotSize {
		p.mu.Unlock()
		p.drop()
		return
	}
	if p.q == nil {
		p.q = pacerPool.Get().(*pacerQueue)
		p.head = 0
	}
	if p.n == pacerSlots {
		p.q.slots[p.head].ws = nil
		p.head = (p.head + 1) % pacerSlots
		p.n--
		p.drop()
	}
	s := &p.q.slots[(p.head+p.n)%pacerSlots]
	p.n++
	s.ws = ws
	s.hdr = *h
	s.hdr.CSRC = append(s.csrc[:0], h.CSRC...)
	// Video carries no extension here (source.write drops them; twcc.go
	// stamps its own below the pacer).
	s.hdr.Extension, s.hdr.Extensions = false, s.exts[:0]
	s.n = copy(s.buf[:], payload)
	p.mu.Unlock()
	p.queued.Add(1)
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// write writes a packet, counting a refusal (Drops.MediaWriteFailed).
func (p *pacer) write(ws webrtc.TrackLocalWriter, h *rtp.Header, payload []byte) {
	if _, err := ws.WriteRTP(h, payload); err != nil && p.drops != nil {
		p.drops.mediaWriteFailed.Add(1)
	}
}

// drop counts a packet dropped from the FIFO (or too large for it).
func (p *pacer) drop() {
	p.dropped.Add(1)
	if p.drops != nil {
		p.drops.pacerQueueFull.Add(1)
	}
}

// drain sends the waiting packets the bucket allows and returns how long
// until the next may go; 0 when none waits.
func (p *pacer) drain() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.n > 0 {
		p.refill(mono())
		if p.tokens < 0 && p.rate > 0 {
			return max(time.Duration(-p.tokens/p.rate*1e9), time.Millisecond)
		}
		s := &p.q.slots[p.head]
		p.tokens -= float64(s.n + 12)
		// Written under mu: a packet that would pass through meanwhile
		// must not overtake this one.
		p.write(s.ws, &s.hdr, s.buf[:s.n])
		s.ws = nil
		p.head = (p.head + 1) % pacerSlots
		p.n--
	}
	if p.q != nil {
		pacerPool.Put(p.q)
		p.q = nil
	}
	return 0
}

// clear drops what waits: the connection closed.
func (p *pacer) clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.q != nil {
		for i := range p.q.slots {
			p.q.slots[i].ws = nil
		}
		pacerPool.Put(p.q)
		p.q = nil
	}
	p.n = 0
}

// runPacer sends what the connection's pacer queued, until the connection
// closes.
func (c *Connection) runPacer(p *pacer) {
	defer c.wg.Done()
	t := time.NewTimer(time.Hour)
	t.Stop()
	defer t.Stop()
	for {
		select {
		case <-c.done:
			p.clear()
			return
		case <-p.wake:
		}
		for wait := p.drain(); wait > 0; wait = p.drain() {
			t.Reset(wait)
			select {
			case <-c.done:
				p.clear()
				return
			case <-t.C:
			}
		}
	}
}

// send writes a packet to the subscriber: video through the connection's
// pacer, audio (and everything with congestion control off) at once.
// keyframe says the packet starts a keyframe. Called by the fan-out
// (source.mu held, or the spread worker's lock).
func (d *downTrack) send(b *binding, h *rtp.Header, payload []byte, keyframe bool) {
	var p *pacer
	if d.conn != nil {
		p = d.conn.pacer
	}
	if p == nil || d.src.info.Kind != webrtc.RTPCodecTypeVideo {
		if _, err := b.ws.WriteRTP(h, payload); err != nil {
			d.src.ch.sfu.drops.mediaWriteFailed.Add(1)
		}
		return
	}
	if keyframe {
		d.inKeyframe = true
	}
	burst := d.inKeyframe
	if h.Marker {
		d.inKeyframe = false
	}
	p.send(b.ws, h, payload, burst)
}
