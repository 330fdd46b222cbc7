//go:build linux

package udpbatch

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

// mmsgIO is the IO of a *net.UDPConn on Linux.
type mmsgIO struct {
	rc    syscall.RawConn
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrAny
	dst   unix.RawSockaddrAny // WriteBatch's destination
	dstN  uint32
	oob   []byte // WriteBatch's UDP_SEGMENT control messages, gsoCmsgSpace each
	segs  []int  // datagrams in each message (write)
	gso   bool   // WriteBatch segments runs of equal-sized datagrams
	gro   bool   // ReadBatch may get runs of datagrams in one buffer
	roob  []byte // ReadBatch's control messages, groCmsgSpace each
	rsegs []int  // segment size of each buffer ReadBatch filled, or 0
	off   int    // first message of this system call (write)
	count int    // messages to send (write), or messages received
	err   error
	rd    func(fd uintptr) bool // method values made once: passing them allocates nothing
	wr    func(fd uintptr) bool
}

// New returns an IO on c that reads and writes up to n datagrams per
// system call: batched for a *net.UDPConn, one per call for other sockets.
func New(c net.PacketConn, n int) (IO, error) {
	uc, ok := c.(*net.UDPConn)
	if !ok {
		return newSingleIO(c), nil
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return nil, err
	}
	b := &mmsgIO{rc: rc, hdrs: make([]mmsghdr, n), iovs: make([]unix.Iovec, n), names: make([]unix.RawSockaddrAny, n),
		oob: make([]byte, n*gsoCmsgSpace), segs: make([]int, n), gso: true}
	b.rd, b.wr = b.doRead, b.doWrite
	return b, nil
}

// SetDest sets where WriteBatch sends.
func (b *mmsgIO) SetDest(ap netip.AddrPort) {
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

// UDP generic segmentation offload: a run of equal-sized datagrams goes to
// the kernel as one message with a UDP_SEGMENT control message, and comes
// out as separate datagrams of that size (the last may be shorter), the
// same on the wire. On loopback and most NICs it saves most of the
// per-datagram cost of the send path. Off after the first error that says
// the kernel or device lacks it.
const (
	gsoMaxSegs  = 64    // datagrams per GSO message (the kernel takes up to 64 or 128)
	gsoMaxBytes = 65000 // payload bytes per GSO message (under the 64 KiB IP limit)
	gsoMaxSize  = 1452  // larger datagrams go alone: a segment must fit the path MTU (1500 less IPv6 and UDP headers)
)

// WriteBatch sends bufs to the destination and returns how many went.
func (b *mmsgIO) WriteBatch(bufs [][]byte) (int, error) {
	for i, p := range bufs {
		b.iovs[i] = unix.Iovec{Base: &p[0]}
		b.iovs[i].SetLen(len(p))
	}
	sent := 0
	for sent < len(bufs) {
		nmsg := b.build(bufs[sent:], sent)
		b.off, b.count, b.err = 0, nmsg, nil
		for b.off < nmsg {
			if err := b.rc.Write(b.wr); err != nil {
				return sent, err
			}
			if b.err != nil {
				if b.gso && gsoUnsupported(b.err) {
					b.gso = false // rebuild the rest without segmentation
					break
				}
				return sent, b.err
			}
			for _, m := range b.segs[b.off : b.off+b.count] {
				sent += m
			}
			b.off += b.count
			b.count = nmsg - b.off
		}
	}
	return sent, nil
}

// build fills the message headers for bufs (whose iovecs start at index
// first): one message per datagram, or with GSO one per run of equal sizes.
// It returns the number of messages and sets segs to the datagrams in each.
func (b *mmsgIO) build(bufs [][]byte, first int) int {
	n := 0
	for i := 0; i < len(bufs); n++ {
		size, k, total := len(bufs[i]), 1, len(bufs[i])
		if b.gso && size <= gsoMaxSize {
			for i+k < len(bufs) && k < gsoMaxSegs && total+len(bufs[i+k]) <= gsoMaxBytes {
				l := len(bufs[i+k])
				if l > size {
					break
				}
				k++
				total += l
				if l < size { // a shorter datagram ends the run
					break
				}
			}
		}
		h := &b.hdrs[n].hdr
		*h = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&b.dst)), Namelen: b.dstN, Iov: &b.iovs[first+i]}
		h.SetIovlen(k)
		if k > 1 {
			oob := b.oob[n*gsoCmsgSpace : (n+1)*gsoCmsgSpace]
			ch := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
			ch.Level, ch.Type = unix.SOL_UDP, unix.UDP_SEGMENT
			ch.SetLen(unix.CmsgLen(2))
			*(*uint16)(unsafe.Pointer(&oob[unix.CmsgLen(0)])) = uint16(size)
			h.Control = &oob[0]
			h.SetControllen(gsoCmsgSpace)
		}
		b.segs[n] = k
		i += k
	}
	return n
}

