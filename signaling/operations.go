package signaling

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/shoal-sfu/shoal/signaling/wire"
)

// ConnectionInfo describes one connection served by this node. Its JSON is
// Sora's ListChannelConnections entry (see MarshalJSON), plus node_name.
type ConnectionInfo struct {
	ChannelID    string
	ConnectionID string
	// ClientID is connect's client_id, or the connection_id when the
	// client gave none (as the offer says).
	ClientID string
	Role     wire.Role
	// NodeName is the node serving the connection (ours; Sora has no
	// such field).
	NodeName string
	// CreatedTime is when the offer was sent, to the microsecond.
	CreatedTime time.Time
	// Audio and Video are nil when connect turned them off; otherwise they
	// carry the codec_type and bit_rate connect asked for, if any (the
	// codec actually negotiated is the media side's and not known here).
	Audio, Video *ConnectionMedia
	// Simulcast is connect's simulcast (true or an object).
	Simulcast bool
}

// ConnectionMedia is the audio or video of a ConnectionInfo.
type ConnectionMedia struct {
	CodecType string `json:"codec_type,omitempty"`
	BitRate   int    `json:"bit_rate,omitempty"`
}

// connectionInfoJSON is ConnectionInfo on the wire, in Sora's order.
// The server is always multistream and has no spotlight; there is no
// session_id.
type connectionInfoJSON struct {
	ChannelID    string          `json:"channel_id"`
	ClientID     string          `json:"client_id,omitempty"`
	ConnectionID string          `json:"connection_id"`
	Role         wire.Role       `json:"role"`
	Multistream  bool            `json:"multistream"`
	Simulcast    bool            `json:"simulcast"`
	Spotlight    bool            `json:"spotlight"`
	CreatedTime  json.RawMessage `json:"created_time"`
	Audio        json.RawMessage `json:"audio"`
	Video        json.RawMessage `json:"video"`
	NodeName     string          `json:"node_name,omitempty"`
}

// MarshalJSON writes Sora's shape: {"channel_id", "client_id",
// "connection_id", "role", "multistream": true, "simulcast" (connect's),
// "spotlight": false, "created_time": microseconds since the epoch (an
// integer; 0 for the zero time), "audio" and "video": false or
// {"codec_type", "bit_rate"} (each omitted when unknown), "node_name"}.
func (c ConnectionInfo) MarshalJSON() ([]byte, error) {
	media := func(m *ConnectionMedia) json.RawMessage {
		if m == nil {
			return json.RawMessage("false")
		}
		b, _ := json.Marshal(m)
		return b
	}
	var created int64
	if !c.CreatedTime.IsZero() {
		created = c.CreatedTime.UnixMicro()
	}
	return json.Marshal(connectionInfoJSON{ChannelID: c.ChannelID, ClientID: c.ClientID, ConnectionID: c.ConnectionID,
		Role: c.Role, Multistream: true, Simulcast: c.Simulcast, CreatedTime: strconv.AppendInt(nil, created, 10),
		Audio: media(c.Audio), Video: media(c.Video), NodeName: c.NodeName})
}

// UnmarshalJSON reads what MarshalJSON writes. created_time may also be an
// RFC 3339 string (what nodes before Sora's shape answered), and audio
// or video true (an object without codec) or absent (off).
func (c *ConnectionInfo) UnmarshalJSON(b []byte) error {
	var w connectionInfoJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*c = ConnectionInfo{ChannelID: w.ChannelID, ConnectionID: w.ConnectionID, ClientID: w.ClientID, Role: w.Role, NodeName: w.NodeName,
		Simulcast: w.Simulcast}
	if ct := bytes.TrimSpace(w.CreatedTime); len(ct) > 0 && !bytes.Equal(ct, []byte("null")) {
		if ct[0] == '"' {
			if err := json.Unmarshal(ct, &c.CreatedTime); err != nil {
				return fmt.Errorf("created_time: %w", err)
			}
		} else {
			us, err := strconv.ParseInt(string(ct), 10, 64)
			if err != nil {
				var f float64 // 1.6443162143145e+15
				if json.Unmarshal(ct, &f) != nil || f < math.MinInt64 || f >= math.MaxInt64 {
					return fmt.Errorf("created_time %.40q: want microseconds since the epoch", ct)
				}
				us = int64(f)
			}
			if us != 0 {
				c.CreatedTime = time.UnixMicro(us).UTC()
			}
		}
	}
	media := func(raw json.RawMessage, what string) (*ConnectionMedia, error) {
		raw = bytes.TrimSpace(raw)
		switch {
		case len(raw) == 0, bytes.Equal(raw, []byte("null")), bytes.Equal(raw, []byte("false")):
			return nil, nil
		case bytes.Equal(raw, []byte("true")):
			return &ConnectionMedia{}, nil
		}
		var m ConnectionMedia
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		return &m, nil
	}
	var err error
	if c.Audio, err = media(w.Audio, "audio"); err != nil {
		return err
	}
	c.Video, err = media(w.Video, "video")
	return err
}

// Connections lists the connections this node serves in channelID, or in
// every channel if channelID is "".
func (s *Server) Connections(channelID string) []ConnectionInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []ConnectionInfo
	for se := range s.sessions {
		if info, ok := se.info(); ok && (channelID == "" || info.ChannelID == channelID) {
			out = append(out, info)
		}
	}
	return out
}

