package relay

import (
	"fmt"
	"log/slog"
	"sync"

	"github.com/pion/webrtc/v4"

	"github.com/shoal-sfu/shoal/sfu"
)

// SFULocal is the Local of a node whose SFU is package sfu: a thin adapter
// between the relay and sfu's track-source contract. For each relayed
// channel it observes the sfu channel (its local tracks are tapped into
// AddLocalTrack, its "#" messages into SendMessage) and injects what peers
// relay (sfu.Channel.AddRemoteTrack, InjectMessage). The observer keeps the
// sfu channel alive, so the relay lasts while the session does even when
// this node's last client leaves.
type SFULocal struct {
	sfu *sfu.SFU
	log *slog.Logger
}

var _ Local = (*SFULocal)(nil)

// Every channel id the SFU accepts fits in a frame (this fails to compile
// if sfu.MaxChannelIDLen grows past maxIDLen).
var _ [maxIDLen - sfu.MaxChannelIDLen]struct{}

// NewSFULocal returns the adapter for s. logger nil means slog.Default().
func NewSFULocal(s *sfu.SFU, logger *slog.Logger) *SFULocal {
	if logger == nil {
		logger = slog.Default()
	}
	return &SFULocal{sfu: s, log: logger.With("component", "relay-sfu")}
}

// RelayChannel implements Local.
func (a *SFULocal) RelayChannel(r *Relay, channel string) (ChannelSink, error) {
	ch, err := a.sfu.Channel(channel)
	if err != nil {
		return nil, err
	}
	k := &sfuSink{ch: ch, taps: map[string]func(){}, tracks: map[string]*LocalTrack{}, groups: map[string]*layerGroup{}}
	stop, err := ch.Observe(sfu.Observer{
		TrackAdded: func(info sfu.TrackInfo, tap *sfu.TrackTap) {
			if info.Simulcast {
				a.addLayers(r, channel, k, info, tap)
				return
			}
			lt, err := r.AddLocalTrack(channel, fromSFU(info), KeyframeFunc(tap.RequestKeyframe))
			if err != nil {
				a.log.Warn("relay: local track not relayed", "channel", channel, "track", info.ID, "err", err)
				return
			}
			if !k.add(info.ID, func() { tap.SetSink(nil) }, lt) {
				_ = lt.Close()
				return
			}
			tap.SetSink(func(pkt []byte) { _ = lt.WriteRTP(pkt) })
		},
		TrackRemoved: func(info sfu.TrackInfo) {
			ids := []string{info.ID}
			if info.Simulcast {
				ids = layerIDs(info.ID)
			}
			for _, id := range ids {
				if lt := k.remove(id); lt != nil {
					_ = lt.Close()
				}
			}
		},
		MessageReceived: func(m sfu.Message) {
			if err := r.SendMessage(channel, Message{Label: m.Label, From: m.SenderID, Data: m.Data}); err != nil {
				a.log.Debug("relay: message not relayed", "channel", channel, "err", err)
			}
		},
	})
	if err != nil {
		return nil, err
	}
	k.stop = stop
	return k, nil
}

// simulcastRids are the layers of a simulcast track, each relayed as a
// track of its own.
var simulcastRids = [...]sfu.SimulcastRid{sfu.RidR0, sfu.RidR1, sfu.RidR2}

// layerIDs are the relay's track ids of the layers of the simulcast track
// id.
func layerIDs(id string) []string {
	out := make([]string, len(simulcastRids))
	for i, rid := range simulcastRids {
		out[i] = id + "~" + string(rid)
	}
	return out
}

// addLayers relays each layer of a local simulcast track as a track of its
// own (Layer, Group), with its own keyframe requests. A layer that no
// subscriber of a peer wants is not sent to that peer (Wanter).
func (a *SFULocal) addLayers(r *Relay, channel string, k *sfuSink, info sfu.TrackInfo, tap *sfu.TrackTap) {
	for i, id := range layerIDs(info.ID) {
		rid := simulcastRids[i]
		li := fromSFU(info)
		li.ID, li.Layer, li.Group = id, string(rid), info.ID
		lt, err := r.AddLocalTrack(channel, li, KeyframeFunc(func() { tap.RequestLayerKeyframe(rid) }))
		if err != nil {
			a.log.Warn("relay: local track not relayed", "channel", channel, "track", id, "err", err)
			continue
		}
		if !k.add(id, func() { tap.SetLayerSink(rid, nil) }, lt) {
			_ = lt.Close()
			return
		}
		tap.SetLayerSink(rid, func(pkt []byte) { _ = lt.WriteRTP(pkt) })
	}
}

// sfuSink is one relayed channel's side in the sfu.
type sfuSink struct {
	ch   *sfu.Channel
	stop func()

	mu     sync.Mutex
	closed bool
	taps   map[string]func() // removes the tap's sink
	tracks map[string]*LocalTrack
	groups map[string]*layerGroup // remote simulcast tracks, by Group
}

// layerGroup is a peer's simulcast track: one sfu track, fed by one relay
// track per layer.
type layerGroup struct {
	w *sfu.TrackWriter

	mu      sync.Mutex
	wanters map[sfu.SimulcastRid]Wanter
	n       int // layers open
}

// demand passes the sfu's demand for a layer to its relay track.
func (g *layerGroup) demand(rid sfu.SimulcastRid, wanted bool) {
	g.mu.Lock()
	w := g.wanters[rid]
	g.mu.Unlock()
	if w != nil {
		w.SetWanted(wanted)
	}
}

