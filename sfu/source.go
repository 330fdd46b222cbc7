package sfu

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"

	"github.com/pion/webrtc/v4"
)

// This file is the contract between a channel and whatever feeds it from
// elsewhere (the relay): remote tracks and messages go in, local tracks and
// messages come out. Subscribers cannot tell a remote track from a local one:
// both are a source in the channel, fanned out by the same code, and both
// take keyframe requests through a KeyframeRequester.

// TrackInfo describes one track of a channel.
type TrackInfo struct {
	// ID is the track id, unique in the channel across all nodes; it is the
	// track part of the subscribers' a=msid line. Local tracks use
	// "<connection id>-audio" and "<connection id>-video".
	ID string
	// StreamID is the publishing connection's connection_id; it is the
	// stream part of a=msid, which the client SDK uses to tell publishers apart.
	StreamID string
	// Kind is audio or video.
	Kind webrtc.RTPCodecType
	// Codec is the codec of the RTP the source writes. MimeType and ClockRate
	// must be set; subscribers negotiate a payload type for it.
	Codec webrtc.RTPCodecCapability
	// Simulcast says the video comes as simulcast layers (r0, r1, r2),
	// each subscriber receiving one of them.
	Simulcast bool
}

// KeyframeRequester receives the keyframe requests (PLI/FIR) of a track's
// subscribers. The channel coalesces and rate-limits them (at most one per
// Config.KeyframeInterval per track) before calling RequestKeyframe.
//
// RequestKeyframe is called from internal goroutines and timers, never
// concurrently for one track; it must not block (queue the request).
type KeyframeRequester interface {
	RequestKeyframe()
}

// KeyframeRequesterFunc adapts a function to a KeyframeRequester.
type KeyframeRequesterFunc func()

// RequestKeyframe calls f.
func (f KeyframeRequesterFunc) RequestKeyframe() { f() }

var _ KeyframeRequester = KeyframeRequesterFunc(nil)

// TrackWriter feeds a remote track into a channel. Get one from
// Channel.AddRemoteTrack.
type TrackWriter struct {
	src *source
}

// Info returns the description the track was added with.
func (w *TrackWriter) Info() TrackInfo { return w.src.info }

// WriteRTP fans one RTP packet out to every subscriber of the track (not
// of a simulcast track: see WriteLayerRTP). The
// payload type and SSRC are rewritten per subscriber and header extensions
// are dropped; pkt is not retained and may be reused once WriteRTP returns.
// It allocates nothing. Calls may come from any goroutine; they are
// serialized per track. It returns an error wrapping net.ErrClosed after
// Close, and ErrInvalidRTP for a packet that does not parse.
func (w *TrackWriter) WriteRTP(pkt []byte) error { return w.src.counted(w.src.write(pkt)) }

// counted counts a write's error in the SFU's Drops and returns it.
func (s *source) counted(err error) error {
	if err != nil {
		if errors.Is(err, net.ErrClosed) {
			s.ch.sfu.drops.mediaAfterClose.Add(1)
		} else {
			s.ch.sfu.drops.mediaInvalid.Add(1)
		}
	}
	return err
}

// AddLayer makes rid a layer of a simulcast track (one added with
// TrackInfo.Simulcast); subscribers' keyframe requests for it go to kr,
// coalesced and rate-limited per layer. The demand function, if any, hears
// of the layer's demand at once.
func (w *TrackWriter) AddLayer(rid SimulcastRid, kr KeyframeRequester) error {
	ss, l, err := w.layer(rid)
	if err != nil {
		return err
	}
	ss.addLayer(l, kr)
	ss.updateDemand(w.src, l)
	return nil
}

// RemoveLayer says layer rid ended: its subscribers move to another layer.
func (w *TrackWriter) RemoveLayer(rid SimulcastRid) {
	if ss, l, err := w.layer(rid); err == nil {
		ss.layers[l].present.Store(false)
		ss.layers[l].lastSeen.Store(0)
	}
}

