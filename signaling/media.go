package signaling

import (
	"context"
	"errors"

	"github.com/shoal-sfu/shoal/signaling/wire"
)

// Media is the media side of a node as the signaling server sees it: it
// creates one peer connection per served client. The server never imports a
// WebRTC stack; the root package adapts *sfu.SFU to this interface.
type Media interface {
	// Join creates the client's connection in its channel and returns it
	// with its initial offer, every server candidate inside. An error
	// wrapping ErrMediaFull refuses the client as "node full", one wrapping
	// ErrMediaCodec as an invalid connect; any other
	// error refuses it as an internal error.
	Join(ctx context.Context, req MediaRequest) (MediaConn, error)
}

// ErrMediaFull is wrapped by a Media.Join error when the node has no room.
var ErrMediaFull = errors.New("signaling: media: node is full")

// ErrMediaCodec is wrapped by a Media.Join error when the media side does
// not forward the codec_type connect asked for, or the client's own SDP
// shows it cannot use it.
var ErrMediaCodec = errors.New("signaling: media: unsupported codec")

// MediaRequest is what the server read from connect, for Media.Join.
type MediaRequest struct {
	ChannelID    string
	ConnectionID string
	ClientID     string
	Role         wire.Role
	// Audio and Video ask for upstream m-lines (send roles only).
	Audio, Video bool
	// AudioCodec and VideoCodec are connect's codec_type of each ("" when
	// not given), AudioBitRate and VideoBitRate its bit_rate (kbps, 0 when
	// not given).
	AudioCodec, VideoCodec     string
	AudioBitRate, VideoBitRate int
	// ClientSDP is connect's sdp: what the client can receive.
	ClientSDP string
	// DataChannels are the messaging channels requested (labels "#...").
	DataChannels []wire.DataChannelSpec
	// Simulcast asks for the upstream video as simulcast layers (connect's
	// simulcast); SimulcastRid is the layer to receive of simulcast video
	// ("none", "r0", "r1", "r2"; "" for the media side's default).
	Simulcast    bool
	SimulcastRid string
	// Events receives the connection's events.
	Events MediaEvents
}

// MediaEvents are a connection's callbacks to the signaling server. Nil
// fields are skipped. The server's implementations never block: they queue
// the event for the session's own goroutine.
type MediaEvents struct {
	// ReOffer delivers a re-offer SDP; the next comes only after the
	// re-answer was given to SetAnswer.
	ReOffer func(sdp string)
	// Event reports a connection joining or leaving the channel on this
	// node, the client's own connection included.
	Event func(ev ConnectionEvent)
	// Message delivers what the client sent on a non-messaging data channel
	// (the "signaling" channel: re-answer, candidate, disconnect).
	Message func(label string, data []byte, isText bool)
	// DataChannelsOpen reports, once, that every data channel listed in the
	// offer is open on the media side. The server switches a connection
	// that asked for data_channel_signaling to its data channels only after
	// it; a Media that never calls it keeps every session on the WebSocket.
	DataChannelsOpen func()
	// SimulcastSwitched reports that the layer the connection receives of
	// a publisher's simulcast video changed (a notify).
	SimulcastSwitched func(ev SimulcastSwitch)
}

// SimulcastSwitch is a change of the simulcast layer a connection
// receives of one publisher. The rids are "r0", "r1", "r2" or "none"
// (Previous when the video starts, Current when it stops); Requested may
// also be "auto"; Trigger is "receiver" or "sender"; AutoRids are the
// layers the congestion control allows (see wire.NotifySimulcastSwitched).
type SimulcastSwitch struct {
	SenderConnectionID           string
	Requested, Previous, Current string
	Trigger                      string
	AutoRids                     []string
}

// SimulcastRidSetter is an optional interface of a MediaConn: it changes
// the layer the connection receives of the simulcast video of the
// publisher sender (a connection id; "" for every publisher). The admin
// API's RequestSimulcastRid needs it.
type SimulcastRidSetter interface {
	SetSimulcastRid(sender, rid string) error
}

// ConnectionEvent is a connection joining or leaving a channel, with the
// channel's counts after the change.
type ConnectionEvent struct {
	Type         wire.EventType
	ConnectionID string
	ClientID     string
	Role         wire.Role
	Counts       ChannelCounts
}

// ChannelCounts are a channel's connections on this node, by role.
type ChannelCounts struct {
	Connections int
	SendRecv    int
	SendOnly    int
	RecvOnly    int
}

// MediaOffer is a connection's initial offer.
type MediaOffer struct {
	SDP string
	// AudioMid and VideoMid are the upstream m-lines' mids (offer.mid), or
	// "" when there is none.
	AudioMid, VideoMid string
	// DataChannels lists every channel the server opens (offer.data_channels).
	DataChannels []wire.OfferDataChannel
	// Simulcast is true when the video m-line receives simulcast;
	// Encodings are then offer.encodings.
	Simulcast bool
	Encodings []wire.Encoding
}

// MediaConn is one client's media connection.
type MediaConn interface {
	// Offer returns the initial offer.
	Offer() MediaOffer
	// SetAnswer applies the answer to the outstanding offer or re-offer.
	SetAnswer(sdp string) error
	// AddCandidate adds a candidate trickled by the client.
	AddCandidate(c wire.Candidate) error
	// SendText sends a text message on the data channel label. After
	// "switched" the server sends re-offer and close on "signaling", notify
	// on "notify" and push on "push".
	SendText(label, text string) error
	// Done is closed when the connection has ended, for any reason.
	Done() <-chan struct{}
	// Close ends the connection; safe to call more than once.
	Close() error
}

// DataChannelCloser is an optional interface of a MediaConn: it closes the
// connection's data channels gracefully and waits, until ctx ends, for the
// client to close its side, leaving the peer connection up. The server calls
// it when a switched client disconnects over the data channel (the SDK waits
// for every data channel to close; a peer connection closed at once makes
// them fail and the SDK reports an abend), before Close.
type DataChannelCloser interface {
	CloseDataChannels(ctx context.Context) error
}
