//go:build linux

package relay

import (
	"encoding/binary"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// On Linux, datagrams go out with sendmmsg and come in with recvmmsg, up to
// batchLen per system call: on the VMs this was measured on, the system
// call, not the cipher, is the cost of a packet. Every buffer and header is
// allocated once, so a batch allocates nothing.

type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// batchIO is one goroutine's batch reader or writer on the relay's socket.
type batchIO struct {
	rc    syscall.RawConn
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrAny
	dst   unix.RawSockaddrAny // writeBatch's destination
	dstN  uint32
	off   int // first message of this system call (write)
	count int // messages to send (write), or messages received
	err   error
	rd    func(fd uintptr) bool // method values made once: passing them allocates nothing
	wr    func(fd uintptr) bool
}

func newBatchIO(c *net.UDPConn, n int) (*batchIO, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	b := &batchIO{rc: rc, hdrs: make([]mmsghdr, n), iovs: make([]unix.Iovec, n), names: make([]unix.RawSockaddrAny, n)}
	b.rd, b.wr = b.doRead, b.doWrite
	return b, nil
}

// setDest sets where writeBatch sends.
func (b *batchIO) setDest(ap netip.AddrPort) {
	b.dst = unix.RawSockaddrAny{}
	if ap.Addr().Is4() {
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&b.dst))
		sa.Family = unix.AF_INET
		sa.Addr = ap.Addr().As4()
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], ap.Port())
		b.dstN = unix.SizeofSockaddrInet4
		return
	}
	sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(&b.dst))
	sa.Family = unix.AF_INET6
	sa.Addr = ap.Addr().As16()
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], ap.Port())
	b.dstN = unix.SizeofSockaddrInet6
}

// writeBatch sends bufs to the destination and returns how many went.
func (b *batchIO) writeBatch(bufs [][]byte) (int, error) {
	for i, p := range bufs {
		b.iovs[i] = unix.Iovec{Base: &p[0]}
		b.iovs[i].SetLen(len(p))
		h := &b.hdrs[i].hdr
		*h = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&b.dst)), Namelen: b.dstN, Iov: &b.iovs[i]}
		h.SetIovlen(1)
	}
	sent := 0
	for sent < len(bufs) {
		b.off, b.count, b.err = sent, len(bufs)-sent, nil
		if err := b.rc.Write(b.wr); err != nil {
			return sent, err
		}
		if b.err != nil {
			return sent, b.err
		}
		sent += b.count
	}
	return sent, nil
}

func (b *batchIO) doWrite(fd uintptr) bool {
	n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&b.hdrs[b.off])), uintptr(b.count), unix.MSG_DONTWAIT, 0, 0)
	if e == unix.EAGAIN {
		return false
	}
	if e != 0 {
		b.err = e
		return true
	}
	b.count = int(n)
	return true
}

// readBatch receives up to len(bufs) datagrams, waiting for the first;
// sizes and from are filled for each.
func (b *batchIO) readBatch(bufs [][]byte, sizes []int, from []netip.AddrPort) (int, error) {
	for i, p := range bufs {
		b.iovs[i] = unix.Iovec{Base: &p[0]}
		b.iovs[i].SetLen(len(p))
		h := &b.hdrs[i].hdr
		*h = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&b.names[i])), Namelen: unix.SizeofSockaddrAny, Iov: &b.iovs[i]}
		h.SetIovlen(1)
	}
	b.count, b.err = len(bufs), nil
	if err := b.rc.Read(b.rd); err != nil {
		return 0, err
	}
	if b.err != nil {
		return 0, b.err
	}
	for i := range b.count {
		sizes[i] = int(b.hdrs[i].n)
		from[i] = sockaddrToAddrPort(&b.names[i])
	}
	return b.count, nil
}

func (b *batchIO) doRead(fd uintptr) bool {
	n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.hdrs[0])), uintptr(b.count), unix.MSG_DONTWAIT, 0, 0)
	if e == unix.EAGAIN {
		return false
	}
	if e != 0 {
		b.err = e
		return true
	}
	b.count = int(n)
	return true
}

func sockaddrToAddrPort(sa *unix.RawSockaddrAny) netip.AddrPort {
	switch sa.Addr.Family {
	case unix.AF_INET:
		s := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(s.Addr), binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&s.Port))[:]))
	case unix.AF_INET6:
		s := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom16(s.Addr).Unmap(), binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&s.Port))[:]))
	}
	return netip.AddrPort{}
}
