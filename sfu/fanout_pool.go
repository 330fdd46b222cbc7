package sfu

import (
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/pion/rtp"
)

// Spreading a track's fan-out over workers. Up to Config.SpreadAbove
// subscribers a track's packets are written to each subscriber by the
// goroutine that delivers them (the publisher's pump, or the relay's track
// goroutine). Above it the track gets a spreader: a few worker goroutines
// (as many as the cores, from 2 to 4), each writing to its own share of the
// subscribers, so that one track's fan-out uses several cores and a
// subscriber whose writes stall holds up only its own share. The
// delivering goroutine then only copies the packet into each worker's ring
// (spreadRing slots, allocated once) and wakes it; a worker that is a full
// ring behind loses the packet for its share, counted in
// MuxStats.FanOutDropped. A ring takes about 280 KB (128 slots of a
// 1500-byte payload and header room), so a spread track holds 0.6 to 1.1
// MB while it lasts. Once spread a track stays spread until it
// closes, so a subscriber's packets are never written by two goroutines
// at once, and keep their order.
//
// A subscriber's share is fixed (a hash of its down track), and what the
// fan-out writes to it (the sequencer its NACKs are answered from, its
// packet counters) is guarded by its worker's lock instead of the
// source's (downTrack.lockSent).
//
// With the UDP mux on a single processor (GOMAXPROCS 1 when the mux
// opens) fan-outs are never spread: the workers could not run beside the
// delivering goroutine, so they would only add a hand-off per packet, and
// every subscriber's packets leave through the one mux socket, whose
// stall no worker escapes.

const (
	// DefaultSpreadAbove is the number of subscribers above which a track's
	// fan-out is spread over workers (LiveKit spreads above 20 down tracks).
	DefaultSpreadAbove = 20
	// spreadRing is the packets a worker may be behind.
	spreadRing = 128
	// spreadSlotSize is a slot's payload room; larger payloads grow it.
	spreadSlotSize = 1500
)

// spreader is the workers of one source.
type spreader struct {
	src     *source
	workers []*spreadWorker
	wg      sync.WaitGroup
	stop    chan struct{}
	once    sync.Once // closes stop
	// dropped counts the node's packets lost to full rings (the SFU's).
	dropped *atomic.Uint64
}

// spreadWorker writes a source's packets to its share of the subscribers.
type spreadWorker struct {
	sp  *spreader
	idx int
	// mu guards what the fan-out writes to the share's down tracks.
	mu sync.Mutex
	// The ring: the source's writer fills slots [tail, head) and advances
	// head; the worker writes them out and advances tail.
	ring       [spreadRing]spreadSlot
	head, tail atomic.Uint64
	wake       chan struct{}
	// The worker's share of the subscribers, rebuilt when the source's
	// list changes (subsOf is the list it was built from).
	mine   []*downTrack
	subsOf *[]*downTrack
}

// spreadSlot is one packet in a worker's ring: its own header (with its
// own CSRC and extension room, which the subscribers' writes may use) and
// a copy of the payload.
type spreadSlot struct {
	hdr     rtp.Header
	payload []byte
	level   []byte // nil: no audio level
	levelB  [4]byte
	kf      bool
}

// spreadWorkers is the number of workers of a spreader.
func spreadWorkers() int { return min(max(runtime.GOMAXPROCS(0), 2), 4) }

// startSpreader starts s's workers. Called under s.mu, on an open source.
func (s *source) startSpreader() *spreader {
	sp := &spreader{src: s, stop: make(chan struct{}), dropped: &s.ch.sfu.send.fanOutDropped}
	n := spreadWorkers()
	for i := range n {
		w := &spreadWorker{sp: sp, idx: i, wake: make(chan struct{}, 1)}
		for j := range w.ring {
			sl := &w.ring[j]
			sl.hdr.CSRC = make([]uint32, 0, 15)
			sl.hdr.Extensions = make([]rtp.Extension, 0, 16)
			sl.payload = make([]byte, 0, spreadSlotSize)
		}
		sp.workers = append(sp.workers, w)
	}
	for _, w := range sp.workers {
		sp.wg.Go(w.run)
	}
	s.spread.Store(sp)
	return sp
}

