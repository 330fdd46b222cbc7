package relay

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/internal/testutil/pionapi"
	"github.com/shoal-sfu/shoal/sfu"
)

// sfuNode is one node of the integration test: an SFU with its relay.
type sfuNode struct {
	*Relay
	name string
	sfu  *sfu.SFU
}

func startSFUNode(t *testing.T, name string) *sfuNode {
	t.Helper()
	log := testutil.LoggerLevel(t, slogLevel())
	s, err := sfu.New(sfu.LocalConfig(log))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ip := testutil.LoopbackIP(t)
	cfg := FastConfig(Config{
		NodeName:   name + "@" + ip.String(),
		ClusterKey: testKey,
		ListenAddr: netip.AddrPortFrom(ip, uint16(testutil.FreePort(t, ip))),
		Local:      NewSFULocal(s, log),
		Logger:     log,
	})
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	runRelay(t, r)
	return &sfuNode{Relay: r, name: cfg.NodeName, sfu: s}
}

// client is a pion peer answering the SFU's offers, as Sora's SDKs do.
type client struct {
	t     *testing.T
	pc    *webrtc.PeerConnection
	conn  *sfu.Connection
	video *webrtc.TrackLocalStaticRTP

	mu       sync.Mutex
	received map[string]int // stream id → packets
	msgs     []string
	dc       *webrtc.DataChannel
	open     atomic.Bool
}

// clientAPI is the pion API of the test's clients.
var clientAPI = pionapi.Local()

func joinSFU(t *testing.T, n *sfuNode, id string, role sfu.Role) *client {
	t.Helper()
	pc, err := clientAPI.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	c := &client{t: t, pc: pc, received: map[string]int{}}
	if role == sfu.RoleSendonly {
		c.video, _ = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "cam", "local")
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			if _, _, err := tr.ReadRTP(); err != nil {
				return
			}
			c.mu.Lock()
			c.received[tr.StreamID()]++
			c.mu.Unlock()
		}
	})
	pc.OnDataChannel(func(dc *webrtc.DataChannel) {
		if dc.Label() != "#chat" {
			return
		}
		c.mu.Lock()
		c.dc = dc
		c.mu.Unlock()
		dc.OnOpen(func() { c.open.Store(true) })
		dc.OnMessage(func(m webrtc.DataChannelMessage) {
			c.mu.Lock()
			c.msgs = append(c.msgs, string(m.Data))
			c.mu.Unlock()
		})
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := n.sfu.Join(ctx, sfu.JoinRequest{
		ChannelID: "room", ConnectionID: id, Role: role, Video: role == sfu.RoleSendonly,
		DataChannels: []sfu.DataChannelSpec{{Label: "#chat"}},
		Hooks: sfu.ConnectionHooks{ReOffer: func(offer string) {
			answer, err := c.answer(offer)
			if err == nil {
				err = c.conn.SetAnswer(answer)
			}
			if err != nil && !errors.Is(err, net.ErrClosed) && c.conn.Err() == nil && pc.ConnectionState() != webrtc.PeerConnectionStateClosed {
				t.Errorf("client %s: re-answer: %v", id, err)
			}
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	c.conn = conn
	t.Cleanup(func() { _ = conn.Close() })
	pc.OnICECandidate(func(cand *webrtc.ICECandidate) {
		if cand != nil {
			_ = conn.AddICECandidate(cand.ToJSON())
		}
	})
	answer, err := c.answer(conn.Offer().SDP)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.SetAnswer(answer); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, func() bool { return pc.ConnectionState() == webrtc.PeerConnectionStateConnected && c.open.Load() }, 10*time.Second, "client %s connected", id)
	return c
}

func (c *client) answer(offer string) (string, error) {
	if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", err
	}
	if c.video != nil && len(c.pc.GetSenders()) == 0 {
		s, err := c.pc.AddTrack(c.video)
		if err != nil {
			return "", err
		}
		go func() { // drain RTCP so that interceptors run
			for {
				if _, _, err := s.ReadRTCP(); err != nil {
					return
				}
			}
		}()
	}
	a, err := c.pc.CreateAnswer(nil)
	if err != nil {
		return "", err
	}
	if err := c.pc.SetLocalDescription(a); err != nil {
		return "", err
	}
	return a.SDP, nil
}

func (c *client) got(stream string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.received[stream]
}

func (c *client) messages() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.msgs...)
}

func (c *client) send(msg string) error {
	c.mu.Lock()
	dc := c.dc
	c.mu.Unlock()
	return dc.SendText(msg)
}

// pump sends VP8-typed packets every 5 ms until the test ends.
func (c *client) pump(t *testing.T) {
	everyUntilEnd(t, 5*time.Millisecond, func(i int) {
		_ = c.video.WriteRTP(&rtp.Packet{
			Header:  rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(i), Timestamp: uint32(i) * 3000, SSRC: 1},
			Payload: []byte{0x10, byte(i >> 8), byte(i)},
		})
	})
}

