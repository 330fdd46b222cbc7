package relay

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Kind says what a frame carries.
type Kind uint8

// Frame kinds. Media, loss reports and pings travel as SRTP datagrams; the
// rest travel on the TLS control stream, where order and delivery matter.
const (
	KindRTP          Kind = 1  // datagram: an RTP packet of a track, as the publisher sent it
	KindNACK         Kind = 2  // datagram: sequence numbers of a track the receiver lacks
	KindPing         Kind = 3  // datagram: 8-byte timestamp; answered by KindPong
	KindPong         Kind = 4  // datagram: the ping's timestamp, echoed
	KindKeyframe     Kind = 5  // control: ask the publisher's node for a keyframe of a track
	KindMessage      Kind = 6  // control: a data channel message of a channel
	KindTrackOpen    Kind = 7  // control: a track of the sender's node is relayed from now on
	KindTrackClose   Kind = 8  // control: that track ended
	KindChannelOpen  Kind = 9  // control: the sender relays this channel with the receiver
	KindChannelClose Kind = 10 // control: the channel's session ended
	KindHello        Kind = 11 // control: first frame each way; node name, nonce, UDP port
	KindHeartbeat    Kind = 12 // control: keeps the control stream's read deadline alive
	KindTrackDemand  Kind = 13 // control: the receiver wants a track's packets (payload 1) or not (0)
	kindMax               = KindTrackDemand
)

// Frame flags.
const (
	// FlagRetransmit marks an RTP frame resent in answer to a NACK.
	FlagRetransmit uint8 = 1 << 0
)

// Frame is one unit on a link. Its byte form is
//
//	kind(1) flags(1) len(channel)(1) len(track)(1) channel track payload
//
// A channel or track id is at most maxIDLen bytes. Frames that concern
// the link itself (hello, ping) have empty ids.
type Frame struct {
	Kind    Kind
	Flags   uint8
	Channel []byte
	Track   []byte
	Payload []byte
}

const frameHeaderLen = 4

// maxIDLen is the longest channel or track id a frame carries: its length
// is one byte on the wire. Channel ids are at most as long everywhere
// (sfu.MaxChannelIDLen).
const maxIDLen = 255

// Frame errors.
var (
	ErrFrameShort  = errors.New("relay: frame too short")
	ErrFrameKind   = errors.New("relay: unknown frame kind")
	ErrIDTooLong   = errors.New("relay: channel or track id longer than 255 bytes")
	ErrFrameLength = errors.New("relay: frame length out of range")
)

// AppendFrame appends f's byte form to dst.
func AppendFrame(dst []byte, f Frame) ([]byte, error) {
	if len(f.Channel) > maxIDLen || len(f.Track) > maxIDLen {
		return dst, ErrIDTooLong
	}
	if f.Kind == 0 || f.Kind > kindMax {
		return dst, fmt.Errorf("%w: %d", ErrFrameKind, f.Kind)
	}
	dst = append(dst, byte(f.Kind), f.Flags, byte(len(f.Channel)), byte(len(f.Track)))
	dst = append(dst, f.Channel...)
	dst = append(dst, f.Track...)
	return append(dst, f.Payload...), nil
}

// appendFrameStr is AppendFrame for string ids, for the hot path (no
// conversion to []byte, so no allocation). Ids must already be checked.
func appendFrameStr(dst []byte, k Kind, flags uint8, channel, track string, payload []byte) []byte {
	dst = append(dst, byte(k), flags, byte(len(channel)), byte(len(track)))
	dst = append(dst, channel...)
	dst = append(dst, track...)
	return append(dst, payload...)
}

