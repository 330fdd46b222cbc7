package wire

import (
	"encoding/json"
	"errors"
	"strings"
	"unicode/utf8"
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
		return nil, Errorf(CloseMessageTooLarge, "MESSAGE-TOO-LARGE", "message of %d bytes exceeds the limit of %d", len(b), maxSize)
	}
	var head struct {
		Type *string `json:"type"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return nil, Errorf(CloseInvalidMessage, "INVALID-MESSAGE", "not a JSON object: %v", err)
	}
	if head.Type == nil {
		return nil, Errorf(CloseInvalidMessage, "MISSING-TYPE", "message has no \"type\"")
	}
	switch *head.Type {
	case TypeConnect:
		// audio and video default to true when absent, as in Sora.
		m := &Connect{Audio: MediaOptions{Enabled: true}, Video: MediaOptions{Enabled: true}}
		if err := decodeInto(b, m); err != nil {
			return nil, err
		}
		return m, m.validate()
	case TypeAnswer, TypeReAnswer, TypeUpdate:
		var m Answer
		if err := decodeInto(b, &m); err != nil {
			return nil, err
		}
		if strings.TrimSpace(m.SDP) == "" {
			return nil, Errorf(CloseInvalidMessage, "MISSING-SDP", "%s has no sdp", m.Type)
		}
		return &m, nil
	case TypeCandidate:
		return decode[Candidate](b)
	case TypePong:
		return decode[Pong](b)
	case TypeDisconnect:
		return decode[Disconnect](b)
	}
	return nil, Errorf(CloseInvalidMessage, "UNKNOWN-TYPE", "unknown message type %.40q", *head.Type)
}

// decode returns b decoded as a *T, or nil and the *ProtocolError.
func decode[T any](b []byte) (any, error) {
	m := new(T)
	if err := decodeInto(b, m); err != nil {
		return nil, err
	}
	return m, nil
}

func decodeInto(b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return Errorf(CloseInvalidMessage, "INVALID-FIELD", "field %q: want %s, got %s", te.Field, te.Type, te.Value)
		}
		return Errorf(CloseInvalidMessage, "INVALID-MESSAGE", "%v", err)
	}
	return nil
}

func (c *Connect) validate() error {
	switch {
	case c.ChannelID == "":
		return Errorf(CloseInvalidChannelID, "INVALID-CHANNEL-ID", "channel_id is missing or empty")
	case len(c.ChannelID) > MaxChannelIDLen:
		return Errorf(CloseInvalidChannelID, "INVALID-CHANNEL-ID", "channel_id is %d bytes, over the limit of %d", len(c.ChannelID), MaxChannelIDLen)
	case !utf8.ValidString(c.ChannelID):
		return Errorf(CloseInvalidChannelID, "INVALID-CHANNEL-ID", "channel_id is not valid UTF-8")
	case c.Role == "":
		return Errorf(CloseInvalidRole, "INVALID-ROLE", "role is missing")
	case !c.Role.valid():
		return Errorf(CloseInvalidRole, "INVALID-ROLE", "role %.40q is not sendrecv, sendonly or recvonly", c.Role)
	}
	seen := make(map[string]bool, len(c.DataChannels))
	for i, dc := range c.DataChannels {
		if err := dc.validate(i, seen); err != nil {
			return err
		}
		seen[dc.Label] = true
	}
	if len(c.Metadata) > 0 && !json.Valid(c.Metadata) {
		return Errorf(CloseInvalidMessage, "INVALID-METADATA", "metadata is not valid JSON")
	}
	// auto leaves the layer to the server's congestion control.
	rid := func(field, v string, none, auto bool) error {
		switch {
		case v == "", v == "r0", v == "r1", v == "r2", none && v == "none", auto && v == "auto":
			return nil
		case none:
			return Errorf(CloseInvalidMessage, "INVALID-SIMULCAST-RID", "%s %.20q is not none, r0, r1, r2 or auto", field, v)
		case auto:
			return Errorf(CloseInvalidMessage, "INVALID-SIMULCAST-RID", "%s %.20q is not r0, r1, r2 or auto", field, v)
		}
		return Errorf(CloseInvalidMessage, "INVALID-SIMULCAST-RID", "%s %.20q is not r0, r1 or r2", field, v)
	}
	if err := rid("simulcast_rid", c.SimulcastRid, false, true); err != nil {
		return err
	}
	if err := rid("simulcast_request_rid", c.SimulcastRequestRid, true, true); err != nil {
		return err
	}
	if c.Simulcast != nil {
		return rid("simulcast.rid", c.Simulcast.Rid, false, false)
	}
	return nil
}

// validate checks connect's data_channels[i]; seen holds the labels
// before it.
func (dc *DataChannelSpec) validate(i int, seen map[string]bool) error {
	bad := func(format string, args ...any) error {
		return Errorf(CloseInvalidMessage, "INVALID-DATA-CHANNELS", format, args...)
	}
	switch {
	case dc.Label == "":
		return bad("data_channels[%d] has no label", i)
	case !strings.HasPrefix(dc.Label, "#") || len(dc.Label) < 2:
		return bad("data_channels[%d] label %.40q does not start with # (messaging channels only)", i, dc.Label)
	case len(dc.Label) > 255:
		return bad("data_channels[%d] label is over 255 bytes", i)
	case seen[dc.Label]:
		return bad("data_channels label %q given twice", dc.Label)
	case dc.MaxPacketLifeTime != nil && dc.MaxRetransmits != nil:
		return bad("data_channels %q sets both max_packet_life_time and max_retransmits", dc.Label)
	case outOfRange(dc.MaxPacketLifeTime), outOfRange(dc.MaxRetransmits):
		return bad("data_channels %q: limit out of range 0..65535", dc.Label)
	}
	switch dc.Direction {
	case "", "sendrecv", "sendonly", "recvonly":
		return nil
	}
	return bad("data_channels %q: direction %.20q", dc.Label, dc.Direction)
}

// outOfRange reports whether a data channel's limit is set and not in
// 0..65535.
func outOfRange(p *int) bool { return p != nil && (*p < 0 || *p > 65535) }
