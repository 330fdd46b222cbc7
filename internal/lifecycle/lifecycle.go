package lifecycle

import (
	"errors"
	"fmt"
	"net"
	"sync"
)

// State is new, then started, then closed. The zero value is new.
type State struct {
	mu      sync.Mutex
	started bool
	closed  bool
}

// ErrStarted is returned by Start when it already ran.
var ErrStarted = errors.New("already started")

// Start moves new to started. It fails with an error naming what (e.g.
// "relay") that wraps net.ErrClosed after Close, or ErrStarted on a second
// call.
func (s *State) Start(what string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return fmt.Errorf("%s: start: %w", what, net.ErrClosed)
	case s.started:
		return fmt.Errorf("%s: %w", what, ErrStarted)
	}
	s.started = true
	return nil
}

// Close moves to closed. first is true for the first call only, which is
// the one that must release resources; wasStarted says whether Start had
// run before it.
func (s *State) Close() (first, wasStarted bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false, s.started
	}
	s.closed = true
	return true, s.started
}

// Started reports whether Start has run (whether or not Close has since).
func (s *State) Started() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.started
}

// Closed reports whether Close has run.
func (s *State) Closed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Err returns nil while the part is usable and an error naming what that
// wraps net.ErrClosed after Close.
func (s *State) Err(what string) error {
	if s.Closed() {
		return fmt.Errorf("%s: %w", what, net.ErrClosed)
	}
	return nil
}