// WriteLayerRTP is WriteRTP for layer rid of a simulcast track: each
// subscriber gets one layer, rewritten into one stream (see
// Connection.SetSimulcastRid). It allocates nothing.
func (w *TrackWriter) WriteLayerRTP(rid SimulcastRid, pkt []byte) error {
	l := rid.layer()
	if w.src.sim == nil || l < 0 {
		return w.src.counted(fmt.Errorf("%w: no simulcast layer %q", ErrInvalidRTP, rid))
	}
	return w.src.counted(w.src.writeLayer(l, pkt))
}

// OnDemand installs fn, called each time whether layer rid of a simulcast
// track is wanted by some subscriber changes, and at once for every layer
// added: a layer is wanted while a subscriber asks for it, receives it or
// is to switch to it, or asks for a layer above it and receives one below
// (the layers between may be taken on the way). A layer nobody wants need
// not be written: the relay stops sending it across. fn must not block or
// call into the channel; nil removes it.
func (w *TrackWriter) OnDemand(fn func(rid SimulcastRid, wanted bool)) {
	ss := w.src.sim
	if ss == nil {
		return
	}
	if fn == nil {
		ss.demandFn.Store(nil)
		return
	}
	ss.demandFn.Store(&fn)
	ss.demandMu.Lock()
	ss.demand = w.src.demandMask()
	m := ss.demand
	ss.demandMu.Unlock()
	for l := int8(0); l < maxLayers; l++ {
		if ss.layers[l].present.Load() {
			fn(ridOf(l), m&(1<<l) != 0)
		}
	}
}

func (w *TrackWriter) layer(rid SimulcastRid) (*simSource, int8, error) {
	l := rid.layer()
	if w.src.sim == nil || l < 0 {
		return nil, 0, fmt.Errorf("%w: track %q has no simulcast layer %q", ErrInvalidTrack, w.src.info.ID, rid)
	}
	return w.src.sim, l, nil
}

// Close removes the track from the channel: subscribers get a re-offer that
// makes its m-lines inactive. Close is safe to call more than once.
func (w *TrackWriter) Close() error {
	w.src.ch.removeSource(w.src)
	return nil
}

// TrackTap gives an observer (the relay) the packets of one local track and a
// way to ask its publisher for a keyframe. It is handed out by
// Observer.TrackAdded and stays valid until Observer.TrackRemoved for the
// same track.
type TrackTap struct {
	src *source
}

// Info returns the track's description.
func (t *TrackTap) Info() TrackInfo { return t.src.info }

// SetSink installs fn to receive every RTP packet of the track, as the
// publisher sent it (after NACK handling, before the per-subscriber rewrite).
// Each tap has its own sink: several observers of a channel each get every
// packet, and setting one tap's sink never replaces another's. fn runs on
// the track's reader goroutine: it must not block, must not retain pkt after
// returning (copy what it keeps) and must not call back into the channel. A
// nil fn removes this tap's sink. Installing a sink allocates; calling it
// does not.
func (t *TrackTap) SetSink(fn func(pkt []byte)) { t.src.sinks.set(t, fn) }

// RequestKeyframe asks the track's publisher for a keyframe, under the same
// coalescing and rate limit as subscribers' requests. It does not block.
// For a simulcast track it asks for one of each layer a subscriber of this
// node receives; see RequestLayerKeyframe.
func (t *TrackTap) RequestKeyframe() { t.src.requestKeyframe() }

// SetLayerSink is SetSink for layer rid of a simulcast track
// (Info().Simulcast): fn gets that layer's packets, as the publisher sent
// them, under the same rules. SetSink gets nothing of a simulcast track.
func (t *TrackTap) SetLayerSink(rid SimulcastRid, fn func(pkt []byte)) {
	l := rid.layer()
	if t.src.sim == nil || l < 0 {
		return
	}
	t.src.sim.layers[l].sinks.set(t, fn)
}

// sinkSet holds the taps' sinks of one stream (a track, or a layer of a
// simulcast track). Setting copies the list under mu; the write path reads
// it through one atomic load and allocates nothing.
type sinkSet struct {
	mu   sync.Mutex
	list atomic.Pointer[[]tapSink]
}

type tapSink struct {
	tap *TrackTap
	fn  func(pkt []byte)
}

