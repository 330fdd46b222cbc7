package signaling

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxChannelIDLength is the longest channel_id accepted, in bytes (SPEC §5).
const MaxChannelIDLength = 255

// DefaultMaxMessageSize is the default limit on one client message. The
// largest legitimate messages are a connect or answer carrying a full SDP
// (about 6 KB from a browser) and a pong carrying getStats() reports.
const DefaultMaxMessageSize = 1 << 20

// Close codes sent to a client whose connect is refused or whose message is
// malformed. The seed SDK has no error message: a refusal is a WebSocket
// close before `offer`, and connect() rejects with the code and reason.
const (
	CloseInvalidMessage   = 4400 // not JSON, unknown type, missing or wrong-typed field
	CloseAuthDenied       = 4401 // the auth hook said no (the reason is the hook's)
	CloseMessageTooLarge  = 4413 // a message over the size limit
	CloseInvalidChannelID = 4490 // channel_id missing, empty, too long or not UTF-8
	CloseInvalidRole      = 4491 // role not sendrecv, sendonly or recvonly
	CloseUnexpected       = 4492 // a message that is valid but not expected now (answer before offer)
	CloseRefused          = 4503 // placement refused: no capacity, not in majority, node blocked
	ClosePingTimeout      = 4504 // no pong within the keepalive timeout
	CloseInternalError    = 4500 // the server failed; the reason says where
)

// ProtocolError is a message or request the server refuses. Code is the
// WebSocket close code the client sees; Reason is the close reason, short
// and upper-case by the seed's convention (e.g. "INVALID-CHANNEL-ID"); Err,
// if set, says more for the server's logs.
type ProtocolError struct {
	Code   int
	Reason string
	Err    error
}

func (e *ProtocolError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("signaling: %s (%d): %v", e.Reason, e.Code, e.Err)
	}
	return fmt.Sprintf("signaling: %s (%d)", e.Reason, e.Code)
}

func (e *ProtocolError) Unwrap() error { return e.Err }

func protoErr(code int, reason string, format string, args ...any) *ProtocolError {
	return &ProtocolError{Code: code, Reason: reason, Err: fmt.Errorf(format, args...)}
}

// Role is a connection's role.
type Role string

// The three roles of the seed SFU.
const (
	RoleSendRecv Role = "sendrecv"
	RoleSendOnly Role = "sendonly"
	RoleRecvOnly Role = "recvonly"
)

// Sends reports whether the role publishes media.
func (r Role) Sends() bool { return r == RoleSendRecv || r == RoleSendOnly }

// Receives reports whether the role receives media.
func (r Role) Receives() bool { return r == RoleSendRecv || r == RoleRecvOnly }

func (r Role) valid() bool { return r == RoleSendRecv || r == RoleSendOnly || r == RoleRecvOnly }

// MediaOptions is the `audio` or `video` field of connect: either a boolean
// or an object of codec options, which implies true.
type MediaOptions struct {
	Enabled   bool
	CodecType string // "OPUS"; "VP8", "VP9", "AV1", "H264", "H265"
	BitRate   int
	// Params keeps the codec-specific object (opus_params, vp9_params, ...)
	// as sent.
	Params json.RawMessage
}

// UnmarshalJSON accepts true, false, null (meaning the default, true) or an
// object.
func (m *MediaOptions) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("true")), bytes.Equal(b, []byte("null")):
		*m = MediaOptions{Enabled: true}
		return nil
	case bytes.Equal(b, []byte("false")):
		*m = MediaOptions{}
		return nil
	case len(b) > 0 && b[0] == '{':
		var o struct {
			CodecType string          `json:"codec_type"`
			BitRate   *float64        `json:"bit_rate"`
			Params    json.RawMessage `json:"-"`
		}
		if err := json.Unmarshal(b, &o); err != nil {
			return err
		}
		*m = MediaOptions{Enabled: true, CodecType: o.CodecType, Params: append(json.RawMessage(nil), b...)}
		if o.BitRate != nil {
			if *o.BitRate < 0 || *o.BitRate > 1e9 {
				return fmt.Errorf("bit_rate %v out of range", *o.BitRate)
			}
			m.BitRate = int(*o.BitRate)
		}
		return nil
	}
	return errors.New("want a boolean or an object")
}

