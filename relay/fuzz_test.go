package relay

import (
	"bytes"
	"testing"
)

// FuzzDecodeFrame feeds untrusted bytes to the frame decoder and to the
// payload decoders behind it (messages, track descriptions, hellos): none
// may panic, and a frame that decodes encodes back to the same bytes.
func FuzzDecodeFrame(f *testing.F) {
	corpus := func(fr Frame) {
		b, err := AppendFrame(nil, fr)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	corpus(Frame{Kind: KindRTP, Channel: []byte("room"), Track: []byte("c1-video"), Payload: rtpPacket(7, []byte("vp8"))})
	corpus(Frame{Kind: KindRTP, Flags: FlagRetransmit, Channel: []byte("room"), Track: []byte("c1-audio"), Payload: rtpPacket(65535, nil)})
	corpus(Frame{Kind: KindNACK, Channel: []byte("room"), Track: []byte("t"), Payload: []byte{0, 4, 0, 5}})
	corpus(Frame{Kind: KindPing, Payload: []byte{0, 0, 0, 0, 0, 0, 0, 42}})
	corpus(Frame{Kind: KindKeyframe, Channel: []byte("room"), Track: []byte("t")})
	msg, _ := appendMessage(nil, Message{Label: "#chat", From: "conn1", Data: []byte("hello")})
	corpus(Frame{Kind: KindMessage, Channel: []byte("room"), Payload: msg})
	corpus(Frame{Kind: KindTrackOpen, Channel: []byte("room"), Track: []byte(video.ID), Payload: appendTrackInfo(nil, video)})
	corpus(Frame{Kind: KindChannelOpen, Channel: []byte("room"), Payload: []byte{0, 1, 2, 'a', 'b'}})
	corpus(Frame{Kind: KindHello, Payload: appendHello(nil, hello{Version: protocolVersion, Node: "a@127.0.0.1", Nonce: make([]byte, nonceLen), UDPPort: 49020})})
	f.Add([]byte{})
	f.Add([]byte{1, 0, 255, 255})
	f.Add([]byte{99, 0, 0, 0})

	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := DecodeFrame(b)
		if err != nil {
			return
		}
		out, err := AppendFrame(nil, fr)
		if err != nil {
			t.Fatalf("decoded frame does not encode: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("round trip: %x became %x", b, out)
		}
		switch fr.Kind {
		case KindMessage:
			if m, err := decodeMessage(fr.Payload); err == nil {
				again, err := appendMessage(nil, m)
				if err != nil || !bytes.Equal(again, fr.Payload) {
					t.Fatalf("message round trip: %x became %x (%v)", fr.Payload, again, err)
				}
			}
		case KindTrackOpen:
			if ti, err := decodeTrackInfo(string(fr.Track), fr.Payload); err == nil {
				if again := appendTrackInfo(nil, ti); !bytes.Equal(again, fr.Payload) {
					t.Fatalf("track info round trip: %x became %x", fr.Payload, again)
				}
			}
		case KindHello:
			if h, err := decodeHello(fr.Payload); err == nil {
				if again := appendHello(nil, h); !bytes.Equal(again, fr.Payload) {
					t.Fatalf("hello round trip: %x became %x", fr.Payload, again)
				}
			}
		}
	})
}

func TestDecodeFrameErrors(t *testing.T) {
	for _, b := range [][]byte{nil, {1, 0, 0}, {0, 0, 0, 0}, {byte(kindMax + 1), 0, 0, 0}, {1, 0, 5, 0, 'a'}, {1, 0, 1, 3, 'a', 'b'}} {
		if _, err := DecodeFrame(b); err == nil {
			t.Errorf("DecodeFrame(%x) accepted", b)
		}
	}
	if _, err := AppendFrame(nil, Frame{Kind: KindRTP, Channel: make([]byte, 256)}); err == nil {
		t.Error("256-byte channel id accepted")
	}
	if _, err := decodeHello(appendHello(nil, hello{Version: 9, Node: "a@b.c", Nonce: make([]byte, nonceLen)})); err == nil {
		t.Error("hello of another version accepted")
	}
}
