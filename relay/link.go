package relay

import (
	"bufio"
	"context"
	cryptorand "crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"golang.org/x/sync/errgroup"
)

const (
	alpn            = "shoal-relay/1"
	maxControlFrame = MaxMessageLen + 1024
	outerHeaderLen  = 12   // the SRTP packet's own RTP header
	datagramBuf     = 2560 // outer header + frame header + ids + maxPacket + tag, rounded up
	maxNACKGap      = 64   // a larger gap is a resync, not loss worth asking for
	replayWindow    = 1024
	batchLen        = 32  // datagrams per sendmmsg/recvmmsg
	txSlots         = 512 // sealed datagrams waiting for the send goroutine, per link
)

// errQueueFull: a link's send queue is full (the peer or the socket cannot
// keep up); the datagram is dropped.
var errQueueFull = errors.New("relay: link send queue full")

// link is this node's end of the link to one peer. Its session (a control
// connection plus SRTP contexts) comes and goes; the link, its inbound
// tracks and its counters stay until RemovePeer or Close.
type link struct {
	r      *Relay
	peer   string
	dialer bool // this node dials (its name sorts first)

	// Guarded by r.mu.
	addr    netip.AddrPort
	ctx     context.Context // the link's goroutines end with it (Run, RemovePeer)
	cancel  context.CancelFunc
	dialing bool // the dial loop runs

	kick chan struct{} // wakes the dial loop early (new address)

	sess atomic.Pointer[session]
	hole atomic.Pointer[blackHole] // a test seam: nil unless a test pulled the cable

	inMu sync.RWMutex
	in   map[string]map[string]*inTrack // channel → track id → track

	stats linkCounters
}

func (r *Relay) newLink(peer string) *link {
	return &link{
		r:      r,
		peer:   peer,
		dialer: r.cfg.NodeName < peer,
		kick:   make(chan struct{}, 1),
		in:     map[string]map[string]*inTrack{},
	}
}

// linkCtx returns the link's context, making it on first use. r.mu is held
// and Run has started.
func (r *Relay) linkCtx(l *link) context.Context {
	if l.ctx == nil {
		l.ctx, l.cancel = context.WithCancel(r.runCtx)
	}
	return l.ctx
}

// startLink starts the dial loop of a link this node dials. r.mu is held
// and Run has started.
func (r *Relay) startLink(l *link) {
	if !l.dialer || l.dialing || !l.addr.IsValid() {
		return
	}
	l.dialing = true
	ctx := r.linkCtx(l)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		l.dialLoop(ctx)
	}()
}

// acceptedLink returns the link for a peer that dialled in, making it if
// SetPeer has not named the peer yet. Its context ends with Run or
// RemovePeer.
func (r *Relay) acceptedLink(peer string) (*link, context.Context, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.runCtx == nil {
		return nil, nil, errClosed
	}
	l := r.peers[peer]
	if l == nil {
		l = r.newLink(peer)
		r.peers[peer] = l
	}
	return l, r.linkCtx(l), nil
}

// redial drops the current session so the dial loop reconnects at once.
func (l *link) redial() {
	if s := l.sess.Load(); s != nil {
		s.close()
	}
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// stop ends the link's goroutines and closes its inbound tracks.
func (l *link) stop() {
	l.r.mu.Lock()
	if l.cancel != nil {
		l.cancel()
	}
	l.r.mu.Unlock()
	if s := l.sess.Load(); s != nil {
		s.close()
	}
	l.inMu.Lock()
	chans := make([]string, 0, len(l.in))
	for c := range l.in {
		chans = append(chans, c)
	}
	l.inMu.Unlock()
	for _, c := range chans {
		l.dropInbound(c, nil)
	}
}

// dialLoop keeps the link up: dial, run the session, back off, again.
func (l *link) dialLoop(ctx context.Context) {
	lo, hi := l.r.cfg.ReconnectMin, l.r.cfg.ReconnectMax
	backoff := lo
	for ctx.Err() == nil {
		start := time.Now()
		s, err := l.dial(ctx)
		if err == nil {
			err = l.run(ctx, s)
			if time.Since(start) > hi {
				backoff = lo
			}
		}
		if ctx.Err() != nil {
			return
		}
		l.r.log.Debug("relay link retry", "peer", l.peer, "err", err, "in", backoff)
		// Jitter ±25% keeps a cluster that lost a switch from redialling in step.
		wait := backoff - backoff/4 + time.Duration(rand.Int64N(int64(backoff/2)+1))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-l.kick:
			backoff = lo
		case <-t.C:
			backoff = min(backoff*2, hi)
		}
		t.Stop()
	}
}

