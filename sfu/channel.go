package sfu

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/pion/webrtc/v4"
)

// Channel is a room: the connections that named the same channel_id on this
// node, the tracks they publish, the remote tracks injected by the relay and
// the observers. Get one with SFU.Channel or through Join.
type Channel struct {
	// Lock order: SFU.mu alone; Channel.mu, then Connection.mu, then
	// source.subMu or a keyframe limiter's mu (SetAnswer binds down
	// tracks, which asks for a keyframe). A track's write lock (source.mu)
	// is taken under none of them; under it, only a keyframe limiter's.
	// A connection never calls into its channel with its own lock held,
	// and closes itself with no lock held.

	sfu  *SFU
	id   string
	dead atomic.Bool

	mu        sync.Mutex
	conns     []*Connection
	sources   []*source
	observers []*observerEntry
}

type observerEntry struct {
	o Observer
	q *eventQueue
}

func newChannel(s *SFU, id string) *Channel {
	return &Channel{sfu: s, id: id}
}

// ID returns the channel id.
func (ch *Channel) ID() string { return ch.id }

// Counts returns the channel's local connection counts.
func (ch *Channel) Counts() ChannelCounts {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.countsLocked()
}

func (ch *Channel) countsLocked() ChannelCounts {
	var c ChannelCounts
	for _, conn := range ch.conns {
		c.Connections++
		switch conn.role {
		case RoleSendrecv:
			c.Sendrecv++
		case RoleSendonly:
			c.Sendonly++
		case RoleRecvonly:
			c.Recvonly++
		}
	}
	return c
}

var errChannelDead = fmt.Errorf("sfu: channel is gone: %w", net.ErrClosed)

// addConnection adds c and subscribes it to every current track.
func (ch *Channel) addConnection(c *Connection) error {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.dead.Load() {
		return errChannelDead
	}
	// A connection closed while joining (DisconnectAll, SFU.Close) must not
	// enter the channel: nothing would ever take it out.
	c.mu.Lock()
	closed := c.closed
	if !closed {
		c.ch = ch
	}
	c.mu.Unlock()
	if closed {
		return fmt.Errorf("sfu: join: %w", net.ErrClosed)
	}
	ch.conns = append(ch.conns, c)
	if c.role.receives() {
		for _, src := range ch.sources {
			if src.info.StreamID != c.id {
				if err := c.addDown(src); err != nil {
					c.logger.Warn("cannot subscribe to track", "track", src.info.ID, "err", err)
				}
			}
		}
	}
	ch.eventLocked(ConnectionCreated, c)
	return nil
}

// eventLocked tells every connection and observer that c joined or left.
func (ch *Channel) eventLocked(t EventType, c *Connection) {
	ev := ConnectionEvent{Type: t, ChannelID: ch.id, ConnectionID: c.id, ClientID: c.clientID, Role: c.role, Counts: ch.countsLocked()}
	for _, o := range ch.conns {
		o.event(ev)
	}
	for _, ob := range ch.observers {
		if fn := ob.o.ConnectionEvent; fn != nil {
			ob.q.push(func() { fn(ev) })
		}
	}
}

// removeConnection removes c and the tracks it published.
func (ch *Channel) removeConnection(c *Connection) {
	ch.mu.Lock()
	i := slices.Index(ch.conns, c)
	if i < 0 {
		ch.mu.Unlock()
		return
	}
	ch.conns = slices.Delete(ch.conns, i, i+1)
	for _, src := range slices.Clone(ch.sources) {
		if src.local == c {
			ch.removeSourceLocked(src)
		}
	}
	ch.eventLocked(ConnectionDestroyed, c)
	drop := ch.emptyLocked()
	ch.mu.Unlock()
	if drop {
		ch.sfu.dropChannel(ch)
	}
}