// layerWriter writes one relayed layer into its group's sfu track.
type layerWriter struct {
	k     *sfuSink
	g     *layerGroup
	rid   sfu.SimulcastRid
	group string
	once  sync.Once
}

func (w *layerWriter) WriteRTP(pkt []byte) error { return w.g.w.WriteLayerRTP(w.rid, pkt) }

// Close ends the layer; the last one ends the sfu track.
func (w *layerWriter) Close() error {
	w.once.Do(func() {
		w.g.w.RemoveLayer(w.rid)
		w.g.mu.Lock()
		delete(w.g.wanters, w.rid)
		w.g.n--
		last := w.g.n == 0
		w.g.mu.Unlock()
		if !last {
			return
		}
		w.k.mu.Lock()
		if w.k.groups[w.group] == w.g {
			delete(w.k.groups, w.group)
		}
		w.k.mu.Unlock()
		_ = w.g.w.Close()
	})
	return nil
}

// addLayer adds a peer's relayed layer to its simulcast track in the sfu,
// creating the track with its first layer.
func (k *sfuSink) addLayer(info TrackInfo, kf KeyframeRequester) (TrackWriter, error) {
	rid, err := sfu.ParseSimulcastRid(info.Layer)
	if err != nil || rid == sfu.RidNone {
		return nil, fmt.Errorf("relay: track %s: layer %q is not r0, r1 or r2", info.ID, info.Layer)
	}
	k.mu.Lock()
	g := k.groups[info.Group]
	if g == nil {
		si, err := toSFU(info)
		if err != nil {
			k.mu.Unlock()
			return nil, err
		}
		si.ID, si.Simulcast = info.Group, true
		w, err := k.ch.AddRemoteTrack(si, nil)
		if err != nil {
			k.mu.Unlock()
			return nil, err
		}
		g = &layerGroup{w: w, wanters: map[sfu.SimulcastRid]Wanter{}}
		w.OnDemand(g.demand)
		k.groups[info.Group] = g
	}
	g.mu.Lock()
	if wt, ok := kf.(Wanter); ok {
		g.wanters[rid] = wt
	}
	g.n++
	g.mu.Unlock()
	k.mu.Unlock()
	if err := g.w.AddLayer(rid, kf); err != nil {
		return nil, err
	}
	return &layerWriter{k: k, g: g, rid: rid, group: info.Group}, nil
}

var _ ChannelSink = (*sfuSink)(nil)

func (k *sfuSink) add(id string, unsink func(), lt *LocalTrack) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return false
	}
	k.taps[id], k.tracks[id] = unsink, lt
	return true
}

func (k *sfuSink) remove(id string) *LocalTrack {
	k.mu.Lock()
	defer k.mu.Unlock()
	lt := k.tracks[id]
	delete(k.taps, id)
	delete(k.tracks, id)
	return lt
}

func (k *sfuSink) AddRemoteTrack(_ string, info TrackInfo, kf KeyframeRequester) (TrackWriter, error) {
	if info.Layer != "" {
		return k.addLayer(info, kf)
	}
	si, err := toSFU(info)
	if err != nil {
		return nil, err
	}
	w, err := k.ch.AddRemoteTrack(si, kf)
	if err != nil {
		return nil, err
	}
	return w, nil
}

func (k *sfuSink) DeliverMessage(_ string, m Message) {
	// The sfu refuses messages for a channel that ended; nothing to do then.
	_ = k.ch.InjectMessage(m.Label, m.From, m.Data)
}

func (k *sfuSink) Close() {
	k.mu.Lock()
	k.closed = true
	taps := k.taps
	k.taps, k.tracks = map[string]func(){}, map[string]*LocalTrack{}
	k.mu.Unlock()
	for _, unsink := range taps {
		unsink()
	}
	k.stop()
}

func fromSFU(i sfu.TrackInfo) TrackInfo {
	t := TrackInfo{
		ID: i.ID, StreamID: i.StreamID, Kind: i.Kind.String(),
		MimeType: i.Codec.MimeType, ClockRate: i.Codec.ClockRate, Channels: i.Codec.Channels,
		SDPFmtpLine: i.Codec.SDPFmtpLine,
	}
	for _, f := range i.Codec.RTCPFeedback {
		t.Feedback = append(t.Feedback, Feedback{Type: f.Type, Parameter: f.Parameter})
	}
	return t
}

func toSFU(t TrackInfo) (sfu.TrackInfo, error) {
	kind := webrtc.NewRTPCodecType(t.Kind)
	if kind == 0 {
		return sfu.TrackInfo{}, fmt.Errorf("relay: track %s: kind %q is not audio or video", t.ID, t.Kind)
	}
	i := sfu.TrackInfo{
		ID: t.ID, StreamID: t.StreamID, Kind: kind,
		Codec: webrtc.RTPCodecCapability{
			MimeType: t.MimeType, ClockRate: t.ClockRate, Channels: t.Channels, SDPFmtpLine: t.SDPFmtpLine,
		},
	}
	for _, f := range t.Feedback {
		i.Codec.RTCPFeedback = append(i.Codec.RTCPFeedback, webrtc.RTCPFeedback{Type: f.Type, Parameter: f.Parameter})
	}
	return i, nil
}