// set installs fn as tap's sink, replacing tap's previous one; nil removes
// it.
func (s *sinkSet) set(tap *TrackTap, fn func(pkt []byte)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var next []tapSink
	if cur := s.list.Load(); cur != nil {
		next = make([]tapSink, 0, len(*cur)+1)
		for _, x := range *cur {
			if x.tap != tap {
				next = append(next, x)
			}
		}
	}
	if fn != nil {
		next = append(next, tapSink{tap: tap, fn: fn})
	}
	if len(next) == 0 {
		s.list.Store(nil)
		return
	}
	s.list.Store(&next)
}

// call hands pkt to every sink.
func (s *sinkSet) call(pkt []byte) {
	if p := s.list.Load(); p != nil {
		for _, x := range *p {
			x.fn(pkt)
		}
	}
}

// clear removes every sink (the stream ended).
func (s *sinkSet) clear() {
	s.mu.Lock()
	s.list.Store(nil)
	s.mu.Unlock()
}

// RequestLayerKeyframe asks the publisher for a keyframe of layer rid of a
// simulcast track, coalesced and rate-limited per layer. It does not block.
func (t *TrackTap) RequestLayerKeyframe(rid SimulcastRid) {
	if t.src.sim != nil {
		t.src.sim.requestLayer(t.src, rid.layer())
	}
}

// Message is one data channel message of a channel.
type Message struct {
	// Label is the data channel label; messaging labels start with "#".
	Label string
	// SenderID is the connection_id of the sending connection.
	SenderID string
	// Data is the payload as sent. It is shared between observers: read it,
	// do not modify it.
	Data []byte
}

// EventType tells what happened to a connection of a channel.
type EventType int

// The connection events of a channel.
const (
	// ConnectionCreated: a connection joined the channel on this node.
	ConnectionCreated EventType = iota + 1
	// ConnectionDestroyed: a connection of this node left the channel.
	ConnectionDestroyed
)

// String returns the event_type used by the signaling notify messages:
// "connection.created" or "connection.destroyed".
func (e EventType) String() string {
	switch e {
	case ConnectionCreated:
		return "connection.created"
	case ConnectionDestroyed:
		return "connection.destroyed"
	}
	return "unknown"
}

// ChannelCounts counts the connections of one channel on this node.
type ChannelCounts struct {
	Connections int // all roles
	Sendrecv    int
	Sendonly    int
	Recvonly    int
}

// ConnectionEvent tells that a connection of this node joined or left a
// channel, with the channel's counts after the change.
type ConnectionEvent struct {
	Type         EventType
	ChannelID    string
	ConnectionID string
	ClientID     string
	Role         Role
	Counts       ChannelCounts
}

// Observer receives what happens in one channel: its local tracks, its local
// messages and its connection events. Nil fields are skipped. Register it
// with Channel.Observe.
//
// Calls for one observer come from one goroutine, in order, never
// concurrently; a slow observer delays only itself (its events queue up),
// never the channel. Callbacks may call into the channel.
//
// Only local things are observed: tracks added with AddRemoteTrack and
// messages given to InjectMessage are not reported, so a relay never loops.
type Observer struct {
	// TrackAdded reports a track published by a local connection. On
	// Observe, every current local track is reported first.
	TrackAdded func(info TrackInfo, tap *TrackTap)
	// TrackRemoved reports that a local track left; its tap is dead.
	TrackRemoved func(info TrackInfo)
	// MessageReceived reports a message sent by a local connection on a
	// messaging ("#...") data channel.
	MessageReceived func(msg Message)
	// ConnectionEvent reports local connections joining and leaving.
	ConnectionEvent func(ev ConnectionEvent)
}

// The channel side of this contract, defined in channel.go:
//
//	func (s *SFU) Channel(id string) (*Channel, error)
//	func (ch *Channel) AddRemoteTrack(info TrackInfo, kr KeyframeRequester) (*TrackWriter, error)
//	func (ch *Channel) Observe(o Observer) (stop func(), err error)
//	func (ch *Channel) InjectMessage(label, senderID string, data []byte) error
//	func (ch *Channel) Counts() ChannelCounts
