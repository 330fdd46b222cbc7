//go:build linux

package udpbatch

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrUnsupported is NewConn's error where the system has no batched sends.
var ErrUnsupported = errors.New("udpbatch: batched sends need Linux")

// sender holds a Conn's batches on Linux, and its reads.
type sender struct {
	rc syscall.RawConn
	v6 bool // an AF_INET6 socket: IPv4 destinations go as v4-mapped

	rd reader

	mu   sync.Mutex
	cur  *sendBatch      // being filled, under mu
	free chan *sendBatch // the others, when not being sent
}

// sendBatch is BatchLen datagrams with their message headers, each with
// its own destination, all allocated once.
type sendBatch struct {
	n     int
	data  []byte // BatchLen slots of SlotSize
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6 // room for either family
	// One sendmmsg call: messages [off, off+count); it sets count to the
	// messages sent, or err.
	off, count int
	err        error
	wr         func(fd uintptr) bool // method value made once
}

func newSender(c *net.UDPConn) (*sender, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	s := &sender{rc: rc, free: make(chan *sendBatch, Batches)}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		var sa unix.Sockaddr
		if sa, serr = unix.Getsockname(int(fd)); serr == nil {
			_, s.v6 = sa.(*unix.SockaddrInet6)
		}
	}); err != nil {
		return nil, err
	}
	if serr != nil {
		return nil, serr
	}
	for range Batches {
		b := &sendBatch{data: make([]byte, BatchLen*SlotSize), hdrs: make([]mmsghdr, BatchLen),
			iovs: make([]unix.Iovec, BatchLen), names: make([]unix.RawSockaddrInet6, BatchLen)}
		b.wr = b.doWrite
		s.free <- b
	}
	s.rd.fn = s.rd.doRead
	s.cur = <-s.free
	return s, nil
}

// write copies p into the batch being filled; it sends the batch if it is
// full or no burst is held.
func (s *sender) write(c *Conn, p []byte, addr netip.AddrPort) (int, error) {
	s.mu.Lock()
	b := s.cur
	b.add(p, addr, s.v6)
	var send *sendBatch
	if b.n == BatchLen || c.holds.Load() <= 0 {
		send = b
		s.cur = <-s.free // waits while every other batch is being sent
	}
	s.mu.Unlock()
	if send == nil {
		return len(p), nil
	}
	failed := s.send(c, send)
	if failed != nil && send.n == 1 {
		send.n = 0
		s.free <- send
		return 0, failed
	}
	send.n = 0
	s.free <- send
	return len(p), nil
}

// flush sends the batch being filled, if it holds anything.
func (s *sender) flush(c *Conn) {
	s.mu.Lock()
	b := s.cur
	if b.n == 0 {
		s.mu.Unlock()
		return
	}
	s.cur = <-s.free
	s.mu.Unlock()
	s.send(c, b)
	b.n = 0
	s.free <- b
}

// add copies p into the next slot, addressed to addr.
func (b *sendBatch) add(p []byte, addr netip.AddrPort, v6 bool) {
	i := b.n
	slot := b.data[i*SlotSize : i*SlotSize+len(p)]
	copy(slot, p)
	b.iovs[i] = unix.Iovec{Base: &slot[0]}
	b.iovs[i].SetLen(len(p))
	name := &b.names[i]
	var nameLen uint32
	ip := addr.Addr()
	if v6 || !ip.Unmap().Is4() {
		*name = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: ip.As16()}
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&name.Port))[:], addr.Port())
		nameLen = unix.SizeofSockaddrInet6
	} else {
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(name))
		*sa = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: ip.Unmap().As4()}
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], addr.Port())
		nameLen = unix.SizeofSockaddrInet4
	}
	b.hdrs[i].hdr = unix.Msghdr{Name: (*byte)(unsafe.Pointer(name)), Namelen: nameLen, Iov: &b.iovs[i]}
	b.hdrs[i].hdr.SetIovlen(1)
	b.n++
}

