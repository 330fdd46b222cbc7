package wire

import "encoding/json"

// The messages the server sends. Shoal's server writes each with its Type
// set to the matching Type constant; the Go client reads them.

// Offer is the server's `offer`, the answer to connect.
type Offer struct {
	Type         string             `json:"type"`
	SDP          string             `json:"sdp"`
	ConnectionID string             `json:"connection_id"`
	ClientID     string             `json:"client_id"`
	BundleID     string             `json:"bundle_id"`
	ChannelID    string             `json:"channel_id"`
	Mid          *OfferMid          `json:"mid,omitempty"`
	Metadata     json.RawMessage    `json:"metadata,omitempty"`
	DataChannels []OfferDataChannel `json:"data_channels,omitempty"`
	// Config is the RTCConfiguration (ICE servers) a Sora server may send;
	// Shoal's sends none.
	Config json.RawMessage `json:"config,omitempty"`
	// Simulcast is true when the video m-line receives simulcast; the SDK
	// then gives Encodings to its video sender's setParameters.
	Simulcast bool       `json:"simulcast,omitempty"`
	Encodings []Encoding `json:"encodings,omitempty"`
}

// Encoding is one entry of offer.encodings: an RTCRtpEncodingParameters of
// one simulcast layer. Zero numbers are left out.
type Encoding struct {
	RID                   string  `json:"rid"`
	Active                bool    `json:"active"`
	ScaleResolutionDownBy float64 `json:"scaleResolutionDownBy,omitempty"`
	MaxBitrate            int     `json:"maxBitrate,omitempty"`
	MaxFramerate          float64 `json:"maxFramerate,omitempty"`
	ScalabilityMode       string  `json:"scalabilityMode,omitempty"`
}

// OfferMid is offer.mid: the mids of the upstream audio and video m-lines.
type OfferMid struct {
	Audio string `json:"audio,omitempty"`
	Video string `json:"video,omitempty"`
}

// OfferDataChannel is one entry of offer.data_channels.
type OfferDataChannel struct {
	Label     string `json:"label"`
	Direction string `json:"direction"`
	Compress  bool   `json:"compress"`
}

// ReOffer is the server's `re-offer`, answered by a re-answer.
type ReOffer struct {
	Type string `json:"type"`
	SDP  string `json:"sdp"`
}

// Redirect sends the client to another node's signaling URL, instead of
// an offer.
type Redirect struct {
	Type     string `json:"type"`
	Location string `json:"location"`
}

// Ping asks for a pong; Stats, which Shoal's server never sets, asks for
// getStats() reports in it.
type Ping struct {
	Type  string `json:"type"`
	Stats bool   `json:"stats,omitempty"`
}

// Notify is a connection joining or leaving the channel, with the
// channel's counts after the change.
type Notify struct {
	Type                       string    `json:"type"`
	EventType                  EventType `json:"event_type"`
	ConnectionID               string    `json:"connection_id"`
	ClientID                   string    `json:"client_id,omitempty"`
	Role                       Role      `json:"role"`
	ChannelConnections         int       `json:"channel_connections"`
	ChannelSendrecvConnections int       `json:"channel_sendrecv_connections"`
	ChannelSendonlyConnections int       `json:"channel_sendonly_connections"`
	ChannelRecvonlyConnections int       `json:"channel_recvonly_connections"`
}

// NotifySimulcastSwitched tells a subscriber that the simulcast layer it
// receives of one publisher changed (event_type "simulcast.switched"), in
// the shape of Sora's: Timestamp is RFC 3339 UTC; Priority is "higher" or
// "lower" (the new layer against the previous); Trigger is "receiver" (the
// subscriber's side changed: its request, or its bandwidth) or "sender"
// (the publisher's layers changed); RequestRid is the layer asked for
// ("auto" included); PreviousRid is "none" when the video starts,
// CurrentRid "none" when it stops. AutoRids are the layers the server's
// congestion control allows the subscriber at the switch (empty when it
// is off or pauses the video); RPCRids is always empty (no RPC data
// channel).
type NotifySimulcastSwitched struct {
	Type               string    `json:"type"`
	EventType          EventType `json:"event_type"`
	Timestamp          string    `json:"timestamp"`
	SenderConnectionID string    `json:"sender_connection_id"`
	Priority           string    `json:"priority"`
	Trigger            string    `json:"trigger"`
	RPCRids            []string  `json:"rpc_rids"`
	AutoRids           []string  `json:"auto_rids"`
	RequestRid         string    `json:"request_rid"`
	CurrentRid         string    `json:"current_rid"`
	PreviousRid        string    `json:"previous_rid"`
}

// Push carries data (a JSON object) from the admin API to the client.
type Push struct {
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
}

// Switched tells the client that signaling goes on over its data channels
// from now on; with IgnoreDisconnectWebSocket the client closes its
// WebSocket.
type Switched struct {
	Type                      string `json:"type"`
	IgnoreDisconnectWebSocket bool   `json:"ignore_disconnect_websocket"`
}

// Close ends a switched session on the "signaling" data channel, with the
// code and reason a WebSocket close would carry.
type Close struct {
	Type   string `json:"type"`
	Code   int    `json:"code"`
	Reason string `json:"reason"`
}