func (l *link) dial(ctx context.Context) (*session, error) {
	l.r.mu.Lock()
	addr := l.addr
	l.r.mu.Unlock()
	l.stats.dials.Add(1)
	d := net.Dialer{Timeout: l.r.cfg.LinkTimeout}
	if ip := l.r.cfg.ListenAddr.Addr(); !ip.IsUnspecified() {
		d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, 0))
	}
	if err := l.holeDial(ctx, d.Timeout); err != nil {
		return nil, fmt.Errorf("relay: dial %s at %v: %w", l.peer, addr, err)
	}
	raw, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return nil, fmt.Errorf("relay: dial %s at %v: %w", l.peer, addr, err)
	}
	hc := newHoleConn(raw, l)
	c := tls.Client(hc, l.r.id.TLSConfig(alpn))
	s, _, err := l.r.handshake(ctx, c, l, addr)
	if err != nil {
		hc.Close()
		return nil, err
	}
	return s, nil
}

// accept serves links dialled by peers until the listener closes.
func (r *Relay) accept(ctx context.Context, ln net.Listener) {
	for {
		raw, err := ln.Accept()
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				r.log.Warn("relay accept", "err", err)
			}
			return
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			c := tls.Server(newHoleConn(raw, nil), r.id.TLSConfig(alpn))
			s, lctx, err := r.handshake(ctx, c, nil, netip.AddrPort{})
			if err != nil {
				raw.Close()
				r.log.Debug("relay link refused", "remote", raw.RemoteAddr(), "err", err)
				return
			}
			_ = s.l.run(lctx, s) // logs its end; the dialler reconnects
		}()
	}
}

