package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// The messages a client sends, as the Sora SDKs send them. Fields the
// server does not use are left out: decoding ignores them.

// Connect is the client's `connect` message.
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
	// Simulcast is true for a client that publishes its video as simulcast
	// layers (r0, r1, r2); nil when not sent.
	Simulcast *SimulcastOption `json:"simulcast,omitempty"`
	// SimulcastRid and SimulcastRequestRid name the layer a client
	// receives of simulcast video ("r0", "r1", "r2", or "auto": the
	// server's congestion control picks it; the second also "none");
	// SimulcastRequestRid, the newer name, wins. See ReceiveRid.
	SimulcastRid        string `json:"simulcast_rid,omitempty"`
	SimulcastRequestRid string `json:"simulcast_request_rid,omitempty"`
}

// SimulcastOption is connect's simulcast: a boolean, or (older SDKs) an
// object {"rid": "r0"|"r1"|"r2"} that means true and names the layer to
// receive.
type SimulcastOption struct {
	Enabled bool
	Rid     string
}

// UnmarshalJSON accepts true, false, null (false) or {"rid": ...}.
func (s *SimulcastOption) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("true")):
		*s = SimulcastOption{Enabled: true}
		return nil
	case bytes.Equal(b, []byte("false")), bytes.Equal(b, []byte("null")):
		*s = SimulcastOption{}
		return nil
	case len(b) > 0 && b[0] == '{':
		var o struct {
			Rid string `json:"rid"`
		}
		if err := json.Unmarshal(b, &o); err != nil {
			return err
		}
		*s = SimulcastOption{Enabled: true, Rid: o.Rid}
		return nil
	}
	return errors.New("want a boolean or an object")
}

// MarshalJSON writes a boolean, or {"rid"} when Rid is set.
func (s SimulcastOption) MarshalJSON() ([]byte, error) {
	if s.Rid != "" {
		return json.Marshal(struct {
			Rid string `json:"rid"`
		}{s.Rid})
	}
	return json.Marshal(s.Enabled)
}

// SimulcastOn reports whether connect asked to publish simulcast.
func (c *Connect) SimulcastOn() bool { return c.Simulcast != nil && c.Simulcast.Enabled }

// ReceiveRid is the layer the client asks to receive of simulcast video:
// simulcast_request_rid, else simulcast_rid, else the rid of an object
// simulcast; "" when none is given.
func (c *Connect) ReceiveRid() string {
	switch {
	case c.SimulcastRequestRid != "":
		return c.SimulcastRequestRid
	case c.SimulcastRid != "":
		return c.SimulcastRid
	case c.Simulcast != nil:
		return c.Simulcast.Rid
	}
	return ""
}

// MediaOptions is the `audio` or `video` field of connect: either a boolean
// or an object of codec options, which implies true.
type MediaOptions struct {
	Enabled   bool
	CodecType string // "OPUS"; "VP8", "VP9", "AV1", "H264", "H265"
	BitRate   int
	// Params keeps the whole object as sent, the codec-specific fields
	// (opus_params, vp9_params, ...) included.
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
			CodecType string   `json:"codec_type"`
			BitRate   *float64 `json:"bit_rate"`
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

// MarshalJSON writes false when not Enabled; else Params as it is when
// set; else true when there is no codec_type or bit_rate to say; else
// {"codec_type","bit_rate"}.
func (m MediaOptions) MarshalJSON() ([]byte, error) {
	switch {
	case !m.Enabled:
		return []byte("false"), nil
	case len(m.Params) > 0:
		return m.Params, nil
	case m.CodecType == "" && m.BitRate == 0:
		return []byte("true"), nil
	}
	return json.Marshal(struct {
		CodecType string `json:"codec_type,omitempty"`
		BitRate   int    `json:"bit_rate,omitempty"`
	}{m.CodecType, m.BitRate})
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

// Answer is the client's `answer`, `re-answer` or `update`.
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
