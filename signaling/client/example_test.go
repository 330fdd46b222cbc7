package client_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/pion/webrtc/v4"

	shoal "github.com/shoal-sfu/shoal"
	"github.com/shoal-sfu/shoal/sfu"
	"github.com/shoal-sfu/shoal/signaling"
	"github.com/shoal-sfu/shoal/signaling/client"
	"github.com/shoal-sfu/shoal/signaling/wire"
)

// Two Go clients meet in a channel of a one-node SFU and talk on a
// messaging data channel.
func ExampleConnect() {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, _ := sfu.New(sfu.LocalConfig(quiet))
	defer s.Close()
	srv, _ := signaling.New(signaling.Config{Logger: quiet, Authenticator: signaling.AllowAll, Media: shoal.NewMedia(s)})
	defer srv.Close()
	hs := httptest.NewServer(srv)
	defer hs.Close()
	url := "ws" + strings.TrimPrefix(hs.URL, "http")

	api, _ := client.LocalAPI(quiet)
	got := make(chan string, 1)
	join := func(onMessage func(webrtc.DataChannelMessage)) *client.Conn {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := client.Connect(ctx, client.Config{
			URLs: []string{url}, ChannelID: "room", Role: wire.RoleSendrecv, API: api, Logger: quiet,
			DataChannels: []wire.DataChannelSpec{{Label: "#chat", Direction: "sendrecv"}},
			OnDataChannel: func(dc *webrtc.DataChannel) {
				if dc.Label() == "#chat" && onMessage != nil {
					dc.OnMessage(onMessage)
				}
			},
		})
		if err != nil {
			panic(err)
		}
		return c
	}
	bob := join(func(m webrtc.DataChannelMessage) { got <- string(m.Data) })
	defer bob.Close()
	alice := join(nil)
	defer alice.Close()

	// Send once alice's #chat is open (the server opens it after DTLS).
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if dc, ok := alice.DataChannel("#chat"); ok && dc.ReadyState() == webrtc.DataChannelStateOpen {
			dc.Send([]byte("hello bob"))
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case m := <-got:
		fmt.Println(m)
	case <-time.After(10 * time.Second):
		fmt.Println("no message")
	}
	// Output: hello bob
}