// handshake runs TLS (which fails without the cluster key), exchanges
// hellos and derives the SRTP keys of both directions. l is nil on the
// accepting side, which learns the peer from its hello and gets the link's
// context back.
func (r *Relay) handshake(ctx context.Context, c *tls.Conn, l *link, peerAddr netip.AddrPort) (*session, context.Context, error) {
	dialing := l != nil
	_ = c.SetDeadline(time.Now().Add(r.cfg.LinkTimeout))
	if err := c.HandshakeContext(ctx); err != nil {
		r.handshakeFailures.Add(1)
		return nil, nil, fmt.Errorf("relay: tls handshake: %w", err)
	}
	nonce := make([]byte, nonceLen)
	_, _ = cryptorand.Read(nonce)
	me := hello{Version: protocolVersion, Node: r.cfg.NodeName, Nonce: nonce, UDPPort: r.Addr().Port()}
	myHello := controlFrame(KindHello, "", "", appendHello(nil, me))
	br := bufio.NewReaderSize(c, 4096)
	if dialing { // the dialler speaks first
		if err := writeControl(c, myHello); err != nil {
			return nil, nil, err
		}
	}
	f, err := readControl(br, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("relay: read hello: %w", err)
	}
	if f.Kind != KindHello {
		return nil, nil, fmt.Errorf("relay: first frame is kind %d, not hello", f.Kind)
	}
	peer, err := decodeHello(f.Payload)
	if err != nil {
		return nil, nil, err
	}
	if peer.Node == r.cfg.NodeName {
		return nil, nil, fmt.Errorf("relay: peer claims this node's name %q", peer.Node)
	}
	var lctx context.Context
	dn, an := me.Nonce, peer.Nonce // the dialler's nonce first
	if dialing {
		if peer.Node != l.peer {
			return nil, nil, fmt.Errorf("relay: dialled %s but %s answered", l.peer, peer.Node)
		}
	} else {
		if err := writeControl(c, myHello); err != nil {
			return nil, nil, err
		}
		if l, lctx, err = r.acceptedLink(peer.Node); err != nil {
			return nil, nil, err
		}
		if hc, ok := c.NetConn().(*holeConn); ok {
			hc.link.Store(l) // from now on in the link's black hole, if a test opens one
		}
		rip, err := netip.ParseAddrPort(c.RemoteAddr().String())
		if err != nil {
			return nil, nil, fmt.Errorf("relay: peer address: %w", err)
		}
		peerAddr = netip.AddrPortFrom(rip.Addr(), peer.UDPPort)
		dn, an = peer.Nonce, me.Nonce
	}
	_ = c.SetDeadline(time.Time{})

	st := c.ConnectionState()
	exp, err := st.ExportKeyingMaterial(labelExporter, nil, exporterLen)
	if err != nil {
		return nil, nil, fmt.Errorf("relay: tls exporter: %w", err)
	}
	sk, ss, err := srtpKeys(r.cfg.ClusterKey, exp, dn, an, r.cfg.NodeName, peer.Node)
	if err != nil {
		return nil, nil, err
	}
	rk, rs, err := srtpKeys(r.cfg.ClusterKey, exp, dn, an, peer.Node, r.cfg.NodeName)
	if err != nil {
		return nil, nil, err
	}
	enc, err := srtp.CreateContext(sk, ss, srtp.ProtectionProfileAeadAes128Gcm)
	if err != nil {
		return nil, nil, fmt.Errorf("relay: srtp: %w", err)
	}
	dec, err := srtp.CreateContext(rk, rs, srtp.ProtectionProfileAeadAes128Gcm, srtp.SRTPReplayProtection(replayWindow))
	if err != nil {
		return nil, nil, fmt.Errorf("relay: srtp: %w", err)
	}
	return &session{
		l:      l,
		conn:   c,
		br:     br,
		udpAP:  netip.AddrPortFrom(peerAddr.Addr().Unmap(), peerAddr.Port()),
		enc:    enc,
		dec:    dec,
		plain:  make([]byte, 0, datagramBuf),
		tx:     newSlots(txSlots, datagramBuf),
		txLen:  make([]int, txSlots),
		txKick: make(chan struct{}, 1),
		decBuf: make([]byte, 0, datagramBuf),
		nack:   make([]byte, 0, 2*maxNACKGap),
		out:    make(chan []byte, r.cfg.QueueLen),
		done:   make(chan struct{}),
	}, lctx, nil
}

// session is one connection of a link: its TLS control stream and the SRTP
// contexts keyed for it.
type session struct {
	l     *link
	conn  net.Conn
	br    *bufio.Reader
	udpAP netip.AddrPort

	sendMu sync.Mutex // guards enc, seq, hdr, plain, txLen, head, tail
	enc    *srtp.Context
	seq    uint16
	hdr    rtp.Header
	plain  []byte
	// tx holds sealed datagrams from tail to head (mod txSlots) until the
	// send goroutine writes them in batches.
	tx         [][]byte
	txLen      []int
	head, tail uint64
	txKick     chan struct{}

	recvMu sync.Mutex // guards dec, decHdr, decBuf, nack (the receive goroutine's; uncontended)
	dec    *srtp.Context
	decHdr rtp.Header
	decBuf []byte
	nack   []byte

	out       chan []byte
	done      chan struct{}
	closeOnce sync.Once
}

func (s *session) close() {
	s.closeOnce.Do(func() {
		close(s.done)
		s.conn.Close()
	})
}