// emptyLocked marks the channel dead if nothing is left in it.
func (ch *Channel) emptyLocked() bool {
	if len(ch.conns) == 0 && len(ch.sources) == 0 && len(ch.observers) == 0 {
		ch.dead.Store(true)
		return true
	}
	return false
}

func validateTrack(info TrackInfo) error {
	switch {
	case info.ID == "":
		return fmt.Errorf("%w: empty ID", ErrInvalidTrack)
	case info.StreamID == "":
		return fmt.Errorf("%w: empty StreamID (the publisher's connection id)", ErrInvalidTrack)
	case info.Kind != webrtc.RTPCodecTypeAudio && info.Kind != webrtc.RTPCodecTypeVideo:
		return fmt.Errorf("%w: Kind must be audio or video", ErrInvalidTrack)
	case !strings.HasPrefix(strings.ToLower(info.Codec.MimeType), info.Kind.String()+"/"):
		return fmt.Errorf("%w: codec %q is not a %s codec", ErrInvalidTrack, info.Codec.MimeType, info.Kind)
	case info.Codec.ClockRate == 0:
		return fmt.Errorf("%w: codec clock rate is 0", ErrInvalidTrack)
	}
	return nil
}

// addSourceLocked adds src and subscribes every receiving connection but
// its publisher.
func (ch *Channel) addSourceLocked(src *source) error {
	if ch.dead.Load() {
		return errChannelDead
	}
	for _, s := range ch.sources {
		if s.info.ID == src.info.ID {
			return fmt.Errorf("%w: track id %q already in channel %q", ErrInvalidTrack, src.info.ID, ch.id)
		}
	}
	ch.sources = append(ch.sources, src)
	for _, c := range ch.conns {
		if c.role.receives() && c.id != src.info.StreamID {
			if err := c.addDown(src); err != nil {
				c.logger.Warn("cannot subscribe to track", "track", src.info.ID, "err", err)
			}
		}
	}
	return nil
}

// addLocalSource adds a track published by a local connection and reports
// it to the observers.
func (ch *Channel) addLocalSource(c *Connection, info TrackInfo, kr KeyframeRequester) (*source, error) {
	if err := validateTrack(info); err != nil {
		return nil, err
	}
	src := newSource(ch, info, kr, c)
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if !slices.Contains(ch.conns, c) {
		return nil, errChannelDead
	}
	if err := ch.addSourceLocked(src); err != nil {
		return nil, err
	}
	for _, ob := range ch.observers {
		if fn := ob.o.TrackAdded; fn != nil {
			tap := &TrackTap{src: src} // one per observer: each has its own sink
			ob.q.push(func() { fn(info, tap) })
		}
	}
	return src, nil
}

// AddRemoteTrack adds a track that comes from elsewhere (the relay) to the
// channel: every receiving connection but the one named by info.StreamID
// gets it by re-offer, exactly as a local track. Keyframe requests of its
// subscribers reach kr, coalesced and rate-limited; kr may be nil. Feed the
// packets with the returned writer's WriteRTP, and Close it to remove the
// track. The track is not reported to observers.
func (ch *Channel) AddRemoteTrack(info TrackInfo, kr KeyframeRequester) (*TrackWriter, error) {
	if err := validateTrack(info); err != nil {
		return nil, err
	}
	src := newSource(ch, info, kr, nil)
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if err := ch.addSourceLocked(src); err != nil {
		return nil, err
	}
	return &TrackWriter{src: src}, nil
}

// removeSource removes src if it is still in the channel.
func (ch *Channel) removeSource(src *source) {
	ch.mu.Lock()
	ch.removeSourceLocked(src)
	drop := ch.emptyLocked()
	ch.mu.Unlock()
	if drop {
		ch.sfu.dropChannel(ch)
	}
}

func (ch *Channel) removeSourceLocked(src *source) {
	i := slices.Index(ch.sources, src)
	if i < 0 {
		return
	}
	ch.sources = slices.Delete(ch.sources, i, i+1)
	src.close()
	for _, c := range ch.conns {
		c.removeDown(src)
	}
	if src.local != nil {
		info := src.info
		for _, ob := range ch.observers {
			if fn := ob.o.TrackRemoved; fn != nil {
				ob.q.push(func() { fn(info) })
			}
		}
	}
}

