package mailbox

import "sync"

// Box is a FIFO queue with a coalescing wake-up. Put never blocks. The zero
// value is not usable; call New.
type Box[T any] struct {
	wake  chan struct{}
	limit int

	mu       sync.Mutex
	items    []T
	overflow bool
	closed   bool
}

// New returns an empty box. With limit > 0 it holds at most limit items:
// a Put beyond that is refused and remembered as an overflow. With limit 0
// it is unbounded.
func New[T any](limit int) *Box[T] {
	return &Box[T]{wake: make(chan struct{}, 1), limit: limit}
}

// Put queues v and wakes the consumer. It returns false, dropping v, when
// the box is closed or full.
func (b *Box[T]) Put(v T) bool {
	b.mu.Lock()
	switch {
	case b.closed:
		b.mu.Unlock()
		return false
	case b.limit > 0 && len(b.items) >= b.limit:
		b.overflow = true
		b.mu.Unlock()
		b.signal()
		return false
	}
	b.items = append(b.items, v)
	b.mu.Unlock()
	b.signal()
	return true
}

func (b *Box[T]) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// Wake is readable after a Put (or an overflow) since the last read. Several
// Puts may coalesce into one wake-up: after it, take everything with Take.
func (b *Box[T]) Wake() <-chan struct{} { return b.wake }

// Take returns every queued item, oldest first, and whether a Put was
// refused for want of room since the last Take. The box is empty after.
func (b *Box[T]) Take() (items []T, overflow bool) {
	b.mu.Lock()
	items, overflow = b.items, b.overflow
	b.items, b.overflow = nil, false
	b.mu.Unlock()
	return items, overflow
}

// Close drops what is queued; later Puts return false. Safe to call more
// than once.
func (b *Box[T]) Close() {
	b.mu.Lock()
	b.closed = true
	b.items = nil
	b.mu.Unlock()
}

// Closed reports whether Close was called.
func (b *Box[T]) Closed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}