// run installs s as the link's session and serves it until it breaks or
// ctx ends.
func (l *link) run(ctx context.Context, s *session) error {
	r := l.r
	if old := l.sess.Swap(s); old != nil {
		old.close()
	}
	r.setAddr(s.udpAP, l)
	if l.stats.sessions.Add(1) > 1 {
		l.stats.reconnects.Add(1)
	}
	r.log.Info("relay link up", "peer", l.peer, "udp", s.udpAP)
	if fn := r.cfg.OnLinkChange; fn != nil {
		fn(l.peer, true, nil)
	}

	// Tell the peer every channel relayed with it and our tracks in each;
	// ask for keyframes of its tracks we already had (a resumed link).
	r.mu.Lock()
	chans := r.channelsOf(l)
	r.mu.Unlock()
	for _, ch := range chans {
		s.announce(ch)
	}
	for _, t := range l.inboundTracks() {
		t.requestKeyframe(true)
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.readLoop() })
	g.Go(func() error { return s.sendLoop(gctx) })
	g.Go(func() error { return s.writeLoop(gctx) })
	g.Go(func() error { return s.heartbeat(gctx) })
	g.Go(func() error {
		select {
		case <-gctx.Done():
		case <-s.done:
		}
		s.close()
		return nil
	})
	err := g.Wait()
	l.sess.CompareAndSwap(s, nil)
	if ctx.Err() == nil {
		r.log.Info("relay link down", "peer", l.peer, "err", err)
	}
	if fn := r.cfg.OnLinkChange; fn != nil {
		if err == nil {
			err = errClosed
		}
		fn(l.peer, false, err)
	}
	return err
}

// announce sends the channel-open of ch with the ids of our tracks in it,
// then each track's description.
func (s *session) announce(ch *channel) {
	tracks := ch.localTracks()
	var p []byte
	p = binary.BigEndian.AppendUint16(p, uint16(len(tracks)))
	for _, t := range tracks {
		p = append(p, byte(len(t.info.ID)))
		p = append(p, t.info.ID...)
	}
	s.control(KindChannelOpen, ch.name, "", p)
	for _, t := range tracks {
		s.enqueue(trackOpenFrame(ch.name, t.info))
	}
}

func (s *session) control(k Kind, channel, track string, payload []byte) bool {
	return s.enqueue(controlFrame(k, channel, track, payload))
}

// enqueue queues a control frame without blocking; a full queue drops it.
func (s *session) enqueue(b []byte) bool {
	select {
	case <-s.done:
		return false
	default:
	}
	select {
	case s.out <- b:
		return true
	default:
		s.l.stats.drops.Add(1)
		return false
	}
}

