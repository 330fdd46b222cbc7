package sfu

import (
	"errors"
	"fmt"
	"net"
	"syscall"
)

// ErrMediaSocket is wrapped by MediaSocketErr's error.
var ErrMediaSocket = errors.New("sfu: media socket failed")

// MediaSocketErr reports whether the UDP mux socket (Network.UDPPort) has
// failed: an error wrapping ErrMediaSocket once the socket is closed under
// the SFU (pion's mux closes it when a read fails, and ICE on this node
// stops for every connection, old and new). It is nil while the socket is
// open, before the first Join opens it, without a UDPPort, after Close, and
// for a socket of Config.Net that is not a system socket (which it cannot
// check). The socket is not opened again: a node whose media socket failed
// needs a restart.
func (s *SFU) MediaSocketErr() error {
	s.mu.Lock()
	conn, closed := s.mux, s.state.Closed()
	s.mu.Unlock()
	if conn == nil || closed {
		return nil
	}
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err == nil {
		err = rc.Control(func(uintptr) {}) // fails once the socket is closed
	}
	if err != nil {
		var oe *net.OpError
		if errors.As(err, &oe) {
			err = oe.Err // the address is said once, below
		}
		return fmt.Errorf("%w: UDP %v: %v", ErrMediaSocket, conn.LocalAddr(), err)
	}
	return nil
}
