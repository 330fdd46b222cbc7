package lifecycle

import (
	"errors"
	"net"
	"testing"
)

func TestState(t *testing.T) {
	var s State
	if s.Started() || s.Closed() || s.Err("x") != nil {
		t.Fatal("zero State is not new")
	}
	if err := s.Start("x"); err != nil {
		t.Fatalf("first Start: %v", err)
	}
	if err := s.Start("x"); !errors.Is(err, ErrStarted) {
		t.Fatalf("second Start = %v, want ErrStarted", err)
	}
	if first, started := s.Close(); !first || !started {
		t.Fatalf("first Close = %v, %v; want true, true", first, started)
	}
	if first, _ := s.Close(); first {
		t.Fatal("second Close reported first")
	}
	if err := s.Err("relay"); !errors.Is(err, net.ErrClosed) || err.Error() != "relay: use of closed network connection" {
		t.Fatalf("Err after Close = %v", err)
	}
}

func TestStartAfterClose(t *testing.T) {
	var s State
	if first, started := s.Close(); !first || started {
		t.Fatalf("Close of a new State = %v, %v; want true, false", first, started)
	}
	if err := s.Start("sfu"); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Start after Close = %v, want net.ErrClosed", err)
	}
}