var gsoCmsgSpace = unix.CmsgSpace(2)

// gsoUnsupported reports whether a send error means the kernel or the
// device cannot segment.
func gsoUnsupported(err error) bool {
	return err == unix.EIO || err == unix.EINVAL || err == unix.ENOPROTOOPT || err == unix.EOPNOTSUPP
}

func (b *mmsgIO) doWrite(fd uintptr) bool { return b.mmsg(unix.SYS_SENDMMSG, fd, b.off) }

func (b *mmsgIO) doRead(fd uintptr) bool { return b.mmsg(unix.SYS_RECVMMSG, fd, 0) }

// mmsg makes one sendmmsg or recvmmsg call (trap) for b.count messages
// from hdrs[first]; it sets b.count to the messages done, or b.err. False
// means the socket is not ready: the runtime waits and calls again.
func (b *mmsgIO) mmsg(trap, fd uintptr, first int) bool {
	return mmsg(trap, fd, b.hdrs[first:], &b.count, &b.err)
}

// mmsg makes one sendmmsg or recvmmsg call (trap) for *count messages
// from hdrs[0], without blocking; it sets *count to the messages done, or
// *err. False means the socket is not ready (EAGAIN).
//
// The call is raw (the scheduler is not told of it): with MSG_DONTWAIT it
// cannot block, and a batch on loopback takes tens to a few hundred
// microseconds, long enough that the runtime's monitor would otherwise
// take the processor from the goroutine in the call and wake another
// thread for it, a hand-off per batch for nothing.
func mmsg(trap, fd uintptr, hdrs []mmsghdr, count *int, err *error) bool {
	n, _, e := unix.RawSyscall6(trap, fd, uintptr(unsafe.Pointer(&hdrs[0])), uintptr(*count), unix.MSG_DONTWAIT, 0, 0)
	if e == unix.EAGAIN {
		return false
	}
	if e != 0 {
		*err = e
		return true
	}
	*count = int(n)
	return true
}

// EnableGRO asks the kernel to hand runs of equal-sized datagrams from one
// source to ReadBatch as one buffer (UDP generic receive offload); segSize
// then tells where to cut it. Without kernel support nothing changes.
func (b *mmsgIO) EnableGRO() {
	_ = b.rc.Control(func(fd uintptr) {
		if unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_GRO, 1) == nil {
			b.gro = true
			b.roob = make([]byte, len(b.hdrs)*groCmsgSpace)
			b.rsegs = make([]int, len(b.hdrs))
		}
	})
}

var groCmsgSpace = unix.CmsgSpace(4)

// segSize is the size of each datagram in ReadBatch's buffer i (the last
// may be shorter), or 0 if the buffer holds one datagram.
func (b *mmsgIO) SegSize(i int) int {
	if !b.gro {
		return 0
	}
	return b.rsegs[i]
}

// ReadBatch receives up to len(bufs) datagrams, waiting for the first;
// sizes and from are filled for each.
func (b *mmsgIO) ReadBatch(bufs [][]byte, sizes []int, from []netip.AddrPort) (int, error) {
	for i, p := range bufs {
		b.iovs[i] = unix.Iovec{Base: &p[0]}
		b.iovs[i].SetLen(len(p))
		h := &b.hdrs[i].hdr
		*h = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&b.names[i])), Namelen: unix.SizeofSockaddrAny, Iov: &b.iovs[i]}
		h.SetIovlen(1)
		if b.gro {
			h.Control = &b.roob[i*groCmsgSpace]
			h.SetControllen(groCmsgSpace)
		}
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
		if b.gro {
			b.rsegs[i] = groSegSize(b.roob[i*groCmsgSpace : i*groCmsgSpace+int(b.hdrs[i].hdr.Controllen)])
		}
	}
	return b.count, nil
}

// groSegSize finds the UDP_GRO control message in oob and returns its
// segment size, or 0.
func groSegSize(oob []byte) int {
	for len(oob) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || l > len(oob) {
			return 0
		}
		if h.Level == unix.SOL_UDP && h.Type == unix.UDP_GRO && l >= unix.CmsgLen(4) {
			return int(*(*int32)(unsafe.Pointer(&oob[unix.CmsgLen(0)])))
		}
		sp := unix.CmsgSpace(l - unix.CmsgLen(0))
		if sp > len(oob) {
			return 0
		}
		oob = oob[sp:]
	}
	return 0
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