// everyUntilEnd calls fn(0), fn(1), .. from one goroutine, each after a
// pause of d, until the test ends; the test's cleanup waits for it.
func everyUntilEnd(t *testing.T, d time.Duration, fn func(i int)) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(d):
			}
			fn(i)
		}
	}()
	t.Cleanup(func() { close(stop); wg.Wait() })
}

// Three SFU nodes: a publisher on A, subscribers on B and C. Media and "#"
// messages cross; the relay outlives B's last client.
func TestSFUThreeNodes(t *testing.T) {
	testutil.CheckLeaks(t)
	if testing.Short() {
		t.Skip("WebRTC clients")
	}
	a, b, c := startSFUNode(t, "a"), startSFUNode(t, "b"), startSFUNode(t, "c")
	for _, x := range []*sfuNode{a, b, c} {
		for _, y := range []*sfuNode{a, b, c} {
			if x != y {
				if err := x.SetPeer(y.name, y.Addr()); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	pub := joinSFU(t, a, "pub", sfu.RoleSendonly)
	subB := joinSFU(t, b, "subB", sfu.RoleRecvonly)
	subC := joinSFU(t, c, "subC", sfu.RoleRecvonly)
	// The cluster's wiring does this when the channel gets clients on a
	// second node.
	for _, p := range []*sfuNode{b, c} {
		if err := a.OpenChannel("room", p.name); err != nil {
			t.Fatal(err)
		}
	}
	pub.pump(t)
	for _, s := range []*client{subB, subC} {
		testutil.Eventually(t, func() bool { return s.got("pub") > 20 }, 15*time.Second, "subscriber receives the publisher's video via the relay")
	}

	// Messages both ways: B's subscriber to A's publisher, and A's to both.
	if err := subB.send("from B"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, func() bool { return len(pub.messages()) == 1 && pub.messages()[0] == "from B" }, 10*time.Second, "A's publisher got B's message (%v)", pub.messages())
	if err := pub.send("from A"); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*client{subB, subC} {
		testutil.Eventually(t, func() bool { m := s.messages(); return len(m) == 1 && m[0] == "from A" }, 10*time.Second, "subscriber got A's message (%v)", s.messages())
	}

	// B's last client leaves; the relay of the channel continues and a new
	// client on B gets the stream without anyone reopening it.
	_ = subB.conn.Close()
	_ = subB.pc.Close()
	time.Sleep(300 * time.Millisecond)
	if ch := b.Stats().Channels; len(ch) != 1 || ch[0].Channel != "room" {
		t.Fatalf("B's relay of room ended with its last client: %+v", ch)
	}
	subB2 := joinSFU(t, b, "subB2", sfu.RoleRecvonly)
	testutil.Eventually(t, func() bool { return subB2.got("pub") > 20 }, 15*time.Second, "new subscriber on B receives")
	if st := a.link(b); st.PacketsOut == 0 || st.AuthFailures != 0 {
		t.Errorf("A→B link stats %+v", st)
	}
}

func (n *sfuNode) link(peer *sfuNode) LinkStats {
	for _, l := range n.Stats().Links {
		if l.Peer == peer.name {
			return l
		}
	}
	return LinkStats{}
}