// DataChannelSpec is one entry of connect's `data_channels`.
type DataChannelSpec struct {
	Label             string `json:"label"`
	Direction         string `json:"direction,omitempty"`
	Ordered           *bool  `json:"ordered,omitempty"`
	Compress          *bool  `json:"compress,omitempty"`
	MaxPacketLifeTime *int   `json:"max_packet_life_time,omitempty"`
	MaxRetransmits    *int   `json:"max_retransmits,omitempty"`
	Protocol          string `json:"protocol,omitempty"`
	// Header is kept as sent (e.g. [{"type":"sender_connection_id"}]).
	Header json.RawMessage `json:"header,omitempty"`
}

// Connect is the client's `connect` message. Fields the server does not use
// are ignored, as the seed SDKs send many.
type Connect struct {
	Type       string          `json:"type"`
	Role       Role            `json:"role"`
	ChannelID  string          `json:"channel_id"`
	ClientID   string          `json:"client_id,omitempty"`
	BundleID   string          `json:"bundle_id,omitempty"`
	SDP        string          `json:"sdp,omitempty"`
	Metadata   json.RawMessage `json:"metadata,omitempty"`
	Audio      MediaOptions    `json:"audio"`
	Video      MediaOptions    `json:"video"`
	Redirect   bool            `json:"redirect,omitempty"`
	SoraClient string          `json:"sora_client,omitempty"`
	// Environment is the client's user agent or platform.
	Environment               string            `json:"environment,omitempty"`
	DataChannelSignaling      *bool             `json:"data_channel_signaling,omitempty"`
	IgnoreDisconnectWebSocket *bool             `json:"ignore_disconnect_websocket,omitempty"`
	DataChannels              []DataChannelSpec `json:"data_channels,omitempty"`
	SignalingNotifyMetadata   json.RawMessage   `json:"signaling_notify_metadata,omitempty"`
}

// Answer is the client's `answer` or `re-answer`.
type Answer struct {
	Type string `json:"type"`
	SDP  string `json:"sdp"`
}

// Candidate is a trickled ICE candidate from the client
// (RTCIceCandidate.toJSON() plus type).
type Candidate struct {
	Type             string  `json:"type"`
	Candidate        string  `json:"candidate"`
	SDPMid           *string `json:"sdpMid,omitempty"`
	SDPMLineIndex    *uint16 `json:"sdpMLineIndex,omitempty"`
	UsernameFragment *string `json:"usernameFragment,omitempty"`
}

// Pong is the client's answer to ping; Stats holds getStats() reports when
// the ping asked for them.
type Pong struct {
	Type  string          `json:"type"`
	Stats json.RawMessage `json:"stats,omitempty"`
}

// Disconnect is the client's `disconnect`.
type Disconnect struct {
	Type   string `json:"type"`
	Reason string `json:"reason,omitempty"`
}

// Message types a client sends.
const (
	TypeConnect    = "connect"
	TypeAnswer     = "answer"
	TypeReAnswer   = "re-answer"
	TypeCandidate  = "candidate"
	TypePong       = "pong"
	TypeDisconnect = "disconnect"
	TypeUpdate     = "update"
)

// Message types the server sends.
const (
	TypeOffer    = "offer"
	TypeReOffer  = "re-offer"
	TypeRedirect = "redirect"
	TypePing     = "ping"
	TypeNotify   = "notify"
	TypePush     = "push"
	TypeSwitched = "switched"
	TypeClose    = "close"
)

