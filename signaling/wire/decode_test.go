package wire

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// sdkConnect is a connect exactly as sora-js-sdk 2026.1.0 sends it, SDP
// shortened.
const sdkConnect = `{"audio":true,"channel_id":"sora","environment":"Mozilla/5.0","role":"sendrecv","sdp":"v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n","sora_client":"Sora JavaScript SDK 2026.1.0","type":"connect","video":{"codec_type":"VP8"},"metadata":{"access_token":"x"},"client_id":"alice","data_channel_signaling":true,"ignore_disconnect_websocket":false,"data_channels":[{"label":"#chat","direction":"sendrecv"}]}`

func TestDecodeConnectFromSDK(t *testing.T) {
	m, err := DecodeClientMessage([]byte(sdkConnect), 0)
	if err != nil {
		t.Fatal(err)
	}
	c, ok := m.(*Connect)
	if !ok {
		t.Fatalf("got %T, want *Connect", m)
	}
	if c.ChannelID != "sora" || c.Role != RoleSendrecv || c.ClientID != "alice" {
		t.Errorf("fields: %+v", c)
	}
	if !c.Audio.Enabled || !c.Video.Enabled || c.Video.CodecType != "VP8" {
		t.Errorf("media: audio %+v video %+v", c.Audio, c.Video)
	}
	if string(c.Metadata) != `{"access_token":"x"}` {
		t.Errorf("metadata %s", c.Metadata)
	}
	if len(c.DataChannels) != 1 || c.DataChannels[0].Label != "#chat" || c.DataChannels[0].Direction != "sendrecv" {
		t.Errorf("data_channels %+v", c.DataChannels)
	}
	if c.DataChannelSignaling == nil || !*c.DataChannelSignaling || c.Redirect {
		t.Errorf("flags: %+v", c)
	}
}

func TestDecodeOtherMessages(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
	}{
		{`{"type":"answer","sdp":"v=0\r\n"}`, "*wire.Answer"},
		{`{"sdp":"v=0","type":"re-answer"}`, "*wire.Answer"},
		{`{"candidate":"candidate:1 1 udp 1 127.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"u","type":"candidate"}`, "*wire.Candidate"},
		{`{"type":"pong"}`, "*wire.Pong"},
		{`{"type":"pong","stats":[{"id":"x"}]}`, "*wire.Pong"},
		{`{"reason":"NO-ERROR","type":"disconnect"}`, "*wire.Disconnect"},
	} {
		m, err := DecodeClientMessage([]byte(tc.in), 0)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if got := typeName(m); got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.in, got, tc.want)
		}
	}
}

func typeName(v any) string {
	switch v.(type) {
	case *Connect:
		return "*wire.Connect"
	case *Answer:
		return "*wire.Answer"
	case *Candidate:
		return "*wire.Candidate"
	case *Pong:
		return "*wire.Pong"
	case *Disconnect:
		return "*wire.Disconnect"
	}
	return "?"
}

