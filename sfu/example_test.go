package sfu_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/pion/webrtc/v4"

	"github.com/shoal-sfu/shoal/sfu"
)

// A sendrecv client joins: its offer has the upstream m-lines first, every
// server candidate inside, and the data channels the server opens.
func Example() {
	s, err := sfu.New(sfu.LocalConfig(slog.New(slog.DiscardHandler)))
	if err != nil {
		panic(err)
	}
	defer s.Close()
	conn, err := s.Join(context.Background(), sfu.JoinRequest{
		ChannelID:    "room",
		ConnectionID: "ALICE",
		Role:         sfu.RoleSendrecv,
		Audio:        true,
		Video:        true,
		DataChannels: []sfu.DataChannelSpec{{Label: "#chat"}},
	})
	if err != nil {
		panic(err)
	}
	offer := conn.Offer()
	fmt.Println("mid:", offer.Mids.Audio, offer.Mids.Video)
	fmt.Println("candidates inside:", strings.Contains(offer.SDP, "a=candidate:"))
	for _, d := range offer.DataChannels {
		fmt.Println("data channel:", d.Label, d.Direction)
	}
	fmt.Println("connections:", s.Counts().Channels["room"])
	// Output:
	// mid: 0 1
	// candidates inside: true
	// data channel: signaling sendrecv
	// data channel: notify sendrecv
	// data channel: push sendrecv
	// data channel: #chat sendrecv
	// connections: 1
}

// The relay injects a track from another node; local subscribers get it as
// if its publisher were here.
func ExampleChannel_AddRemoteTrack() {
	s, err := sfu.New(sfu.LocalConfig(slog.New(slog.DiscardHandler)))
	if err != nil {
		panic(err)
	}
	defer s.Close()
	ch, err := s.Channel("room")
	if err != nil {
		panic(err)
	}
	w, err := ch.AddRemoteTrack(sfu.TrackInfo{
		ID:       "BOB-video",
		StreamID: "BOB", // the publisher's connection id on the other node
		Kind:     webrtc.RTPCodecTypeVideo,
		Codec:    webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000},
	}, sfu.KeyframeRequesterFunc(func() { /* ask the other node for a keyframe */ }))
	if err != nil {
		panic(err)
	}
	pkt := []byte{0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 42, 0xAB} // one RTP packet
	fmt.Println("write:", w.WriteRTP(pkt))
	fmt.Println("close:", w.Close())
	fmt.Println("write after close fails:", w.WriteRTP(pkt) != nil)
	// Output:
	// write: <nil>
	// close: <nil>
	// write after close fails: true
}
