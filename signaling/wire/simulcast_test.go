package wire

import (
	"encoding/json"
	"testing"
)

func TestConnectSimulcast(t *testing.T) {
	for _, tc := range []struct {
		msg  string
		on   bool
		rid  string
		fail string
	}{
		{`{"type":"connect","role":"sendonly","channel_id":"c","simulcast":true}`, true, "", ""},
		{`{"type":"connect","role":"recvonly","channel_id":"c","simulcast":true,"simulcast_rid":"r1"}`, true, "r1", ""},
		{`{"type":"connect","role":"recvonly","channel_id":"c","simulcast_rid":"r1","simulcast_request_rid":"none"}`, false, "none", ""},
		{`{"type":"connect","role":"recvonly","channel_id":"c","simulcast":{"rid":"r2"}}`, true, "r2", ""},
		{`{"type":"connect","role":"recvonly","channel_id":"c","simulcast":null}`, false, "", ""},
		{`{"type":"connect","role":"recvonly","channel_id":"c","simulcast_rid":"none"}`, false, "", "INVALID-SIMULCAST-RID"},
		{`{"type":"connect","role":"recvonly","channel_id":"c","simulcast_request_rid":"R1"}`, false, "", "INVALID-SIMULCAST-RID"},
		{`{"type":"connect","role":"recvonly","channel_id":"c","simulcast_request_rid":"auto"}`, false, "auto", ""},
		{`{"type":"connect","role":"recvonly","channel_id":"c","simulcast_rid":"auto"}`, false, "auto", ""},
		{`{"type":"connect","role":"recvonly","channel_id":"c","simulcast":{"rid":"auto"}}`, false, "", "INVALID-SIMULCAST-RID"},
		{`{"type":"connect","role":"recvonly","channel_id":"c","simulcast":1}`, false, "", "INVALID-MESSAGE"},
	} {
		m, err := DecodeClientMessage([]byte(tc.msg), 0)
		if tc.fail != "" {
			pe, ok := err.(*ProtocolError)
			if !ok || pe.Reason != tc.fail || pe.Code != CloseInvalidMessage {
				t.Errorf("%s: err %v, want %s", tc.msg, err, tc.fail)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.msg, err)
			continue
		}
		c := m.(*Connect)
		if c.SimulcastOn() != tc.on || c.ReceiveRid() != tc.rid {
			t.Errorf("%s: on %v rid %q", tc.msg, c.SimulcastOn(), c.ReceiveRid())
		}
	}
	// Round trip of both forms.
	for _, s := range []string{`true`, `false`, `{"rid":"r1"}`} {
		var o SimulcastOption
		if err := json.Unmarshal([]byte(s), &o); err != nil {
			t.Fatal(err)
		}
		if b, _ := json.Marshal(o); string(b) != s {
			t.Errorf("%s came back as %s", s, b)
		}
	}
}

func TestOfferSimulcastJSON(t *testing.T) {
	o := Offer{Type: TypeOffer, SDP: "v=0", ConnectionID: "C", Simulcast: true,
		Encodings: []Encoding{{RID: "r0", Active: true, ScaleResolutionDownBy: 4, MaxBitrate: 150000}, {RID: "r2", Active: true}}}
	b, _ := json.Marshal(o)
	want := `{"type":"offer","sdp":"v=0","connection_id":"C","client_id":"","bundle_id":"","channel_id":"",` +
		`"simulcast":true,"encodings":[{"rid":"r0","active":true,"scaleResolutionDownBy":4,"maxBitrate":150000},{"rid":"r2","active":true}]}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
	b, _ = json.Marshal(Offer{Type: TypeOffer})
	if json.Valid(b) && string(b) != `{"type":"offer","sdp":"","connection_id":"","client_id":"","bundle_id":"","channel_id":""}` {
		t.Fatalf("an offer without simulcast: %s", b)
	}
}