// DisconnectChannel closes every connection this node serves in channelID
// (close code 1000, the given reason) and returns how many it closed.
func (s *Server) DisconnectChannel(channelID, reason string) (int, error) {
	return s.disconnect(func(info ConnectionInfo) bool { return info.ChannelID == channelID }, 1000, reason)
}

// DisconnectConnection closes the connection connectionID of channelID if
// this node serves it (close code 1000, the given reason) and returns how
// many it closed: 0 or 1.
func (s *Server) DisconnectConnection(channelID, connectionID, reason string) (int, error) {
	return s.disconnect(func(info ConnectionInfo) bool {
		return info.ChannelID == channelID && info.ConnectionID == connectionID
	}, 1000, reason)
}

// DisconnectClient closes every connection of channelID with this
// client_id that this node serves (close code 1000, the given reason) and
// returns how many it closed. A connection without a client_id has its
// connection_id as client_id.
func (s *Server) DisconnectClient(channelID, clientID, reason string) (int, error) {
	return s.disconnect(func(info ConnectionInfo) bool {
		return info.ChannelID == channelID && info.ClientID == clientID
	}, 1000, reason)
}

// DisconnectAll closes every connection this node serves with the code and
// reason given, and returns how many it closed. (Leaving the cluster's
// majority needs no call: with a Cluster the server closes its connections
// itself, 4503 NOT-IN-MAJORITY.)
func (s *Server) DisconnectAll(code int, reason string) (int, error) {
	return s.disconnect(func(ConnectionInfo) bool { return true }, code, reason)
}

func (s *Server) disconnect(match func(ConnectionInfo) bool, code int, reason string) (int, error) {
	return s.each(match, func(se *session) { se.kill(code, reason) })
}

// ErrPushData is returned by the push methods when data is not a JSON
// object.
var ErrPushData = errors.New("signaling: push data must be a JSON object")

// PushChannel sends {"type":"push","data":data} to every connection this
// node serves in channelID and returns how many it queued it for. data
// must be a JSON object (ErrPushData). The message is queued on each
// session without blocking and written on its WebSocket in order with
// the session's other messages; a session whose queue is full is dropped
// (4500 TOO-SLOW), as for media events.
func (s *Server) PushChannel(channelID string, data json.RawMessage) (int, error) {
	return s.pushTo(func(info ConnectionInfo) bool { return info.ChannelID == channelID }, data)
}

// PushConnection sends {"type":"push","data":data} to the connection
// connectionID of channelID if this node serves it, and returns how many
// it queued it for: 0 or 1. See PushChannel.
func (s *Server) PushConnection(channelID, connectionID string, data json.RawMessage) (int, error) {
	return s.pushTo(func(info ConnectionInfo) bool {
		return info.ChannelID == channelID && info.ConnectionID == connectionID
	}, data)
}

// PushClient sends {"type":"push","data":data} to every connection of
// channelID with this client_id that this node serves, and returns how
// many. See PushChannel and DisconnectClient.
func (s *Server) PushClient(channelID, clientID string, data json.RawMessage) (int, error) {
	return s.pushTo(func(info ConnectionInfo) bool {
		return info.ChannelID == channelID && info.ClientID == clientID
	}, data)
}

// RequestSimulcastRid asks the connection receiverID of channelID, if this
// node serves it, to receive layer rid ("none", "r0", "r1", "r2", or
// "auto": the congestion control picks) of the simulcast video of senderID
// ("" for every publisher), and returns how many connections it asked: 0
// or 1. The change is queued on the session and made by its goroutine; the
// client gets a simulcast.switched notify once the layer changes.
func (s *Server) RequestSimulcastRid(channelID, receiverID, senderID, rid string) (int, error) {
	switch rid {
	case "none", "r0", "r1", "r2", "auto":
	default:
		return 0, fmt.Errorf("%w: rid %.20q is not none, r0, r1, r2 or auto", ErrSimulcastRid, rid)
	}
	req := &ridRequest{sender: senderID, rid: rid}
	return s.each(func(info ConnectionInfo) bool {
		return info.ChannelID == channelID && info.ConnectionID == receiverID
	}, func(se *session) { se.push(queued{rid: req}) })
}

// ErrSimulcastRid is returned by RequestSimulcastRid for an unknown rid.
var ErrSimulcastRid = errors.New("signaling: bad simulcast rid")

// isJSONObject reports whether b is one valid JSON object.
func isJSONObject(b []byte) bool {
	b = bytes.TrimSpace(b)
	return len(b) > 0 && b[0] == '{' && json.Valid(b)
}

func (s *Server) pushTo(match func(ConnectionInfo) bool, data json.RawMessage) (int, error) {
	if !isJSONObject(data) {
		return 0, ErrPushData
	}
	msg, err := json.Marshal(wire.Push{Type: wire.TypePush, Data: data}) // once for every session
	if err != nil {
		return 0, err
	}
	return s.each(match, func(se *session) { se.push(queued{raw: msg}) })
}

// each runs fn, which must not block, on every session this node serves
// whose connection matches, and returns how many.
func (s *Server) each(match func(ConnectionInfo) bool, fn func(*session)) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	n := 0
	for se := range s.sessions {
		if info, ok := se.info(); ok && match(info) {
			fn(se)
			n++
		}
	}
	return n, nil
}
