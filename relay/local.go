package relay

import ()

// Local is the local SFU as the relay sees it (package sfu through a thin
// adapter, or a test double).
type Local interface {
	// RelayChannel is called once when this node starts relaying channel,
	// because OpenChannel was called here or a peer opened it towards this
	// node. The implementation starts feeding the channel's local tracks
	// (AddLocalTrack) and messages (SendMessage), and returns where the
	// peers' tracks and messages go. It is called from the relay's
	// goroutines, never twice for one channel at once; it may call into the
	// relay (r is the relay asking) and should return promptly.
	RelayChannel(r *Relay, channel string) (ChannelSink, error)
}

// ChannelSink receives what peers relay for one channel. Its methods are
// called from one link goroutine per peer (so concurrently across peers);
// they must not block.
type ChannelSink interface {
	// AddRemoteTrack adds a peer's track to the local channel. Requests of
	// local subscribers for a keyframe go to keyframe, which coalesces them
	// and sends at most one per Config.KeyframeInterval across the hop.
	// The relay knows the track before it calls AddRemoteTrack: packets
	// that arrive while AddRemoteTrack runs are dropped and counted
	// (LinkStats.Drops and ChannelStats.Drops), and every packet that
	// arrives once it has returned goes to the returned TrackWriter. A
	// keyframe is requested right after it returns, so a video track starts
	// decodable. A sender that must not lose the first packets resends
	// until one arrives, or waits for that keyframe request.
	AddRemoteTrack(from string, info TrackInfo, keyframe KeyframeRequester) (TrackWriter, error)
	// DeliverMessage hands over a message a peer relayed; m.Data is owned
	// by the callee.
	DeliverMessage(from string, m Message)
	// Close says the channel's relay ended on this node (its remote tracks
	// have been closed already).
	Close()
}

// TrackWriter takes the RTP packets of a remote track. WriteRTP is called
// from the track's own goroutine, which the relay starts when
// AddRemoteTrack returns and ends before it calls Close: never
// concurrently for one track, concurrently across tracks. It should not
// block (the track's queue, Config.TrackQueueLen, fills and drops) and must
// not keep pkt. *sfu.TrackWriter is one.
type TrackWriter interface {
	WriteRTP(pkt []byte) error
	Close() error
}

// KeyframeRequester asks a track's publisher for a keyframe. It must not
// block.
type KeyframeRequester interface {
	RequestKeyframe()
}

// Wanter is implemented by the KeyframeRequester that ChannelSink's
// AddRemoteTrack gets: SetWanted(false) asks the track's node to stop
// sending the track's packets to this node (a simulcast layer no local
// subscriber wants), SetWanted(true) to send them again. A track is wanted
// when it opens; the state is sent again when the link comes back. It does
// not block.
type Wanter interface {
	SetWanted(wanted bool)
}

// KeyframeFunc adapts a function to a KeyframeRequester.
type KeyframeFunc func()

// RequestKeyframe calls f.
func (f KeyframeFunc) RequestKeyframe() { f() }

var _ KeyframeRequester = KeyframeFunc(nil)