// controlFrame returns a length-prefixed frame for the control stream.
func controlFrame(k Kind, channel, track string, payload []byte) []byte {
	b := make([]byte, 4, 4+frameHeaderLen+len(channel)+len(track)+len(payload))
	b = appendFrameStr(b, k, 0, channel, track, payload)
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

func trackOpenFrame(channel string, info TrackInfo) []byte {
	return controlFrame(KindTrackOpen, channel, info.ID, appendTrackInfo(nil, info))
}

func writeControl(w io.Writer, b []byte) error {
	_, err := w.Write(b)
	return err
}

// readControl reads one length-prefixed frame into buf (grown as needed).
func readControl(br *bufio.Reader, buf []byte) (Frame, error) {
	var n [4]byte
	if _, err := io.ReadFull(br, n[:]); err != nil {
		return Frame{}, err
	}
	size := binary.BigEndian.Uint32(n[:])
	if size < frameHeaderLen || size > maxControlFrame {
		return Frame{}, fmt.Errorf("%w: control frame of %d bytes", ErrFrameLength, size)
	}
	if cap(buf) < int(size) {
		buf = make([]byte, size)
	}
	buf = buf[:size]
	if _, err := io.ReadFull(br, buf); err != nil {
		return Frame{}, err
	}
	return DecodeFrame(buf)
}

func (s *session) writeLoop(ctx context.Context) error {
	bw := bufio.NewWriterSize(s.conn, 32<<10)
	timeout := s.l.r.cfg.LinkTimeout
	for {
		var b []byte
		select {
		case <-ctx.Done():
			return nil
		case <-s.done:
			return nil
		case b = <-s.out:
		}
		_ = s.conn.SetWriteDeadline(time.Now().Add(timeout))
		if _, err := bw.Write(b); err != nil {
			return err
		}
		// Batch whatever else is queued, then flush.
		for more := true; more; {
			select {
			case b = <-s.out:
				if _, err := bw.Write(b); err != nil {
					return err
				}
			default:
				more = false
			}
		}
		if err := bw.Flush(); err != nil {
			return err
		}
	}
}

func (s *session) heartbeat(ctx context.Context) error {
	t := time.NewTicker(s.l.r.cfg.HeartbeatInterval)
	defer t.Stop()
	var ts [8]byte
	for {
		s.control(KindHeartbeat, "", "", nil)
		binary.BigEndian.PutUint64(ts[:], uint64(s.l.r.now()))
		_ = s.sendDatagram(KindPing, 0, "", "", ts[:])
		select {
		case <-ctx.Done():
			return nil
		case <-s.done:
			return nil
		case <-t.C:
		}
	}
}

// readLoop serves the control stream. A silent stream (no heartbeat for
// LinkTimeout) is broken.
func (s *session) readLoop() error {
	l, r := s.l, s.l.r
	buf := make([]byte, 64<<10)
	for {
		_ = s.conn.SetReadDeadline(time.Now().Add(r.cfg.LinkTimeout))
		f, err := readControl(s.br, buf)
		if err != nil {
			select {
			case <-s.done:
				return nil
			default:
			}
			return fmt.Errorf("relay: control stream from %s: %w", l.peer, err)
		}
		if err := l.handleControl(s, f); err != nil {
			r.log.Warn("relay control frame refused", "peer", l.peer, "kind", f.Kind, "err", err)
		}
	}
}

func (l *link) handleControl(s *session, f Frame) error {
	r := l.r
	switch f.Kind {
	case KindHeartbeat:
		return nil
	case KindChannelOpen:
		rd := reader{b: f.Payload}
		n := int(rd.u16())
		keep := make(map[string]bool, n)
		for range n {
			keep[rd.str8()] = true
		}
		if rd.err != nil {
			return rd.err
		}
		ch, err := r.ensureChannel(string(f.Channel))
		if err != nil {
			return err
		}
		// Tracks the peer no longer has ended while the link was down.
		l.dropInbound(ch.name, keep)
		if ch.attach(l) {
			s.announce(ch)
		}
		return nil
	case KindChannelClose:
		r.mu.Lock()
		ch := r.channels[string(f.Channel)]
		r.mu.Unlock()
		if ch != nil {
			r.detach(ch, l)
		}
		return nil
	case KindTrackOpen:
		info, err := decodeTrackInfo(string(f.Track), f.Payload)
		if err != nil {
			return err
		}
		if err := info.validate(); err != nil {
			return err
		}
		return l.addInbound(string(f.Channel), info)
	case KindTrackClose:
		l.removeInbound(string(f.Channel), string(f.Track))
		return nil
	case KindKeyframe:
		r.chMu.RLock()
		ch := r.channels[string(f.Channel)]
		r.chMu.RUnlock()
		if ch == nil {
			return nil
		}
		l.stats.keyframesIn.Add(1)
		if t := ch.localTrack(f.Track); t != nil {
			t.requestKeyframe()
		}
		return nil
	case KindMessage:
		m, err := decodeMessage(f.Payload)
		if err != nil {
			return err
		}
		r.chMu.RLock()
		ch := r.channels[string(f.Channel)]
		r.chMu.RUnlock()
		if ch == nil {
			l.stats.drops.Add(1)
			return nil
		}
		ch.mu.Lock()
		sink, linked := ch.sink, false
		for _, x := range ch.linkList() {
			linked = linked || x == l
		}
		ch.mu.Unlock()
		if sink == nil || !linked {
			l.stats.drops.Add(1)
			return nil
		}
		ch.stats.messagesIn.Add(1)
		sink.DeliverMessage(l.peer, m)
		return nil
	}
	return fmt.Errorf("%w: %d on the control stream", ErrFrameKind, f.Kind)
}

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
		l.stats.drops.Add(1)
		ch.stats.drops.Add(1)
		return nil
	}
	if err := s.sendDatagram(KindRTP, flags, ch.name, track, pkt); err != nil {
		l.stats.drops.Add(1)
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
			var sent int
			var err error
			if s.l.hole.Load() != nil {
				sent = len(bufs) // into the black hole (a test seam): gone without a trace
			} else {
				sent, err = bio.writeBatch(bufs)
			}
			s.sendMu.Lock()
			s.tail += uint64(len(bufs))
			s.sendMu.Unlock()
			st.packetsOut.Add(uint64(sent))
			st.bytesOut.Add(bytes)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return nil
				}
				st.drops.Add(uint64(len(bufs) - sent))
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