// deliverLocked queues a messaging data channel message for every
// connection but the sender that has the label and may receive on it.
// Holding ch.mu keeps every receiver's order equal to the order of
// delivery; nothing is sent under it (each connection's outbox sends).
// data is shared by every receiver and every observer: it is not written
// after this.
func (ch *Channel) deliverLocked(label, senderID string, data []byte) {
	var withID []byte // data behind the sender's id, made once if wanted
	for _, c := range ch.conns {
		if c.id != senderID {
			c.queueMessage(label, senderID, data, &withID)
		}
	}
}

// deliver is called by a local connection's "#" data channel with a
// message pion made for it.
func (ch *Channel) deliver(from *Connection, label string, data []byte) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if !slices.Contains(ch.conns, from) {
		return
	}
	ch.deliverLocked(label, from.id, data)
	if len(ch.observers) == 0 {
		return
	}
	msg := Message{Label: label, SenderID: from.id, Data: data}
	for _, ob := range ch.observers {
		if fn := ob.o.MessageReceived; fn != nil {
			ob.q.push(func() { fn(msg) })
		}
	}
}

// InjectMessage delivers a message of a remote connection (senderID) to
// every local connection that has the messaging data channel label, as if a
// local connection had sent it. Observers do not see it. The label must
// start with "#". data is kept, shared by every receiver, until sent: do
// not write it after the call.
func (ch *Channel) InjectMessage(label, senderID string, data []byte) error {
	if !strings.HasPrefix(label, "#") {
		return fmt.Errorf("sfu: inject message: label %q does not start with #", label)
	}
	if senderID == "" {
		return fmt.Errorf("sfu: inject message: empty sender id")
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.dead.Load() {
		return fmt.Errorf("sfu: inject message: %w", errChannelDead)
	}
	ch.deliverLocked(label, senderID, data)
	return nil
}

// Observe registers o. Its TrackAdded is first called for every current
// local track. The returned stop unregisters o and waits for its running
// callback, if any, to return (do not call it from inside a callback of the
// same observer). A channel that is gone returns an error wrapping
// net.ErrClosed: get a fresh one with SFU.Channel.
func (ch *Channel) Observe(o Observer) (stop func(), err error) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.dead.Load() {
		return nil, fmt.Errorf("sfu: observe: %w", errChannelDead)
	}
	ob := &observerEntry{o: o, q: newEventQueue()}
	ch.observers = append(ch.observers, ob)
	if fn := o.TrackAdded; fn != nil {
		for _, src := range ch.sources {
			if src.local != nil {
				info, tap := src.info, &TrackTap{src: src}
				ob.q.push(func() { fn(info, tap) })
			}
		}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			ch.mu.Lock()
			if i := slices.Index(ch.observers, ob); i >= 0 {
				ch.observers = slices.Delete(ch.observers, i, i+1)
			}
			drop := ch.emptyLocked()
			ch.mu.Unlock()
			ob.q.stop(true)
			if drop {
				ch.sfu.dropChannel(ch)
			}
		})
	}, nil
}

// close ends the channel: connections closed with reason, remote tracks
// removed, observers stopped.
func (ch *Channel) close(reason error) {
	ch.mu.Lock()
	ch.dead.Store(true)
	conns := slices.Clone(ch.conns)
	ch.mu.Unlock()
	for _, c := range conns {
		c.closeWith(reason)
	}
	ch.mu.Lock()
	for _, src := range slices.Clone(ch.sources) {
		ch.removeSourceLocked(src)
	}
	obs := ch.observers
	ch.observers = nil
	ch.mu.Unlock()
	for _, ob := range obs {
		ob.q.stop(true)
	}
}
