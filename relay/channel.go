package relay

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// OpenChannel starts relaying channel between this node and peer (which
// SetPeer named), both ways, until CloseChannel or until peer closes it.
// The first call for a channel calls Local.RelayChannel. Opening again is
// harmless.
func (r *Relay) OpenChannel(channel, peer string) error {
	if channel == "" || len(channel) > maxIDLen {
		return fmt.Errorf("relay: channel id %q must be 1 to %d bytes", channel, maxIDLen)
	}
	l, err := r.peer(peer)
	if err != nil {
		return err
	}
	ch, err := r.ensureChannel(channel)
	if err != nil {
		return err
	}
	if ch.attach(l) {
		if s := l.sess.Load(); s != nil {
			s.announce(ch)
		}
	}
	return nil
}

// CloseChannel ends the relay of channel on this node (its session ended):
// peers are told, remote tracks close and the sink's Close is called.
func (r *Relay) CloseChannel(channel string) error {
	ch, err := r.channel(channel)
	if err != nil {
		return err
	}
	for _, l := range ch.linkList() {
		if s := l.sess.Load(); s != nil {
			s.control(KindChannelClose, channel, "", nil)
		}
	}
	r.dropChannel(ch)
	return nil
}

// AddLocalTrack starts relaying a local track of channel to every peer the
// channel is open with, now and later. keyframe is called (rate-limited)
// when a peer's subscribers need a keyframe; it must not block.
func (r *Relay) AddLocalTrack(channel string, info TrackInfo, keyframe KeyframeRequester) (*LocalTrack, error) {
	if err := info.validate(); err != nil {
		return nil, err
	}
	ch, err := r.channel(channel)
	if err != nil {
		return nil, err
	}
	t := &LocalTrack{r: r, ch: ch, info: info, keyframe: keyframe}
	if r.cfg.NACKBuffer > 0 {
		t.ring = newRing(r.cfg.NACKBuffer, maxPacket)
	}
	ch.mu.Lock()
	if ch.closed {
		ch.mu.Unlock()
		return nil, fmt.Errorf("%w: %s", ErrNotRelayed, channel)
	}
	if old := ch.out[info.ID]; old != nil {
		old.closed.Store(true)
	}
	ch.out[info.ID] = t
	ch.mu.Unlock()
	open := trackOpenFrame(channel, info)
	for _, l := range ch.linkList() {
		if s := l.sess.Load(); s != nil {
			s.enqueueControl(KindTrackOpen, channel, info.ID, open)
		}
	}
	return t, nil
}

// SendMessage relays a local message of channel to every peer the channel
// is open with. It does not block: a link that is down, or whose message
// queue (Config.QueueLen) is full, drops it (counted in LinkStats.Dropped:
// LinkDown, MessageQueueFull). Control frames never wait behind messages
// and are never dropped.
func (r *Relay) SendMessage(channel string, m Message) error {
	ch, err := r.channel(channel)
	if err != nil {
		return err
	}
	p, err := appendMessage(nil, m)
	if err != nil {
		return err
	}
	b := controlFrame(KindMessage, channel, "", p)
	for _, l := range ch.linkList() {
		s := l.sess.Load()
		if s == nil {
			l.stats.drops.linkDown.Add(1)
		} else if s.enqueueMessage(b) {
			ch.stats.messagesOut.Add(1)
			continue
		}
		ch.stats.drops.Add(1)
	}
	return nil
}

// channel returns the relayed channel name, or an error if there is none
// or the relay is closed.
func (r *Relay) channel(name string) (*channel, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state.Closed() {
		return nil, errClosed
	}
	ch := r.channels[name]
	if ch == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotRelayed, name)
	}
	return ch, nil
}

// ensureChannel returns the channel, creating it and asking Local for its
// sink on first use.
func (r *Relay) ensureChannel(name string) (*channel, error) {
	r.mu.Lock()
	if r.state.Closed() {
		r.mu.Unlock()
		return nil, errClosed
	}
	ch := r.channels[name]
	if ch == nil {
		ch = newChannel(name)
		r.chMu.Lock()
		r.channels[name] = ch
		r.chMu.Unlock()
	}
	r.mu.Unlock()
	ch.init.Do(func() {
		sink, err := r.cfg.Local.RelayChannel(r, name)
		if err != nil {
			ch.initErr = fmt.Errorf("relay: channel %s: %w", name, err)
			return
		}
		ch.mu.Lock()
		ch.sink = sink
		ch.mu.Unlock()
		r.log.Debug("channel relayed", "channel", name)
	})
	if ch.initErr != nil {
		r.removeChannel(ch)
		return nil, ch.initErr
	}
	return ch, nil
}

func (r *Relay) removeChannel(ch *channel) {
	r.mu.Lock()
	r.chMu.Lock()
	if r.channels[ch.name] == ch {
		delete(r.channels, ch.name)
	}
	r.chMu.Unlock()
	r.mu.Unlock()
}

// dropChannel ends a channel locally: its tracks stop, remote tracks close,
// the sink hears Close.
func (r *Relay) dropChannel(ch *channel) {
	r.removeChannel(ch)
	ch.mu.Lock()
	if ch.closed {
		ch.mu.Unlock()
		return
	}
	ch.closed = true
	for _, t := range ch.out {
		t.closed.Store(true)
	}
	sink := ch.sink
	ch.mu.Unlock()
	for _, l := range ch.linkList() {
		l.dropInbound(ch.name, nil)
	}
	ch.links.Store(&[]*link{})
	if sink != nil {
		sink.Close()
	}
	r.log.Debug("channel relay ended", "channel", ch.name)
}

