package sfu

import (
	"sync"

	"github.com/shoal-sfu/shoal/internal/mailbox"
)

// eventQueue runs functions one at a time, in order, on its own goroutine,
// so that whoever pushes never waits for a slow consumer. The queue is
// unbounded; its goroutine ends with stop.
type eventQueue struct {
	box      *mailbox.Box[func()]
	done     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

func newEventQueue() *eventQueue {
	e := &eventQueue{box: mailbox.New[func()](0), done: make(chan struct{})}
	e.wg.Add(1)
	go e.run()
	return e
}

// push queues fn; it is dropped after stop.
func (e *eventQueue) push(fn func()) { e.box.Put(fn) }

func (e *eventQueue) run() {
	defer e.wg.Done()
	for {
		select {
		case <-e.done:
			return
		case <-e.box.Wake():
		}
		fns, _ := e.box.Take()
		for _, fn := range fns {
			if e.box.Closed() {
				break // stop drops what is queued, taken or not
			}
			fn()
		}
	}
}

// stop drops what is queued and ends the goroutine. With wait it also waits
// for the goroutine, so a function running now has returned; a queued
// function that calls stop must pass wait false. Safe to call more than
// once.
func (e *eventQueue) stop(wait bool) {
	e.box.Close()
	e.stopOnce.Do(func() { close(e.done) })
	if wait {
		e.wg.Wait()
	}
}
