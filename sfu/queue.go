package sfu

import "sync"

// eventQueue runs functions one at a time, in order, on its own goroutine,
// so that whoever pushes never waits for a slow consumer. The queue is
// unbounded; its goroutine ends with stop.
type eventQueue struct {
	mu      sync.Mutex
	q       []func()
	wake    chan struct{}
	done    chan struct{}
	stopped bool
	wg      sync.WaitGroup
}

func newEventQueue() *eventQueue {
	e := &eventQueue{wake: make(chan struct{}, 1), done: make(chan struct{})}
	e.wg.Add(1)
	go e.run()
	return e
}

// push queues fn; it is dropped after stop.
func (e *eventQueue) push(fn func()) {
	e.mu.Lock()
	if e.stopped {
		e.mu.Unlock()
		return
	}
	e.q = append(e.q, fn)
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

func (e *eventQueue) run() {
	defer e.wg.Done()
	for {
		select {
		case <-e.done:
			return
		case <-e.wake:
		}
		for {
			e.mu.Lock()
			if len(e.q) == 0 || e.stopped {
				e.q = nil
				e.mu.Unlock()
				break
			}
			fn := e.q[0]
			e.q[0] = nil
			e.q = e.q[1:]
			e.mu.Unlock()
			fn()
		}
	}
}

// stop drops what is queued, ends the goroutine and, unless called from a
// queued function, waits for it. Safe to call more than once.
func (e *eventQueue) stop(wait bool) {
	e.mu.Lock()
	if !e.stopped {
		e.stopped = true
		close(e.done)
	}
	e.mu.Unlock()
	if wait {
		e.wg.Wait()
	}
}