// DecodeFrame parses b. The returned slices alias b; nothing is allocated.
func DecodeFrame(b []byte) (Frame, error) {
	if len(b) < frameHeaderLen {
		return Frame{}, ErrFrameShort
	}
	k := Kind(b[0])
	if k == 0 || k > kindMax {
		return Frame{}, ErrFrameKind
	}
	cl, tl := int(b[2]), int(b[3])
	if len(b) < frameHeaderLen+cl+tl {
		return Frame{}, ErrFrameShort
	}
	c := b[frameHeaderLen : frameHeaderLen+cl : frameHeaderLen+cl]
	t := b[frameHeaderLen+cl : frameHeaderLen+cl+tl : frameHeaderLen+cl+tl]
	return Frame{Kind: k, Flags: b[1], Channel: c, Track: t, Payload: b[frameHeaderLen+cl+tl:]}, nil
}

// Message is a data channel message relayed with its channel.
type Message struct {
	Label string // data channel label, e.g. "#chat"
	From  string // connection id of the sender
	Data  []byte
}

// MaxMessageLen is the largest message payload a link carries.
const MaxMessageLen = 1 << 20

// appendMessage encodes m as a KindMessage payload:
// len(label)(1) label len(from)(1) from data.
func appendMessage(dst []byte, m Message) ([]byte, error) {
	if len(m.Label) > 255 || len(m.From) > 255 {
		return dst, fmt.Errorf("relay: message label or sender longer than 255 bytes")
	}
	if len(m.Data) > MaxMessageLen {
		return dst, fmt.Errorf("relay: message of %d bytes exceeds %d", len(m.Data), MaxMessageLen)
	}
	dst = append(dst, byte(len(m.Label)))
	dst = append(dst, m.Label...)
	dst = append(dst, byte(len(m.From)))
	dst = append(dst, m.From...)
	return append(dst, m.Data...), nil
}

// decodeMessage parses a KindMessage payload. Data is copied, so the
// message may outlive the buffer.
func decodeMessage(p []byte) (Message, error) {
	r := reader{b: p}
	label := r.str8()
	from := r.str8()
	if r.err != nil {
		return Message{}, fmt.Errorf("relay: message: %w", r.err)
	}
	return Message{Label: label, From: from, Data: append([]byte(nil), r.b...)}, nil
}

// TrackInfo describes a relayed track, enough for the receiving node to
// offer it to its subscribers.
type TrackInfo struct {
	ID          string // unique within the channel
	StreamID    string // msid stream: the publishing connection's id
	Kind        string // "audio" or "video"
	MimeType    string // e.g. "video/VP8"
	ClockRate   uint32
	Channels    uint16
	SDPFmtpLine string
	Feedback    []Feedback // RTCP feedback the codec supports, e.g. {"nack", "pli"}
	// Layer, for one layer of a simulcast track, is its rid ("r0", "r1",
	// "r2") and Group the id of the simulcast track; both are empty for
	// any other track. Each layer is relayed as a track of its own, and
	// the receiving node joins a Group's layers into one track again.
	Layer, Group string
}

// Feedback is one RTCP feedback type of a codec (SDP a=rtcp-fb).
type Feedback struct {
	Type, Parameter string
}

func (t TrackInfo) validate() error {
	if t.ID == "" || len(t.ID) > maxIDLen {
		return fmt.Errorf("relay: track id %q must be 1 to %d bytes", t.ID, maxIDLen)
	}
	if len(t.StreamID) > 255 || len(t.Kind) > 255 || len(t.MimeType) > 255 {
		return fmt.Errorf("relay: track %q: stream id, kind or mime type longer than 255 bytes", t.ID)
	}
	if len(t.SDPFmtpLine) > 0xffff {
		return fmt.Errorf("relay: track %q: fmtp line longer than 65535 bytes", t.ID)
	}
	if len(t.Feedback) > 255 {
		return fmt.Errorf("relay: track %q: more than 255 feedback types", t.ID)
	}
	if (t.Layer == "") != (t.Group == "") || len(t.Layer) > 255 || len(t.Group) > maxIDLen {
		return fmt.Errorf("relay: track %q: a layer needs a group and the other way round, each at most 255 bytes", t.ID)
	}
	for _, f := range t.Feedback {
		if len(f.Type) > 255 || len(f.Parameter) > 255 {
			return fmt.Errorf("relay: track %q: feedback type or parameter longer than 255 bytes", t.ID)
		}
	}
	return nil
}

