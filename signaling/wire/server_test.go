package wire

import (
	"encoding/json"
	"testing"
)

// TestSwitchedMessageShape checks the wire form of switched and close.
func TestSwitchedMessageShape(t *testing.T) {
	b, _ := json.Marshal(Switched{Type: TypeSwitched, IgnoreDisconnectWebSocket: false})
	if string(b) != `{"type":"switched","ignore_disconnect_websocket":false}` {
		t.Errorf("switched: %s", b)
	}
	b, _ = json.Marshal(Close{Type: TypeClose, Code: 1000, Reason: "X"})
	if string(b) != `{"type":"close","code":1000,"reason":"X"}` {
		t.Errorf("close: %s", b)
	}
}

// TestServerMessageShapes checks that fields Shoal's server never sets stay
// off the wire.
func TestServerMessageShapes(t *testing.T) {
	for _, tc := range []struct {
		v    any
		want string
	}{
		{Ping{Type: TypePing}, `{"type":"ping"}`},
		{Offer{Type: TypeOffer, SDP: "v=0", ConnectionID: "C", ClientID: "C", BundleID: "C", ChannelID: "room"},
			`{"type":"offer","sdp":"v=0","connection_id":"C","client_id":"C","bundle_id":"C","channel_id":"room"}`},
		{Offer{Type: TypeOffer, Mid: &OfferMid{Audio: "0"}, DataChannels: []OfferDataChannel{{Label: "signaling", Direction: "sendrecv"}}},
			`{"type":"offer","sdp":"","connection_id":"","client_id":"","bundle_id":"","channel_id":"","mid":{"audio":"0"},"data_channels":[{"label":"signaling","direction":"sendrecv","compress":false}]}`},
	} {
		if b, err := json.Marshal(tc.v); err != nil || string(b) != tc.want {
			t.Errorf("%T: %s, %v; want %s", tc.v, b, err, tc.want)
		}
	}
}