// stopSpreader ends the workers of s, if any, and waits for them. It may
// be called more than once.
func (s *source) stopSpreader() {
	s.mu.Lock()
	sp := s.spread.Load()
	s.mu.Unlock()
	if sp == nil {
		return
	}
	sp.once.Do(func() { close(sp.stop) })
	sp.wg.Wait()
}

// spreadWrite hands a packet to the workers if the source is spread, or
// has more subscribers than Config.SpreadAbove (then it becomes spread).
// It reports whether it did. Called under s.mu.
func (s *source) spreadWrite(subs []*downTrack, h *rtp.Header, payload, level []byte, kf bool) bool {
	sp := s.spread.Load()
	if sp == nil {
		above := s.ch.sfu.cfg.SpreadAbove
		if above < 0 || len(subs) <= above || s.closed.Load() || s.ch.sfu.send.inline.Load() {
			return false
		}
		sp = s.startSpreader()
	}
	for _, w := range sp.workers {
		w.push(h, payload, level, kf)
	}
	return true
}

// push copies a packet into the worker's ring and wakes it; with the ring
// full the packet is dropped for the worker's share.
func (w *spreadWorker) push(h *rtp.Header, payload, level []byte, kf bool) {
	head := w.head.Load()
	if head-w.tail.Load() >= spreadRing {
		w.sp.dropped.Add(1)
		return
	}
	sl := &w.ring[head%spreadRing]
	csrc, ext := sl.hdr.CSRC[:0], sl.hdr.Extensions[:0]
	sl.hdr = *h
	sl.hdr.CSRC = append(csrc, h.CSRC...)
	sl.hdr.Extensions = append(ext, h.Extensions...)
	sl.payload = append(sl.payload[:0], payload...)
	sl.level = nil
	if level != nil {
		sl.level = append(sl.levelB[:0], level...)
	}
	sl.kf = kf
	w.head.Store(head + 1)
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// run writes the ring's packets to the worker's share until the spreader
// stops.
func (w *spreadWorker) run() {
	for {
		select {
		case <-w.wake:
		case <-w.sp.stop:
			return
		}
		w.drain()
	}
}

// drain writes every packet in the ring, holding the mux's sends for the
// batch.
func (w *spreadWorker) drain() {
	burst := w.sp.src.ch.sfu.sendBurst()
	burst.Hold()
	defer burst.Release()
	for {
		tail, head := w.tail.Load(), w.head.Load()
		if tail == head {
			return
		}
		mine := w.share()
		for ; tail != head; tail++ {
			sl := &w.ring[tail%spreadRing]
			w.mu.Lock()
			for _, d := range mine {
				d.writeRTP(&sl.hdr, sl.payload, sl.level, sl.kf)
			}
			w.mu.Unlock()
			w.tail.Store(tail + 1)
		}
	}
}

// share returns the worker's subscribers, rebuilt if the source's list
// changed.
func (w *spreadWorker) share() []*downTrack {
	subs := w.sp.src.subs.Load()
	if subs == w.subsOf {
		return w.mine
	}
	w.subsOf = subs
	w.mine = w.mine[:0]
	n := len(w.sp.workers)
	for _, d := range *subs {
		if spreadIndex(d, n) == w.idx {
			w.mine = append(w.mine, d)
		}
	}
	return w.mine
}

// spreadIndex is the worker of d among n: a Fibonacci hash of its
// address, fixed for its life.
func spreadIndex(d *downTrack, n int) int {
	return int((uint64(uintptr(unsafe.Pointer(d))) * 0x9e3779b97f4a7c15 >> 32) % uint64(n))
}

// lockSent locks what the fan-out writes to d (its sequencer, budget and
// packet counters): its worker's lock if d's source is spread, else the
// source's. It returns the lock held.
func (d *downTrack) lockSent() *sync.Mutex {
	for {
		mu := d.sentMu()
		mu.Lock()
		// The source may have become spread while this waited for its
		// lock; then the worker's lock is the one.
		if d.sentMu() == mu {
			return mu
		}
		mu.Unlock()
	}
}

func (d *downTrack) sentMu() *sync.Mutex {
	if sp := d.src.spread.Load(); sp != nil {
		return &sp.workers[spreadIndex(d, len(sp.workers))].mu
	}
	return &d.src.mu
}