// appendTrackInfo encodes t (less its id, which is the frame's track id).
func appendTrackInfo(dst []byte, t TrackInfo) []byte {
	dst = append(dst, byte(len(t.StreamID)))
	dst = append(dst, t.StreamID...)
	dst = append(dst, byte(len(t.Kind)))
	dst = append(dst, t.Kind...)
	dst = append(dst, byte(len(t.MimeType)))
	dst = append(dst, t.MimeType...)
	dst = binary.BigEndian.AppendUint32(dst, t.ClockRate)
	dst = binary.BigEndian.AppendUint16(dst, t.Channels)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(t.SDPFmtpLine)))
	dst = append(dst, t.SDPFmtpLine...)
	dst = append(dst, byte(len(t.Feedback)))
	for _, f := range t.Feedback {
		dst = append(dst, byte(len(f.Type)))
		dst = append(dst, f.Type...)
		dst = append(dst, byte(len(f.Parameter)))
		dst = append(dst, f.Parameter...)
	}
	if t.Layer != "" { // absent for other tracks: their form is unchanged
		dst = append(dst, byte(len(t.Layer)))
		dst = append(dst, t.Layer...)
		dst = append(dst, byte(len(t.Group)))
		dst = append(dst, t.Group...)
	}
	return dst
}

func decodeTrackInfo(id string, p []byte) (TrackInfo, error) {
	r := reader{b: p}
	t := TrackInfo{ID: id}
	t.StreamID = r.str8()
	t.Kind = r.str8()
	t.MimeType = r.str8()
	t.ClockRate = r.u32()
	t.Channels = r.u16()
	t.SDPFmtpLine = r.str(int(r.u16()))
	if n := int(r.u8()); n > 0 {
		t.Feedback = make([]Feedback, 0, min(n, len(r.b)/2))
		for range n {
			t.Feedback = append(t.Feedback, Feedback{Type: r.str8(), Parameter: r.str8()})
		}
	}
	if r.err == nil && len(r.b) != 0 {
		t.Layer, t.Group = r.str8(), r.str8()
		if r.err == nil && t.Layer == "" {
			r.err = ErrFrameLength // written only when set
		}
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = ErrFrameLength
	}
	if r.err != nil {
		return TrackInfo{}, fmt.Errorf("relay: track info: %w", r.err)
	}
	return t, nil
}

// hello is the first control frame each way.
type hello struct {
	Version uint8
	Node    string
	Nonce   []byte
	UDPPort uint16
}

const protocolVersion = 1

func appendHello(dst []byte, h hello) []byte {
	dst = append(dst, h.Version, byte(len(h.Node)))
	dst = append(dst, h.Node...)
	dst = append(dst, h.Nonce...)
	return binary.BigEndian.AppendUint16(dst, h.UDPPort)
}

func decodeHello(p []byte) (hello, error) {
	r := reader{b: p}
	h := hello{Version: r.u8(), Node: r.str8()}
	h.Nonce = append([]byte(nil), r.take(nonceLen)...)
	h.UDPPort = r.u16()
	switch {
	case r.err != nil:
		return hello{}, fmt.Errorf("relay: hello: %w", r.err)
	case len(r.b) != 0:
		return hello{}, fmt.Errorf("relay: hello: %w", ErrFrameLength)
	case h.Version != protocolVersion:
		return hello{}, fmt.Errorf("relay: hello: protocol version %d, want %d", h.Version, protocolVersion)
	case h.Node == "":
		return hello{}, errors.New("relay: hello: empty node name")
	}
	return h, nil
}

// reader takes fields off a byte slice, remembering the first error.
type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b) < n {
		r.err = ErrFrameShort
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8() uint8 {
	if v := r.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (r *reader) u16() uint16 {
	if v := r.take(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if v := r.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (r *reader) str(n int) string { return string(r.take(n)) }
func (r *reader) str8() string     { return r.str(int(r.u8())) }
