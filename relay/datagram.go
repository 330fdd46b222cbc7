package relay

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
)

// setAddr maps a peer's UDP address to its link for the receive path,
// replacing the link's previous address; an invalid ap only removes it.
func (r *Relay) setAddr(ap netip.AddrPort, l *link) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := *r.byAddr.Load()
	next := make(map[netip.AddrPort]*link, len(cur)+1)
	for k, v := range cur {
		if v != l {
			next[k] = v
		}
	}
	if ap.IsValid() {
		next[ap] = l
	}
	r.byAddr.Store(&next)
}

// sendRTP sends one media packet over the link; down links drop it.
func (l *link) sendRTP(ch *channel, track string, pkt []byte, flags uint8) error {
	s := l.sess.Load()
	if s == nil {
		l.stats.drops.linkDown.Add(1)
		ch.stats.drops.Add(1)
		return nil
	}
	if err := s.sendDatagram(KindRTP, flags, ch.name, track, pkt); err != nil {
		switch {
		case errors.Is(err, errQueueFull):
			l.stats.drops.sendQueueFull.Add(1)
		case errors.Is(err, ErrTooLarge):
			l.stats.drops.tooLarge.Add(1)
		default:
			l.stats.drops.sendFailed.Add(1)
		}
		ch.stats.drops.Add(1)
		return err
	}
	ch.stats.packetsOut.Add(1)
	ch.stats.bytesOut.Add(uint64(len(pkt)))
	if flags&FlagRetransmit != 0 {
		ch.stats.retransmits.Add(1)
	}
	return nil
}

// sendDatagram seals one frame with SRTP into the link's send queue. It
// allocates nothing and does not block on the network; a full queue drops
// the datagram.
func (s *session) sendDatagram(k Kind, flags uint8, channel, track string, payload []byte) error {
	if len(payload) > maxPacket {
		return ErrTooLarge
	}
	s.sendMu.Lock()
	if s.head-s.tail == txSlots {
		s.sendMu.Unlock()
		return errQueueFull
	}
	s.seq++
	p := s.plain[:outerHeaderLen]
	p[0], p[1] = 0x80, 0x7f // RTP v2, payload type 127
	binary.BigEndian.PutUint16(p[2:], s.seq)
	clear(p[4:outerHeaderLen])
	p[11] = 1 // SSRC 1: each direction of each session has its own keys
	p = appendFrameStr(p, k, flags, channel, track, payload)
	i := s.head % txSlots
	out, err := s.enc.EncryptRTP(s.tx[i][:0], p, &s.hdr)
	if err == nil {
		s.txLen[i] = len(out)
		s.head++
	}
	s.sendMu.Unlock()
	if err != nil {
		return err
	}
	select {
	case s.txKick <- struct{}{}:
	default:
	}
	return nil
}

// sendLoop writes the queued datagrams, up to batchLen per system call.
func (s *session) sendLoop(ctx context.Context) error {
	bio, err := newBatchIO(s.l.r.udp, batchLen)
	if err != nil {
		return err
	}
	bio.setDest(s.udpAP)
	bufs := make([][]byte, 0, batchLen)
	st := &s.l.stats
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.done:
			return nil
		case <-s.txKick:
		}
		for {
			s.sendMu.Lock()
			tail, head := s.tail, s.head
			bufs = bufs[:0]
			var bytes uint64
			for i := tail; i < head && len(bufs) < batchLen; i++ {
				j := i % txSlots
				bufs = append(bufs, s.tx[j][:s.txLen[j]])
				bytes += uint64(s.txLen[j])
			}
			s.sendMu.Unlock()
			if len(bufs) == 0 {
				break
			}
			sent, err := bio.writeBatch(bufs)
			s.sendMu.Lock()
			s.tail += uint64(len(bufs))
			s.sendMu.Unlock()
			st.packetsOut.Add(uint64(sent))
			st.bytesOut.Add(bytes)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return nil
				}
				st.drops.sendFailed.Add(uint64(len(bufs) - sent))
			}
		}
	}
}

func newSlots(n, size int) [][]byte {
	mem := make([]byte, n*size)
	out := make([][]byte, n)
	for i := range out {
		out[i] = mem[i*size : i*size : (i+1)*size]
	}
	return out
}

