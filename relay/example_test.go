package relay_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/shoal-sfu/shoal/relay"
)

// printLocal is a Local that prints what peers relay; a node would use
// relay.NewSFULocal(its *sfu.SFU, logger) instead.
type printLocal struct {
	name string
	out  chan<- string
}

func (p printLocal) RelayChannel(*relay.Relay, string) (relay.ChannelSink, error) { return p, nil }

func (p printLocal) AddRemoteTrack(from string, info relay.TrackInfo, _ relay.KeyframeRequester) (relay.TrackWriter, error) {
	p.out <- fmt.Sprintf("%s: track %s (%s) from %s", p.name, info.ID, info.MimeType, from)
	return printWriter(p), nil
}

func (p printLocal) DeliverMessage(from string, m relay.Message) {
	p.out <- fmt.Sprintf("%s: %s %q from %s", p.name, m.Label, m.Data, m.From)
}

func (p printLocal) Close() {}

type printWriter printLocal

func (p printWriter) WriteRTP(pkt []byte) error {
	p.out <- fmt.Sprintf("%s: %d-byte RTP packet", p.name, len(pkt))
	return nil
}

func (p printWriter) Close() error { return nil }

// Two nodes in one process: a relays a track and a message of channel
// "sora" to b.
func Example() {
	key := []byte("the cluster's shared secret key!")
	got := make(chan string, 16)
	start := func(name string, port uint16) *relay.Relay {
		r, err := relay.New(relay.FastConfig(relay.Config{
			NodeName:   name + "@127.0.0.1",
			ClusterKey: key,
			ListenAddr: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port),
			Local:      printLocal{name: name, out: got},
			Logger:     slog.New(slog.DiscardHandler),
		}))
		if err != nil {
			panic(err)
		}
		go r.Run(context.Background())
		for !r.Addr().IsValid() {
			time.Sleep(time.Millisecond)
		}
		return r
	}
	a, b := start("a", 0), start("b", 0)
	defer a.Close()
	defer b.Close()
	a.SetPeer("b@127.0.0.1", b.Addr())
	b.SetPeer("a@127.0.0.1", a.Addr())

	if err := a.OpenChannel("sora", "b@127.0.0.1"); err != nil {
		panic(err)
	}
	for b.Stats().Channels == nil { // b joins when a's announcement arrives
		time.Sleep(time.Millisecond)
	}
	track, _ := a.AddLocalTrack("sora", relay.TrackInfo{
		ID: "c1-video", StreamID: "c1", Kind: "video", MimeType: "video/VP8", ClockRate: 90000,
	}, relay.KeyframeFunc(func() {}))
	fmt.Println(<-got)
	pkt := make([]byte, 112)
	pkt[0] = 0x80
	track.WriteRTP(pkt)
	fmt.Println(<-got)
	a.SendMessage("sora", relay.Message{Label: "#chat", From: "c1", Data: []byte("hello")})
	fmt.Println(<-got)
	// Output:
	// b: track c1-video (video/VP8) from a@127.0.0.1
	// b: 112-byte RTP packet
	// b: #chat "hello" from c1
}
