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
	return &printWriter{printLocal: p}, nil
}

func (p printLocal) DeliverMessage(from string, m relay.Message) {
	p.out <- fmt.Sprintf("%s: %s %q from %s", p.name, m.Label, m.Data, m.From)
}

func (p printLocal) Close() {}

// printWriter prints the first packet of a track. Relayed media travels
// as UDP datagrams, so a sender cannot count on any one of them arriving:
// the example keeps sending until one does.
type printWriter struct {
	printLocal
	printed bool // WriteRTP is called from one goroutine at a time
}

func (p *printWriter) WriteRTP(pkt []byte) error {
	if !p.printed {
		p.printed = true
		p.out <- fmt.Sprintf("%s: %d-byte RTP packet", p.name, len(pkt))
	}
	return nil
}

func (p *printWriter) Close() error { return nil }

// Two nodes in one process: a relays a track and a message of channel
// "sora" to b.
func Example() {
	key := []byte("the cluster's shared secret key!")
	got := make(chan string, 16)
	next := func() string {
		select {
		case s := <-got:
			return s
		case <-time.After(10 * time.Second):
			return "timed out"
		}
	}
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
		if err := r.Listen(); err != nil { // r.Addr() is valid from here
			panic(err)
		}
		go r.Serve(context.Background()) // until Close
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
	for deadline := time.Now().Add(10 * time.Second); b.Stats().Channels == nil && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond) // b joins when a's announcement arrives
	}
	track, _ := a.AddLocalTrack("sora", relay.TrackInfo{
		ID: "c1-video", StreamID: "c1", Kind: "video", MimeType: "video/VP8", ClockRate: 90000,
	}, relay.KeyframeFunc(func() {}))
	fmt.Println(next())

	// Send a packet every 10 ms until b has printed one.
	stop := make(chan struct{})
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		pkt := make([]byte, 112)
		pkt[0] = 0x80
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for seq := uint16(1); ; seq++ {
			pkt[2], pkt[3] = byte(seq>>8), byte(seq)
			track.WriteRTP(pkt)
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	fmt.Println(next())
	close(stop)
	<-sent
	a.SendMessage("sora", relay.Message{Label: "#chat", From: "c1", Data: []byte("hello")})
	fmt.Println(next())
	// Output:
	// b: track c1-video (video/VP8) from a@127.0.0.1
	// b: 112-byte RTP packet
	// b: #chat "hello" from c1
}