// readDatagrams is the relay's single receive goroutine. It returns nil
// when ctx has ended (Serve closed the socket), or the error of a socket
// closed under it.
func (r *Relay) readDatagrams(ctx context.Context, c net.PacketConn) error {
	bio, err := newBatchIO(c, batchLen)
	if err != nil {
		return fmt.Errorf("relay: udp socket: %w", err)
	}
	bio.enableGRO()
	bufs := newSlots(batchLen, 64<<10)
	for i := range bufs {
		bufs[i] = bufs[i][:cap(bufs[i])]
	}
	sizes := make([]int, batchLen)
	from := make([]netip.AddrPort, batchLen)
	handled := 0
	handle := func(p []byte, ap netip.AddrPort) {
		r.handleDatagram(p, ap)
		// The remote tracks' goroutines that these datagrams woke wait
		// behind this one, which would go on reading for as long as
		// datagrams come (one batch, with GRO, can hold a thousand): let
		// them run every batchLen datagrams, and the socket's buffer hold
		// what comes meanwhile, as it did when this goroutine did their
		// work.
		if handled++; handled%batchLen == 0 {
			runtime.Gosched()
		}
	}
	for {
		n, err := bio.readBatch(bufs, sizes, from)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				continue // one datagram's error; the socket goes on
			}
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("relay: udp socket: %w", err)
		}
		for i := range n {
			p := bufs[i][:sizes[i]]
			seg := bio.segSize(i)
			if seg <= 0 || seg >= len(p) {
				handle(p, from[i])
				continue
			}
			for ; len(p) > 0; p = p[min(seg, len(p)):] {
				handle(p[:min(seg, len(p))], from[i])
			}
		}
	}
}

// handleDatagram authenticates, decrypts and dispatches one datagram. A
// datagram from no peer's address, or failing authentication, is dropped
// and counted.
func (r *Relay) handleDatagram(pkt []byte, from netip.AddrPort) {
	l := (*r.byAddr.Load())[from]
	if l == nil {
		r.unknownSource.Add(1)
		return
	}
	s := l.sess.Load()
	if s == nil {
		l.stats.drops.noSession.Add(1)
		return
	}
	s.recvMu.Lock()
	defer s.recvMu.Unlock()
	plain, err := s.dec.DecryptRTP(s.decBuf[:0], pkt, &s.decHdr)
	if err != nil || len(plain) < outerHeaderLen || s.decHdr.Extension || len(s.decHdr.CSRC) != 0 {
		l.stats.authFailures.Add(1)
		return
	}
	l.stats.packetsIn.Add(1)
	l.stats.bytesIn.Add(uint64(len(pkt)))
	f, err := DecodeFrame(plain[outerHeaderLen:])
	if err != nil {
		l.stats.drops.badFrame.Add(1)
		return
	}
	switch f.Kind {
	case KindRTP:
		l.inMu.RLock()
		t := l.in[string(f.Channel)][string(f.Track)]
		l.inMu.RUnlock()
		if t == nil {
			l.stats.drops.unknownTrack.Add(1)
			return
		}
		t.receive(s, f.Payload, f.Flags)
	case KindNACK:
		r.answerNACK(l, f)
	case KindPing:
		_ = s.sendDatagram(KindPong, 0, "", "", f.Payload)
	case KindPong:
		if len(f.Payload) == 8 {
			if rtt := r.now() - int64(binary.BigEndian.Uint64(f.Payload)); rtt >= 0 {
				l.stats.rtt.Store(rtt)
			}
		}
	default:
		l.stats.drops.badFrame.Add(1)
	}
}

// answerNACK resends the packets a peer lacks from the track's ring.
func (r *Relay) answerNACK(l *link, f Frame) {
	l.stats.nacksIn.Add(1)
	r.chMu.RLock()
	ch := r.channels[string(f.Channel)]
	r.chMu.RUnlock()
	if ch == nil {
		return
	}
	t := ch.localTrack(f.Track)
	if t == nil || t.ring == nil {
		return
	}
	for p := f.Payload; len(p) >= 2; p = p[2:] {
		seq := binary.BigEndian.Uint16(p)
		t.ring.get(seq, func(pkt []byte) {
			if l.sendRTP(ch, t.info.ID, pkt, FlagRetransmit) == nil {
				l.stats.retransmits.Add(1)
			}
		})
	}
}
