package sfu

// The congestion clock: one goroutine per SFU runs every connection's
// congestion control steps (sharing the estimate every ccTick, padding
// probes every probeSlice while one runs), where each connection had a
// goroutine and a ticker of its own. Each connection's ticker woke the
// process at its own moment, five times a second, so that N subscribers
// cost 5·N wake-ups a second of the whole process (a context switch each
// when it was idle); one clock costs five, whatever N. The steps of one
// connection still run one at a time, on the clock's goroutine, and none
// runs once the connection's close has returned (remove).

import (
	"sync"
	"time"
)

type ccClock struct {
	clockSet[*Connection]
	// the goroutine's: a snapshot of the connections, reused
	round []*Connection
}

// add makes the clock run c's congestion control steps (c.dl set), and
// starts the clock's goroutine on the first call. Nothing runs once the
// clock is closed.
func (k *ccClock) add(c *Connection) { k.clockSet.add(c, k.loop) }

// remove stops c's steps; when it returns, none runs and none will.
func (k *ccClock) remove(c *Connection) {
	if c.dl == nil {
		return
	}
	k.clockSet.remove(c)
	c.dl.stepMu.Lock() // waits for a step of c under way
	c.dl.stopped = true
	c.dl.stepMu.Unlock()
}

// clockSet is what the SFU's clocks (this one, and the sender reports'
// srClock) share: the members a tick runs for, and the goroutine, started
// with the first member and ended by close.
type clockSet[T comparable] struct {
	mu     sync.Mutex
	set    map[T]struct{}
	closed bool
	run    bool          // the goroutine was started
	stop   chan struct{} // closed by close
	done   chan struct{} // closed when the goroutine ends
}

// add makes x a member, and starts loop on a goroutine (which must close
// done when it returns, and return once stop closes) on the first call.
// Nothing is added once the set is closed.
func (k *clockSet[T]) add(x T, loop func()) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return
	}
	if k.set == nil {
		k.set = make(map[T]struct{})
	}
	k.set[x] = struct{}{}
	if !k.run {
		k.run = true
		k.stop = make(chan struct{})
		k.done = make(chan struct{})
		go loop()
	}
}

// remove makes x no longer a member: snapshots taken after it do not
// hold it.
func (k *clockSet[T]) remove(x T) {
	k.mu.Lock()
	delete(k.set, x)
	k.mu.Unlock()
}

// snapshot appends the members to round.
func (k *clockSet[T]) snapshot(round []T) []T {
	k.mu.Lock()
	defer k.mu.Unlock()
	for x := range k.set {
		round = append(round, x)
	}
	return round
}

// close ends the goroutine and waits for it.
func (k *clockSet[T]) close() {
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		return
	}
	k.closed = true
	run := k.run
	k.set = nil
	k.mu.Unlock()
	if run {
		close(k.stop)
		<-k.done
	}
}

func (k *ccClock) loop() {
	defer close(k.done)
	t := time.NewTicker(ccTick)
	defer t.Stop()
	pt := time.NewTicker(probeSlice)
	pt.Stop()
	defer pt.Stop()
	probing := false
	for {
		select {
		case <-k.stop:
			return
		case <-t.C:
			p := k.each(func(c *Connection, now int64) {
				c.dl.probing = c.shareEstimate(now)
			})
			switch {
			case p && !probing:
				pt.Reset(probeSlice)
			case !p && probing:
				pt.Stop()
			}
			probing = p
		case <-pt.C:
			k.each(func(c *Connection, now int64) {
				if c.dl.probing {
					c.sendProbe(now)
				}
			})
		}
	}
}

// each runs step for every connection of the clock, under the
// connection's stepMu, and returns whether a probe runs on any.
func (k *ccClock) each(step func(c *Connection, now int64)) bool {
	k.round = k.snapshot(k.round)
	probing := false
	for i, c := range k.round {
		dl := c.dl
		dl.stepMu.Lock()
		if !dl.stopped {
			step(c, mono())
			probing = probing || dl.probing
		}
		dl.stepMu.Unlock()
		k.round[i] = nil
	}
	k.round = k.round[:0]
	return probing
}