func TestDecodeRejects(t *testing.T) {
	long := strings.Repeat("a", 256)
	for _, tc := range []struct {
		name, in string
		code     int
		reason   string
	}{
		{"not json", `hello`, CloseInvalidMessage, "INVALID-MESSAGE"},
		{"array", `[1,2]`, CloseInvalidMessage, "INVALID-MESSAGE"},
		{"no type", `{"channel_id":"a"}`, CloseInvalidMessage, "MISSING-TYPE"},
		{"type not string", `{"type":1}`, CloseInvalidMessage, "INVALID-MESSAGE"},
		{"unknown type", `{"type":"hello"}`, CloseInvalidMessage, "UNKNOWN-TYPE"},
		{"no channel", `{"type":"connect","role":"sendrecv"}`, CloseInvalidChannelID, "INVALID-CHANNEL-ID"},
		{"long channel", `{"type":"connect","role":"sendrecv","channel_id":"` + long + `"}`, CloseInvalidChannelID, "INVALID-CHANNEL-ID"},
		{"channel wrong type", `{"type":"connect","role":"sendrecv","channel_id":5}`, CloseInvalidMessage, "INVALID-FIELD"},
		{"no role", `{"type":"connect","channel_id":"a"}`, CloseInvalidRole, "INVALID-ROLE"},
		{"bad role", `{"type":"connect","channel_id":"a","role":"admin"}`, CloseInvalidRole, "INVALID-ROLE"},
		{"audio wrong", `{"type":"connect","channel_id":"a","role":"sendrecv","audio":"yes"}`, CloseInvalidMessage, "INVALID-MESSAGE"},
		{"bit rate", `{"type":"connect","channel_id":"a","role":"sendrecv","video":{"bit_rate":-1}}`, CloseInvalidMessage, "INVALID-MESSAGE"},
		{"dc no label", `{"type":"connect","channel_id":"a","role":"sendrecv","data_channels":[{}]}`, CloseInvalidMessage, "INVALID-DATA-CHANNELS"},
		{"dc twice", `{"type":"connect","channel_id":"a","role":"sendrecv","data_channels":[{"label":"#a"},{"label":"#a"}]}`, CloseInvalidMessage, "INVALID-DATA-CHANNELS"},
		{"dc both limits", `{"type":"connect","channel_id":"a","role":"sendrecv","data_channels":[{"label":"#a","max_retransmits":1,"max_packet_life_time":1}]}`, CloseInvalidMessage, "INVALID-DATA-CHANNELS"},
		{"dc direction", `{"type":"connect","channel_id":"a","role":"sendrecv","data_channels":[{"label":"#a","direction":"up"}]}`, CloseInvalidMessage, "INVALID-DATA-CHANNELS"},
		{"answer no sdp", `{"type":"answer"}`, CloseInvalidMessage, "MISSING-SDP"},
		{"candidate wrong", `{"type":"candidate","sdpMLineIndex":"x"}`, CloseInvalidMessage, "INVALID-FIELD"},
		{"too large", `{"type":"pong","stats":"` + strings.Repeat("x", 2000) + `"}`, CloseMessageTooLarge, "MESSAGE-TOO-LARGE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeClientMessage([]byte(tc.in), 1024)
			var pe *ProtocolError
			if !errors.As(err, &pe) {
				t.Fatalf("got %v, want a *ProtocolError", err)
			}
			if pe.Code != tc.code || pe.Reason != tc.reason {
				t.Errorf("got %d %s (%v), want %d %s", pe.Code, pe.Reason, pe, tc.code, tc.reason)
			}
		})
	}
}

// FuzzDecodeClientMessage: any bytes either decode to a valid message or give
// a *ProtocolError with a 4xxx code and a reason short enough for a close
// frame; nothing panics.
func FuzzDecodeClientMessage(f *testing.F) {
	for _, s := range []string{
		sdkConnect,
		`{"type":"answer","sdp":"v=0"}`,
		`{"type":"candidate","candidate":"","sdpMid":"0","sdpMLineIndex":0}`,
		`{"type":"pong","stats":[]}`,
		`{"type":"disconnect","reason":"NO-ERROR"}`,
		`{"type":"connect","channel_id":"a","role":"recvonly","audio":false,"video":{"codec_type":"VP9","vp9_params":{"profile_id":0}}}`,
		`{"type":"connect"`,
		`null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeClientMessage(b, 4096)
		if err != nil {
			var pe *ProtocolError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *ProtocolError", err)
			}
			if pe.Code < 4000 || pe.Code > 4999 || pe.Reason == "" || len(pe.Reason) > 123 {
				t.Fatalf("bad close code/reason %d %q", pe.Code, pe.Reason)
			}
			return
		}
		if c, ok := m.(*Connect); ok {
			if c.ChannelID == "" || len(c.ChannelID) > MaxChannelIDLen || !c.Role.valid() {
				t.Fatalf("accepted an invalid connect: %+v", c)
			}
		}
	})
}

// TestMediaOptionsRoundTrip: what MarshalJSON writes, UnmarshalJSON reads
// back the same.
func TestMediaOptionsRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		in   MediaOptions
		want string
	}{
		{MediaOptions{}, `false`},
		{MediaOptions{Enabled: true}, `true`},
		{MediaOptions{Enabled: true, CodecType: "VP9", BitRate: 500}, `{"codec_type":"VP9","bit_rate":500}`},
		{MediaOptions{Enabled: true, CodecType: "VP9", Params: []byte(`{"codec_type":"VP9","vp9_params":{"profile_id":0}}`)},
			`{"codec_type":"VP9","vp9_params":{"profile_id":0}}`},
	} {
		b, err := json.Marshal(tc.in)
		if err != nil || string(b) != tc.want {
			t.Errorf("%+v: %s, %v; want %s", tc.in, b, err, tc.want)
			continue
		}
		var back MediaOptions
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if back.Enabled != tc.in.Enabled || back.CodecType != tc.in.CodecType || back.BitRate != tc.in.BitRate {
			t.Errorf("%s read back as %+v", b, back)
		}
	}
}