// DecodeClientMessage parses one message from a client and validates it. It
// returns *Connect, *Answer (answer, re-answer or update), *Candidate, *Pong
// or *Disconnect. Any error is a *ProtocolError carrying the close code to
// send. maxSize <= 0 means DefaultMaxMessageSize.
func DecodeClientMessage(b []byte, maxSize int) (any, error) {
	if maxSize <= 0 {
		maxSize = DefaultMaxMessageSize
	}
	if len(b) > maxSize {
		return nil, protoErr(CloseMessageTooLarge, "MESSAGE-TOO-LARGE", "message of %d bytes exceeds the limit of %d", len(b), maxSize)
	}
	var head struct {
		Type *string `json:"type"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return nil, protoErr(CloseInvalidMessage, "INVALID-MESSAGE", "not a JSON object: %v", err)
	}
	if head.Type == nil {
		return nil, protoErr(CloseInvalidMessage, "MISSING-TYPE", "message has no \"type\"")
	}
	switch *head.Type {
	case TypeConnect:
		// audio and video default to true when absent, as in the seed.
		m := Connect{Audio: MediaOptions{Enabled: true}, Video: MediaOptions{Enabled: true}}
		if err := decodeInto(b, &m); err != nil {
			return nil, err
		}
		return &m, m.validate()
	case TypeAnswer, TypeReAnswer, TypeUpdate:
		var m Answer
		if err := decodeInto(b, &m); err != nil {
			return nil, err
		}
		if strings.TrimSpace(m.SDP) == "" {
			return nil, protoErr(CloseInvalidMessage, "MISSING-SDP", "%s has no sdp", m.Type)
		}
		return &m, nil
	case TypeCandidate:
		var m Candidate
		if err := decodeInto(b, &m); err != nil {
			return nil, err
		}
		return &m, nil
	case TypePong:
		var m Pong
		if err := decodeInto(b, &m); err != nil {
			return nil, err
		}
		return &m, nil
	case TypeDisconnect:
		var m Disconnect
		if err := decodeInto(b, &m); err != nil {
			return nil, err
		}
		return &m, nil
	}
	return nil, protoErr(CloseInvalidMessage, "UNKNOWN-TYPE", "unknown message type %.40q", *head.Type)
}

func decodeInto(b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return protoErr(CloseInvalidMessage, "INVALID-FIELD", "field %q: want %s, got %s", te.Field, te.Type, te.Value)
		}
		return protoErr(CloseInvalidMessage, "INVALID-MESSAGE", "%v", err)
	}
	return nil
}

func (c *Connect) validate() error {
	switch {
	case c.ChannelID == "":
		return protoErr(CloseInvalidChannelID, "INVALID-CHANNEL-ID", "channel_id is missing or empty")
	case len(c.ChannelID) > MaxChannelIDLength:
		return protoErr(CloseInvalidChannelID, "INVALID-CHANNEL-ID", "channel_id is %d bytes, over the limit of %d", len(c.ChannelID), MaxChannelIDLength)
	case !utf8.ValidString(c.ChannelID):
		return protoErr(CloseInvalidChannelID, "INVALID-CHANNEL-ID", "channel_id is not valid UTF-8")
	case c.Role == "":
		return protoErr(CloseInvalidRole, "INVALID-ROLE", "role is missing")
	case !c.Role.valid():
		return protoErr(CloseInvalidRole, "INVALID-ROLE", "role %.40q is not sendrecv, sendonly or recvonly", c.Role)
	}
	seen := make(map[string]bool, len(c.DataChannels))
	for i, dc := range c.DataChannels {
		switch {
		case dc.Label == "":
			return protoErr(CloseInvalidMessage, "INVALID-DATA-CHANNELS", "data_channels[%d] has no label", i)
		case !strings.HasPrefix(dc.Label, "#") || len(dc.Label) < 2:
			return protoErr(CloseInvalidMessage, "INVALID-DATA-CHANNELS", "data_channels[%d] label %.40q does not start with # (messaging channels only)", i, dc.Label)
		case len(dc.Label) > 255:
			return protoErr(CloseInvalidMessage, "INVALID-DATA-CHANNELS", "data_channels[%d] label is over 255 bytes", i)
		case seen[dc.Label]:
			return protoErr(CloseInvalidMessage, "INVALID-DATA-CHANNELS", "data_channels label %q given twice", dc.Label)
		case dc.MaxPacketLifeTime != nil && dc.MaxRetransmits != nil:
			return protoErr(CloseInvalidMessage, "INVALID-DATA-CHANNELS", "data_channels %q sets both max_packet_life_time and max_retransmits", dc.Label)
		case dc.MaxPacketLifeTime != nil && (*dc.MaxPacketLifeTime < 0 || *dc.MaxPacketLifeTime > 65535),
			dc.MaxRetransmits != nil && (*dc.MaxRetransmits < 0 || *dc.MaxRetransmits > 65535):
			return protoErr(CloseInvalidMessage, "INVALID-DATA-CHANNELS", "data_channels %q: limit out of range 0..65535", dc.Label)
		}
		switch dc.Direction {
		case "", "sendrecv", "sendonly", "recvonly":
		default:
			return protoErr(CloseInvalidMessage, "INVALID-DATA-CHANNELS", "data_channels %q: direction %.20q", dc.Label, dc.Direction)
		}
		seen[dc.Label] = true
	}
	if len(c.Metadata) > 0 && !json.Valid(c.Metadata) {
		return protoErr(CloseInvalidMessage, "INVALID-METADATA", "metadata is not valid JSON")
	}
	return nil
}