// detach stops relaying ch with l (the peer closed it or went away); a
// channel left with no link ends.
func (r *Relay) detach(ch *channel, l *link) {
	l.dropInbound(ch.name, nil)
	if ch.detach(l) == 0 {
		r.dropChannel(ch)
	}
}

func (r *Relay) channelsOf(l *link) []*channel {
	var out []*channel
	for _, ch := range r.channels {
		for _, x := range ch.linkList() {
			if x == l {
				out = append(out, ch)
			}
		}
	}
	return out
}

// channel is one relayed channel.
type channel struct {
	name    string
	init    sync.Once
	initErr error
	links   atomic.Pointer[[]*link] // copy on write; read per packet

	mu     sync.Mutex
	closed bool
	sink   ChannelSink
	out    map[string]*LocalTrack

	stats channelCounters
}

func newChannel(name string) *channel {
	ch := &channel{name: name, out: map[string]*LocalTrack{}}
	ch.links.Store(&[]*link{})
	return ch
}

func (ch *channel) linkList() []*link { return *ch.links.Load() }

// attach adds l and reports whether it was new.
func (ch *channel) attach(l *link) bool {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.closed {
		return false
	}
	cur := ch.linkList()
	for _, x := range cur {
		if x == l {
			return false
		}
	}
	next := append(append(make([]*link, 0, len(cur)+1), cur...), l)
	ch.links.Store(&next)
	return true
}

// detach removes l and returns how many links are left.
func (ch *channel) detach(l *link) int {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	cur := ch.linkList()
	next := make([]*link, 0, len(cur))
	for _, x := range cur {
		if x != l {
			next = append(next, x)
		}
	}
	ch.links.Store(&next)
	return len(next)
}

func (ch *channel) localTrack(id []byte) *LocalTrack {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.out[string(id)]
}

func (ch *channel) localTracks() []*LocalTrack {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	out := make([]*LocalTrack, 0, len(ch.out))
	for _, t := range ch.out {
		out = append(out, t)
	}
	return out
}

// LocalTrack is a local track the relay sends to the channel's peers. Get
// one from Relay.AddLocalTrack.
type LocalTrack struct {
	r        *Relay
	ch       *channel
	info     TrackInfo
	keyframe KeyframeRequester
	ring     *ring
	closed   atomic.Bool

	// paused lists the links whose peer does not want the track (copy on
	// write under pauseMu); WriteRTP skips them.
	pauseMu sync.Mutex
	paused  atomic.Pointer[[]*link]
}

// setWanted records whether the peer of l wants the track's packets.
func (t *LocalTrack) setWanted(l *link, wanted bool) {
	t.pauseMu.Lock()
	defer t.pauseMu.Unlock()
	var next []*link
	if p := t.paused.Load(); p != nil {
		for _, x := range *p {
			if x != l {
				next = append(next, x)
			}
		}
	}
	if !wanted {
		next = append(next, l)
	}
	t.paused.Store(&next)
}

// isPaused reports whether the peer of l said it does not want the track.
func (t *LocalTrack) isPaused(l *link) bool {
	if p := t.paused.Load(); p != nil {
		for _, x := range *p {
			if x == l {
				return true
			}
		}
	}
	return false
}

// Info returns the track's description.
func (t *LocalTrack) Info() TrackInfo { return t.info }

// WriteRTP sends one RTP packet of the track to every peer the channel is
// open with but those that said they do not want it (Wanter), and keeps a
// copy to answer NACKs. It allocates nothing, does
// not block on the network and does not keep pkt; it is safe for
// concurrent use. A link that is down, or whose send queue is full, drops
// the packet (counted in the stats) and WriteRTP returns an error for it.
func (t *LocalTrack) WriteRTP(pkt []byte) error {
	if t.closed.Load() {
		return errClosed
	}
	if len(pkt) > maxPacket {
		t.r.drops.tooLarge.Add(1)
		t.ch.stats.drops.Add(1)
		return ErrTooLarge
	}
	if t.ring != nil {
		t.ring.put(pkt)
	}
	var err error
	for _, l := range t.ch.linkList() {
		if t.isPaused(l) {
			continue
		}
		if e := l.sendRTP(t.ch, t.info.ID, pkt, 0); e != nil && err == nil {
			err = e
		}
	}
	return err
}

// Close stops relaying the track; peers remove it. Safe to call twice.
func (t *LocalTrack) Close() error {
	if t.closed.Swap(true) {
		return nil
	}
	t.ch.mu.Lock()
	if t.ch.out[t.info.ID] == t {
		delete(t.ch.out, t.info.ID)
	}
	t.ch.mu.Unlock()
	b := controlFrame(KindTrackClose, t.ch.name, t.info.ID, nil)
	for _, l := range t.ch.linkList() {
		if s := l.sess.Load(); s != nil {
			s.enqueueControl(KindTrackClose, t.ch.name, t.info.ID, b)
		}
	}
	return nil
}

// requestKeyframe passes a peer's keyframe request to the publisher. Each
// peer already sends at most one per KeyframeInterval; the SFU coalesces
// the requests of several peers with its local subscribers' ones.
func (t *LocalTrack) requestKeyframe() {
	if t.keyframe != nil {
		t.keyframe.RequestKeyframe()
	}
}

// rateLimit reports whether an event at now may pass given the last one
// that did, and records it if so.
func rateLimit(last *atomic.Int64, now, interval int64) bool {
	for {
		prev := last.Load()
		if prev != 0 && now-prev < interval {
			return false
		}
		if now == 0 {
			now = 1 // 0 means never
		}
		if last.CompareAndSwap(prev, now) {
			return true
		}
	}
}
