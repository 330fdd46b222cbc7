package relay

import (
	"bufio"
	"context"
	"errors"
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
	// downSince is when the link last went down, or was made, in
	// UnixNano; 0 while a session is up (health.go).
	downSince atomic.Int64

	inMu sync.RWMutex
	in   map[string]map[string]*inTrack // channel → track id → track

	stats linkCounters
}

func (r *Relay) newLink(peer string) *link {
	l := &link{
		r:      r,
		peer:   peer,
		dialer: r.cfg.NodeName < peer,
		kick:   make(chan struct{}, 1),
		in:     map[string]map[string]*inTrack{},
	}
	l.downSince.Store(time.Now().UnixNano())
	return l
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
	if r.state.Closed() || r.runCtx == nil {
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

	// ctl holds control frames until the write loop takes them (control.go):
	// never full, coalesced by ctlKeys (kind, channel, track → index).
	ctlMu   sync.Mutex
	ctl     [][]byte
	ctlKeys map[string]int
	ctlDone bool
	ctlKick chan struct{}

	out       chan []byte // messages, at most Config.QueueLen
	done      chan struct{}
	closeOnce sync.Once
}

func (s *session) close() {
	s.closeOnce.Do(func() {
		close(s.done)
		s.endControl()
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
	l.downSince.Store(0)
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
	if l.sess.CompareAndSwap(s, nil) {
		l.downSince.Store(time.Now().UnixNano())
	}
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
