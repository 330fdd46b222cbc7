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
	k := &sfuSink{ch: ch, taps: map[string]*sfu.TrackTap{}, tracks: map[string]*LocalTrack{}}
	stop, err := ch.Observe(sfu.Observer{
		TrackAdded: func(info sfu.TrackInfo, tap *sfu.TrackTap) {
			lt, err := r.AddLocalTrack(channel, fromSFU(info), KeyframeFunc(tap.RequestKeyframe))
			if err != nil {
				a.log.Warn("relay: local track not relayed", "channel", channel, "track", info.ID, "err", err)
				return
			}
			if !k.add(info.ID, tap, lt) {
				_ = lt.Close()
				return
			}
			tap.SetSink(func(pkt []byte) { _ = lt.WriteRTP(pkt) })
		},
		TrackRemoved: func(info sfu.TrackInfo) {
			if lt := k.remove(info.ID); lt != nil {
				_ = lt.Close()
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

// sfuSink is one relayed channel's side in the sfu.
type sfuSink struct {
	ch   *sfu.Channel
	stop func()

	mu     sync.Mutex
	closed bool
	taps   map[string]*sfu.TrackTap
	tracks map[string]*LocalTrack
}

var _ ChannelSink = (*sfuSink)(nil)

func (k *sfuSink) add(id string, tap *sfu.TrackTap, lt *LocalTrack) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return false
	}
	k.taps[id], k.tracks[id] = tap, lt
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
	k.taps, k.tracks = map[string]*sfu.TrackTap{}, map[string]*LocalTrack{}
	k.mu.Unlock()
	for _, t := range taps {
		t.SetSink(nil)
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