// readDatagrams is the relay's single receive goroutine.
func (r *Relay) readDatagrams(c *net.UDPConn) {
	bio, err := newBatchIO(c, batchLen)
	if err != nil {
		r.log.Error("relay: udp socket", "err", err)
		return
	}
	bio.enableGRO()
	bufs := newSlots(batchLen, 64<<10)
	for i := range bufs {
		bufs[i] = bufs[i][:cap(bufs[i])]
	}
	sizes := make([]int, batchLen)
	from := make([]netip.AddrPort, batchLen)
	for {
		n, err := bio.readBatch(bufs, sizes, from)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		for i := range n {
			p := bufs[i][:sizes[i]]
			seg := bio.segSize(i)
			if seg <= 0 || seg >= len(p) {
				r.handleDatagram(p, from[i])
				continue
			}
			for ; len(p) > 0; p = p[min(seg, len(p)):] {
				r.handleDatagram(p[:min(seg, len(p))], from[i])
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
	if l.hole.Load() != nil {
		return // lost in the black hole (a test seam): never arrived
	}
	s := l.sess.Load()
	if s == nil {
		l.stats.drops.Add(1)
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
		l.stats.drops.Add(1)
		return
	}
	switch f.Kind {
	case KindRTP:
		l.inMu.RLock()
		t := l.in[string(f.Channel)][string(f.Track)]
		l.inMu.RUnlock()
		if t == nil {
			l.stats.drops.Add(1)
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
		l.stats.drops.Add(1)
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

// inTrack is a track a peer relays to this node. It is in its link's
// table (l.in) before the sink's AddRemoteTrack is called, and its writer is
// set when that returns: the receive path drops (and counts) the packets
// that arrive in between, and delivers every one after.
type inTrack struct {
	l      *link
	ch     *channel
	info   TrackInfo
	w      atomic.Pointer[writerRef] // nil until AddRemoteTrack returns; read per packet
	lastKF atomic.Int64

	mu     sync.Mutex // orders setWriter against close
	closed bool

	// Only the receive goroutine touches these.
	started bool
	highest uint16
}

// writerRef holds a TrackWriter behind an atomic pointer.
type writerRef struct{ TrackWriter }

// setWriter makes w the track's writer and reports whether it did: false
// if the track was closed meanwhile (the caller closes w then).
func (t *inTrack) setWriter(w TrackWriter) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.w.Store(&writerRef{w})
	return true
}

// close closes the track's writer, if it has one yet; the track is out of
// its link's table already. Safe to call twice.
func (t *inTrack) close() {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.closed = true
	w := t.w.Load()
	t.mu.Unlock()
	if w != nil {
		_ = w.Close()
	}
}

var _ KeyframeRequester = (*inTrack)(nil)

func (l *link) addInbound(channel string, info TrackInfo) error {
	r := l.r
	r.chMu.RLock()
	ch := r.channels[channel]
	r.chMu.RUnlock()
	if ch == nil {
		return fmt.Errorf("%w: %s", ErrNotRelayed, channel)
	}
	// The track goes into the table before AddRemoteTrack is called, so that
	// no packet arriving once it has returned is taken for an unknown track.
	l.inMu.Lock()
	t := l.in[channel][info.ID]
	resumed := t != nil
	if !resumed {
		t = &inTrack{l: l, ch: ch, info: info}
		m := l.in[channel]
		if m == nil {
			m = map[string]*inTrack{}
			l.in[channel] = m
		}
		m[info.ID] = t
	}
	l.inMu.Unlock()
	if resumed { // the track carries on
		t.requestKeyframe(true)
		return nil
	}
	// Filed first, then checked: a channel that ends from now on drops the
	// track (dropChannel marks it closed before it drops the inbound ones).
	ch.mu.Lock()
	sink, closed := ch.sink, ch.closed
	ch.mu.Unlock()
	if sink == nil || closed {
		l.unfile(channel, t)
		return fmt.Errorf("%w: %s", ErrNotRelayed, channel)
	}
	w, err := sink.AddRemoteTrack(l.peer, info, t)
	if err != nil {
		l.unfile(channel, t)
		return fmt.Errorf("relay: add remote track %s of %s: %w", info.ID, channel, err)
	}
	if !t.setWriter(w) { // removed while AddRemoteTrack ran
		_ = w.Close()
		return nil
	}
	t.requestKeyframe(true)
	return nil
}

// unfile takes t out of the link's table, if it is still there, and closes
// it.
func (l *link) unfile(channel string, t *inTrack) {
	l.inMu.Lock()
	if l.in[channel][t.info.ID] == t {
		delete(l.in[channel], t.info.ID)
		if len(l.in[channel]) == 0 {
			delete(l.in, channel)
		}
	}
	l.inMu.Unlock()
	t.close()
}

func (l *link) removeInbound(channel, id string) {
	l.inMu.Lock()
	t := l.in[channel][id]
	if t != nil {
		delete(l.in[channel], id)
		if len(l.in[channel]) == 0 {
			delete(l.in, channel)
		}
	}
	l.inMu.Unlock()
	if t != nil {
		t.close()
	}
}

// dropInbound closes the peer's tracks in channel except those in keep.
func (l *link) dropInbound(channel string, keep map[string]bool) {
	var gone []*inTrack
	l.inMu.Lock()
	for id, t := range l.in[channel] {
		if !keep[id] {
			gone = append(gone, t)
			delete(l.in[channel], id)
		}
	}
	if len(l.in[channel]) == 0 {
		delete(l.in, channel)
	}
	l.inMu.Unlock()
	for _, t := range gone {
		t.close()
	}
}

func (l *link) inboundTracks() []*inTrack {
	l.inMu.RLock()
	defer l.inMu.RUnlock()
	var out []*inTrack
	for _, m := range l.in {
		for _, t := range m {
			out = append(out, t)
		}
	}
	return out
}

// receive hands a relayed packet to the local channel and asks the
// sending side for packets a gap says were lost.
func (t *inTrack) receive(s *session, pkt []byte, flags uint8) {
	l, ch := t.l, t.ch
	w := t.w.Load()
	if w == nil { // AddRemoteTrack has not returned yet
		l.stats.drops.Add(1)
		ch.stats.drops.Add(1)
		return
	}
	if len(pkt) >= 4 {
		seq := binary.BigEndian.Uint16(pkt[2:4])
		switch d := int16(seq - t.highest); {
		case !t.started:
			t.started, t.highest = true, seq
		case d > 1 && d <= maxNACKGap:
			t.nack(s, t.highest+1, seq)
			t.highest = seq
		case d > 0:
			t.highest = seq
		}
	}
	if flags&FlagRetransmit != 0 {
		ch.stats.retransmitsIn.Add(1)
	}
	ch.stats.packetsIn.Add(1)
	ch.stats.bytesIn.Add(uint64(len(pkt)))
	if err := w.WriteRTP(pkt); err != nil {
		l.stats.drops.Add(1)
		ch.stats.drops.Add(1)
	}
}

// nack asks for sequence numbers from..to-1.
func (t *inTrack) nack(s *session, from, to uint16) {
	p := s.nack[:0]
	for q := from; q != to; q++ {
		p = binary.BigEndian.AppendUint16(p, q)
	}
	if s.sendDatagram(KindNACK, 0, t.ch.name, t.info.ID, p) == nil {
		t.l.stats.nacksOut.Add(1)
	}
}

// RequestKeyframe asks the publisher's node for a keyframe, coalescing
// requests: at most one per KeyframeInterval crosses the link.
func (t *inTrack) RequestKeyframe() { t.requestKeyframe(false) }

func (t *inTrack) requestKeyframe(force bool) {
	l := t.l
	now := l.r.now()
	if force {
		t.lastKF.Store(now)
	} else if !rateLimit(&t.lastKF, now, int64(l.r.cfg.KeyframeInterval)) {
		l.stats.keyframesCoalesced.Add(1)
		return
	}
	if s := l.sess.Load(); s != nil && s.control(KindKeyframe, t.ch.name, t.info.ID, nil) {
		l.stats.keyframesOut.Add(1)
	}
}