// send sends b's datagrams, as many per sendmmsg as the kernel takes. A
// datagram the kernel refuses (an unreachable or invalid destination) is
// counted and skipped, so that the others still go; a closed socket or an
// expired write deadline ends the batch. It returns the first error.
func (s *sender) send(c *Conn, b *sendBatch) error {
	var first error
	b.off = 0
	for b.off < b.n {
		b.count, b.err = b.n-b.off, nil
		if err := s.rc.Write(b.wr); err != nil {
			c.failed.Add(uint64(b.n - b.off))
			if first == nil {
				first = err
			}
			break
		}
		if b.err != nil {
			c.failed.Add(1)
			if first == nil {
				first = b.err
			}
			b.off++
			continue
		}
		if b.count <= 0 { // not expected of sendmmsg; skip rather than spin
			c.failed.Add(1)
			b.off++
			continue
		}
		c.calls.Add(1)
		c.datagrams.Add(uint64(b.count))
		b.off += b.count
	}
	return first
}

// doWrite makes one sendmmsg call; false means the socket is not ready
// (the runtime waits and calls again).
func (b *sendBatch) doWrite(fd uintptr) bool {
	return mmsg(unix.SYS_SENDMMSG, fd, b.hdrs[b.off:], &b.count, &b.err)
}

// reader is a Conn's reads: recvfrom with MSG_DONTWAIT as a raw system
// call (as the batches are sent, mmsg), the runtime's poller waiting when
// nothing is there. What it saves over the socket's own read is the
// runtime's system call bookkeeping, which on an idle process wakes its
// monitor thread at each read: a datagram that wakes the SFU then costs
// the monitor dozens of 20 µs naps before it sleeps again.
type reader struct {
	mu   sync.Mutex // one read at a time: the fields below
	buf  []byte
	name unix.RawSockaddrInet6 // room for either family
	n    int
	err  error
	fn   func(fd uintptr) bool // method value made once
}

func (r *reader) doRead(fd uintptr) bool {
	var p unsafe.Pointer
	if len(r.buf) > 0 {
		p = unsafe.Pointer(&r.buf[0])
	}
	for {
		nameLen := uint32(unix.SizeofSockaddrInet6)
		n, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(p), uintptr(len(r.buf)), unix.MSG_DONTWAIT,
			uintptr(unsafe.Pointer(&r.name)), uintptr(unsafe.Pointer(&nameLen)))
		switch e {
		case 0:
			r.n, r.err = int(n), nil
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		r.n, r.err = 0, e
		return true
	}
}

// read reads a datagram into b, as net.UDPConn.ReadFromUDPAddrPort does
// (an IPv4 source of an IPv6 socket comes v4-mapped; a link-local source
// has its zone).
func (s *sender) read(c *Conn, b []byte) (int, netip.AddrPort, error) {
	r := &s.rd
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf = b
	err := s.rc.Read(r.fn)
	r.buf = nil
	if err == nil && r.err != nil {
		err = &net.OpError{Op: "read", Net: "udp", Source: c.c.LocalAddr(), Err: os.NewSyscallError("recvfrom", r.err)}
	}
	if err != nil {
		return 0, netip.AddrPort{}, err
	}
	var ap netip.AddrPort
	switch r.name.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&r.name))
		ap = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:]))
	case unix.AF_INET6:
		ip := netip.AddrFrom16(r.name.Addr)
		if r.name.Scope_id != 0 {
			if ifi, err := net.InterfaceByIndex(int(r.name.Scope_id)); err == nil {
				ip = ip.WithZone(ifi.Name)
			} else {
				ip = ip.WithZone(strconv.Itoa(int(r.name.Scope_id)))
			}
		}
		ap = netip.AddrPortFrom(ip, binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&r.name.Port))[:]))
	}
	return r.n, ap, nil
}
