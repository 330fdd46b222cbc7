package sfu_test

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/internal/testutil/pionapi"
	"github.com/shoal-sfu/shoal/sfu"
)

const wait = 10 * time.Second

func TestFanOutAndLeave(t *testing.T) {
	testutil.CheckLeaks(t)
	s := newSFU(t, nil)
	pub := join(t, s, clientOpts{channel: "room", id: "PUB", role: sfu.RoleSendrecv, audio: true, video: true})
	if m := pub.conn.Offer().Mids; m.Audio != "0" || m.Video != "1" {
		t.Fatalf("upstream mids = %+v, want audio 0, video 1", m)
	}
	subs := make([]*testClient, 3)
	for i := range subs {
		subs[i] = join(t, s, clientOpts{channel: "room", id: fmt.Sprintf("SUB%d", i), role: sfu.RoleRecvonly})
	}
	if got := s.Counts(); got.Total != 4 || got.Channels["room"] != 4 {
		t.Fatalf("counts = %+v", got)
	}
	// Keep writing until every subscriber has a run of packets.
	key := "PUB/PUB-video"
	pub.writeVideoUntil(t, 7, 10, func() bool {
		for _, c := range subs {
			if len(c.payloads(key)) < 20 {
				return false
			}
		}
		return true
	}, "subscribers receive the publisher's video")
	for _, c := range subs {
		ps := c.payloads(key)
		for i, p := range ps {
			if len(p) != 3 || p[0] != 7 {
				t.Fatalf("%s: payload %d = %x, want tag 7", c.conn.ID(), i, p)
			}
			if i > 0 {
				prev := int(ps[i-1][1])<<8 | int(ps[i-1][2])
				if cur := int(p[1])<<8 | int(p[2]); cur <= prev {
					t.Fatalf("%s: payload order %d after %d", c.conn.ID(), cur, prev)
				}
			}
		}
		c.mu.Lock()
		stream := c.streams["PUB-video"]
		c.mu.Unlock()
		if stream != "PUB" {
			t.Fatalf("msid stream = %q, want the publisher's connection id", stream)
		}
	}
	if n := len(pub.payloads(key)); n != 0 {
		t.Fatalf("publisher got %d of its own packets", n)
	}

	// The publisher leaves: every subscriber gets a re-offer with its
	// m-lines inactive, mids unchanged.
	mid := midOf(subs[0].lastOffer(), "PUB")
	if mid == "" {
		t.Fatal("no m-line for PUB in the subscriber's offer")
	}
	if err := pub.conn.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range subs {
		c := c
		testutil.Eventually(t, func() bool { return directionOf(c.lastReoffer(), mid) == "inactive" }, wait, "%s: m-line %s inactive", c.conn.ID(), mid)
	}
	if got := s.Counts(); got.Total != 3 {
		t.Fatalf("counts after leave = %+v", got)
	}
	// Once the inactive m-line is answered, a second publisher's video
	// reuses it: same mid, no new m-line.
	for _, c := range subs {
		testutil.Eventually(t, c.settled, wait, "%s: re-answer taken", c.conn.ID())
	}
	before := countMlines(subs[0].lastReoffer())
	pub2 := join(t, s, clientOpts{channel: "room", id: "PUB2", role: sfu.RoleSendonly, audio: true, video: true})
	pub2.pump(t, 9)
	testutil.Eventually(t, func() bool { return midOf(subs[0].lastReoffer(), "PUB2") != "" }, wait, "re-offer with PUB2")
	if got := midOf(subs[0].lastReoffer(), "PUB2"); got != mid {
		t.Fatalf("PUB2's video is on mid %q, want PUB's inactive mid %q reused", got, mid)
	}
	if n := countMlines(subs[0].lastReoffer()); n != before {
		t.Fatalf("%d m-lines with PUB2's video, want %d as before", n, before)
	}
	testutil.Eventually(t, func() bool { return len(subs[0].payloads("PUB2/PUB2-video")) >= 10 }, wait, "video of PUB2")
}

func TestKeyframeOnLateSubscriber(t *testing.T) {
	testutil.CheckLeaks(t)
	s := newSFU(t, nil)
	pub := join(t, s, clientOpts{channel: "kf", id: "PUB", role: sfu.RoleSendonly, video: true})
	pub.pump(t, 2)
	s1 := join(t, s, clientOpts{channel: "kf", id: "S1", role: sfu.RoleRecvonly})
	testutil.Eventually(t, func() bool { return len(s1.payloads("PUB/PUB-video")) > 0 }, wait, "first subscriber receives")
	// Let the first subscriber's requests settle.
	time.Sleep(300 * time.Millisecond)
	before := pub.plis.Load()
	join(t, s, clientOpts{channel: "kf", id: "S2", role: sfu.RoleRecvonly})
	testutil.Eventually(t, func() bool { return pub.plis.Load() > before }, wait, "keyframe request reaches the publisher")
}

func TestKeyframeRequestsCoalesced(t *testing.T) {
	testutil.CheckLeaks(t)
	const interval = time.Second
	s := newSFU(t, func(c *sfu.Config) { c.KeyframeInterval = interval })
	ch := channel(t, s, "coalesce")
	var (
		mu    sync.Mutex
		calls []time.Time
	)
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(calls)
	}
	w := addRemoteVideo(t, ch, "r-video", "REMOTE", sfu.KeyframeRequesterFunc(func() {
		mu.Lock()
		calls = append(calls, time.Now())
		mu.Unlock()
	}))
	var taps atomic.Int64
	stop, err := ch.Observe(sfu.Observer{TrackAdded: func(sfu.TrackInfo, *sfu.TrackTap) { taps.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	sub := join(t, s, clientOpts{channel: "coalesce", id: "SUB", role: sfu.RoleRecvonly})
	ssrc := remoteSSRC(t, w, sub, "REMOTE/r-video")
	testutil.Eventually(t, func() bool { return count() >= 1 }, wait, "the new subscriber's request passes")
	// Let the interval after the last request run out.
	mu.Lock()
	last := calls[len(calls)-1]
	mu.Unlock()
	time.Sleep(time.Until(last.Add(interval + 100*time.Millisecond)))
	base := count()
	// A burst of PLIs: the first passes at once, the rest make one more
	// request at the end of the interval, and nothing else.
	for range 20 {
		if err := sub.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}}); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, func() bool { return count() >= base+2 }, wait, "the burst's requests reach the relay")
	time.Sleep(interval + 300*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if got := len(calls) - base; got != 2 {
		t.Fatalf("a burst of 20 PLIs gave %d keyframe requests, want 2 (one now, one coalesced)", got)
	}
	if gap := calls[base+1].Sub(calls[base]); gap < interval-50*time.Millisecond {
		t.Fatalf("coalesced request %v after the first, want >= %v", gap, interval)
	}
	if taps.Load() != 0 {
		t.Fatalf("remote track reported to observers")
	}
}

func TestRemoteTrack(t *testing.T) {
	testutil.CheckLeaks(t)
	s := newSFU(t, nil)
	sub := join(t, s, clientOpts{channel: "relay", id: "SUB", role: sfu.RoleRecvonly})
	ch := channel(t, s, "relay")
	var kf atomic.Int64
	info := sfu.TrackInfo{ID: "far-video", StreamID: "FAR", Kind: webrtc.RTPCodecTypeVideo, Codec: vp8}
	w, err := ch.AddRemoteTrack(info, sfu.KeyframeRequesterFunc(func() { kf.Add(1) }))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.AddRemoteTrack(info, nil); err == nil {
		t.Fatal("duplicate track id accepted")
	}
	if _, err := ch.AddRemoteTrack(sfu.TrackInfo{ID: "x", StreamID: "FAR", Kind: webrtc.RTPCodecTypeAudio, Codec: info.Codec}, nil); !errors.Is(err, sfu.ErrInvalidTrack) {
		t.Fatalf("video codec on an audio track: err = %v", err)
	}
	if err := w.WriteRTP([]byte{1, 2}); !errors.Is(err, sfu.ErrInvalidRTP) {
		t.Fatalf("short packet: err = %v", err)
	}
	seq := uint16(0)
	testutil.Eventually(t, func() bool {
		for range 10 {
			p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 100, SequenceNumber: seq, SSRC: 42, Extension: true}, Payload: []byte{0xAB, byte(seq)}}
			_ = p.SetExtension(3, []byte{1, 2})
			b, _ := p.Marshal()
			if err := w.WriteRTP(b); err != nil {
				t.Fatal(err)
			}
			seq++
		}
		return len(sub.payloads("FAR/far-video")) >= 10
	}, wait, "remote track reaches the subscriber")
	if p := sub.payloads("FAR/far-video")[0]; p[0] != 0xAB {
		t.Fatalf("payload %x", p)
	}
	testutil.Eventually(t, func() bool { return kf.Load() > 0 }, wait, "subscriber's keyframe request reaches the relay")
	mid := midOf(sub.lastOffer(), "FAR")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, func() bool { return directionOf(sub.lastReoffer(), mid) == "inactive" }, wait, "remote track removed by re-offer")
	if err := w.WriteRTP(make([]byte, 12)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
}

func TestObserverSeesLocalTracksAndEvents(t *testing.T) {
	testutil.CheckLeaks(t)
	s := newSFU(t, nil)
	ch := channel(t, s, "obs")
	var (
		mu      sync.Mutex
		added   []string
		removed []string
		events  []string
		pkts    atomic.Int64
	)
	stop, err := ch.Observe(sfu.Observer{
		TrackAdded: func(info sfu.TrackInfo, tap *sfu.TrackTap) {
			mu.Lock()
			added = append(added, info.ID)
			mu.Unlock()
			tap.SetSink(func(pkt []byte) { pkts.Add(1) })
			tap.RequestKeyframe()
		},
		TrackRemoved: func(info sfu.TrackInfo) {
			mu.Lock()
			removed = append(removed, info.ID)
			mu.Unlock()
		},
		ConnectionEvent: func(ev sfu.ConnectionEvent) {
			mu.Lock()
			events = append(events, fmt.Sprintf("%s %s %d", ev.Type, ev.ConnectionID, ev.Counts.Connections))
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	pub := join(t, s, clientOpts{channel: "obs", id: "PUB", role: sfu.RoleSendonly, video: true})
	pub.writeVideoUntil(t, 1, 5, func() bool { return pkts.Load() >= 5 }, "tap gets the local track's packets")
	_ = pub.conn.Close()
	testutil.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(removed) == 1 && len(events) == 2
	}, wait, "track removed and connection events")
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(added) != "[PUB-video]" || fmt.Sprint(removed) != "[PUB-video]" {
		t.Fatalf("added %v removed %v", added, removed)
	}
	if want := "[connection.created PUB 1 connection.destroyed PUB 0]"; fmt.Sprint(events) != want {
		t.Fatalf("events %v, want %v", events, want)
	}
}

func TestMessaging(t *testing.T) {
	testutil.CheckLeaks(t)
	s := newSFU(t, nil)
	ch := channel(t, s, "msg")
	var (
		mu       sync.Mutex
		observed []string
	)
	stop, err := ch.Observe(sfu.Observer{MessageReceived: func(m sfu.Message) {
		mu.Lock()
		observed = append(observed, m.SenderID+":"+string(m.Data))
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	ids := []string{"A", "B", "C"}
	cs := map[string]*testClient{}
	for _, id := range ids {
		cs[id] = join(t, s, clientOpts{channel: "msg", id: id, role: sfu.RoleSendrecv, labels: []string{"#chat"}})
	}
	for _, id := range ids {
		c := cs[id]
		testutil.Eventually(t, func() bool {
			return c.isOpen("#chat") && c.isOpen("signaling") && c.isOpen("notify") && c.isOpen("push")
		}, wait, "%s data channels open", id)
	}
	const n = 20
	for i := range n {
		for _, id := range ids {
			if err := cs[id].dc("#chat").Send([]byte(fmt.Sprintf("%s%02d", id, i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := ch.InjectMessage("#chat", "FAR", []byte("FAR00")); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		c := cs[id]
		testutil.Eventually(t, func() bool { return len(c.messages("#chat")) == 2*n+1 }, wait, "%s gets every other message", id)
		per := map[byte][]string{}
		for _, m := range c.messages("#chat") {
			per[m[0]] = append(per[m[0]], string(m))
		}
		if len(per[id[0]]) != 0 {
			t.Fatalf("%s got its own messages", id)
		}
		for _, other := range ids {
			if other == id {
				continue
			}
			for i, m := range per[other[0]] {
				if want := fmt.Sprintf("%s%02d", other, i); m != want {
					t.Fatalf("%s: message %d from %s = %q, want %q (order)", id, i, other, m, want)
				}
			}
		}
	}
	testutil.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(observed) == 3*n
	}, wait, "observer sees local messages only")
	mu.Lock()
	defer mu.Unlock()
	for _, o := range observed {
		if strings.HasPrefix(o, "FAR") || o[:2] != o[:1]+":" {
			t.Fatalf("observed %q", o)
		}
	}
	if err := ch.InjectMessage("chat", "FAR", nil); err == nil {
		t.Fatal("label without # accepted")
	}
}

func TestSignalingDataChannels(t *testing.T) {
	testutil.CheckLeaks(t)
	s := newSFU(t, nil)
	c := join(t, s, clientOpts{channel: "sig", id: "A", role: sfu.RoleRecvonly})
	labels := []string{}
	for _, d := range c.conn.Offer().DataChannels {
		labels = append(labels, d.Label)
	}
	if fmt.Sprint(labels) != "[signaling notify push]" {
		t.Fatalf("offer data channels %v", labels)
	}
	testutil.Eventually(t, func() bool { return c.isOpen("notify") }, wait, "notify open")
	if err := c.conn.SendText("notify", `{"type":"notify"}`); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, func() bool { return len(c.messages("notify")) == 1 }, wait, "notify message")
	if err := c.conn.Send("nope", nil); !errors.Is(err, sfu.ErrUnknownDataChannel) {
		t.Fatalf("unknown label: %v", err)
	}
	c.mu.Lock()
	evs := append([]sfu.ConnectionEvent(nil), c.events...)
	c.mu.Unlock()
	if len(evs) == 0 || evs[0].Type != sfu.ConnectionCreated || evs[0].ConnectionID != "A" {
		t.Fatalf("events %+v", evs)
	}
}

func TestSignalingMessagesFromClient(t *testing.T) {
	testutil.CheckLeaks(t)
	s := newSFU(t, nil)
	got := make(chan string, 4)
	pc := barePeer(t)
	conn, err := s.Join(testutil.Context(t, wait), sfu.JoinRequest{ChannelID: "sig", ConnectionID: "A", Role: sfu.RoleRecvonly, Hooks: sfu.ConnectionHooks{
		DataChannelMessage: func(label string, data []byte, isText bool) { got <- fmt.Sprintf("%s %s %v", label, data, isText) },
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sendOnOpen(pc, sfu.LabelSignaling, `{"type":"disconnect"}`)
	if err := conn.SetAnswer(answerOffer(t, pc, conn.Offer().SDP)); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m != `signaling {"type":"disconnect"} true` {
			t.Fatalf("got %q", m)
		}
	case <-time.After(wait):
		t.Fatal("no signaling message")
	}
}

func TestBadAnswers(t *testing.T) {
	testutil.CheckLeaks(t)
	s := newSFU(t, nil)
	pub := join(t, s, clientOpts{channel: "bad", id: "PUB", role: sfu.RoleSendonly, video: true})
	good := join(t, s, clientOpts{channel: "bad", id: "GOOD", role: sfu.RoleRecvonly})

	pc := barePeer(t)
	bad, err := s.Join(testutil.Context(t, wait), sfu.JoinRequest{ChannelID: "bad", ConnectionID: "BAD", Role: sfu.RoleRecvonly})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if err := bad.SetAnswer("this is not SDP"); err == nil || !strings.Contains(err.Error(), "bad SDP") {
		t.Fatalf("garbage answer: err = %v", err)
	}
	// An answer for another offer (the good client's) has other m-lines.
	other := strings.Replace(good.pc.LocalDescription().SDP, "a=mid:0", "a=mid:9", 1)
	if err := bad.SetAnswer(other); !errors.Is(err, sfu.ErrAnswerMismatch) {
		t.Fatalf("mismatching answer: err = %v", err)
	}
	// The offer is still outstanding: a correct answer is taken.
	answer := answerOffer(t, pc, bad.Offer().SDP)
	if err := bad.SetAnswer(answer); err != nil {
		t.Fatalf("correct answer after bad ones: %v", err)
	}
	if err := bad.SetAnswer(answer); !errors.Is(err, sfu.ErrNoPendingOffer) {
		t.Fatalf("second answer: err = %v", err)
	}
	// The others are unaffected.
	pub.writeVideoUntil(t, 3, 10, func() bool { return len(good.payloads("PUB/PUB-video")) >= 10 }, "the good subscriber still receives")
}

func TestJoinValidationAndCapacity(t *testing.T) {
	testutil.CheckLeaks(t)
	s := newSFU(t, func(c *sfu.Config) { c.MaxConnections = 1 })
	ctx := testutil.Context(t, wait)
	cases := []sfu.JoinRequest{
		{ChannelID: "", Role: sfu.RoleRecvonly},
		{ChannelID: strings.Repeat("x", 256), Role: sfu.RoleRecvonly},
		{ChannelID: "c", Role: "both"},
		{ChannelID: "c", Role: sfu.RoleRecvonly, DataChannels: []sfu.DataChannelSpec{{Label: "chat"}}},
		{ChannelID: "c", Role: sfu.RoleRecvonly, DataChannels: []sfu.DataChannelSpec{{Label: "#a"}, {Label: "#a"}}},
	}
	for _, req := range cases {
		if _, err := s.Join(ctx, req); !errors.Is(err, sfu.ErrInvalidRequest) {
			t.Errorf("Join(%+v) err = %v, want ErrInvalidRequest", req.ChannelID, err)
		}
	}
	a, err := s.Join(ctx, sfu.JoinRequest{ChannelID: "c", ConnectionID: "A", Role: sfu.RoleRecvonly})
	if err != nil {
		t.Fatal(err)
	}
	var ce *sfu.CapacityError
	if _, err := s.Join(ctx, sfu.JoinRequest{ChannelID: "c", Role: sfu.RoleRecvonly}); !errors.As(err, &ce) || ce.Max != 1 {
		t.Fatalf("over capacity: err = %v", err)
	}
	if !strings.Contains(a.Offer().SDP, "m=application") {
		t.Fatal("recvonly offer in an empty channel has no m=application")
	}
	s.DisconnectAll()
	<-a.Done()
	if !errors.Is(a.Err(), sfu.ErrDisconnected) {
		t.Fatalf("Err = %v", a.Err())
	}
	if got := s.Counts(); got.Total != 0 || len(got.Channels) != 0 {
		t.Fatalf("counts after DisconnectAll: %+v", got)
	}
	b, err := s.Join(ctx, sfu.JoinRequest{ChannelID: "c", ConnectionID: "B", Role: sfu.RoleRecvonly})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CloseChannel("c"); err != nil {
		t.Fatal(err)
	}
	<-b.Done()
	if !errors.Is(b.Err(), sfu.ErrChannelClosed) {
		t.Fatalf("Err = %v", b.Err())
	}
	if err := b.SetAnswer("x"); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
	_ = s.Close()
	_ = s.Close()
	if _, err := s.Join(ctx, sfu.JoinRequest{ChannelID: "c", Role: sfu.RoleRecvonly}); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Join after Close: %v", err)
	}
}

func TestUDPMux(t *testing.T) {
	testutil.CheckLeaks(t)
	ip := testutil.LoopbackIP(t)
	port := testutil.FreePort(t, ip)
	s := newSFU(t, func(c *sfu.Config) {
		c.Network.UDPPort = port
		c.Network.ListenIP = ip
		c.Network.IPFilter = nil
	})
	pub := join(t, s, clientOpts{channel: "mux", id: "PUB", role: sfu.RoleSendonly, video: true})
	sub := join(t, s, clientOpts{channel: "mux", id: "SUB", role: sfu.RoleRecvonly})
	want := fmt.Sprintf(" %d typ host", port)
	if !strings.Contains(pub.conn.Offer().SDP, want) || !strings.Contains(sub.conn.Offer().SDP, want) {
		t.Fatalf("offers do not use the mux port %d:\n%s", port, pub.conn.Offer().SDP)
	}
	pub.writeVideoUntil(t, 5, 10, func() bool { return len(sub.payloads("PUB/PUB-video")) >= 10 }, "media through the mux")
}

func TestNewValidates(t *testing.T) {
	bad := []sfu.Config{
		{MaxConnections: -1},
		{KeyframeInterval: -time.Second},
		{AnswerTimeout: -time.Second},
		{Network: sfu.NetworkConfig{UDPPort: 70000}},
		{Network: sfu.NetworkConfig{PortMin: 10}},
		{Network: sfu.NetworkConfig{PortMin: 20, PortMax: 10}},
		{Network: sfu.NetworkConfig{UDPPort: 5000, PortMin: 10, PortMax: 20}},
		{Network: sfu.NetworkConfig{NAT1To1IPs: []string{"not-an-ip"}}},
		{Messages: sfu.MessageConfig{QueueLen: -1}},
		{Messages: sfu.MessageConfig{BufferedMax: -1}},
	}
	for _, cfg := range bad {
		if _, err := sfu.New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
	if _, err := sfu.New(sfu.Config{}); err != nil {
		t.Fatalf("zero Config: %v", err)
	}
}

func TestNAT1To1(t *testing.T) {
	testutil.CheckLeaks(t)
	s := newSFU(t, func(c *sfu.Config) { c.Network.NAT1To1IPs = []string{"203.0.113.10"} })
	conn, err := s.Join(testutil.Context(t, wait), sfu.JoinRequest{ChannelID: "nat", Role: sfu.RoleRecvonly})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if !strings.Contains(conn.Offer().SDP, "203.0.113.10") {
		t.Fatalf("offer lacks the NAT 1:1 address:\n%s", conn.Offer().SDP)
	}
}

func TestClientClosesPeerConnection(t *testing.T) {
	testutil.CheckLeaks(t)
	s := newSFU(t, nil)
	pub := join(t, s, clientOpts{channel: "bye", id: "PUB", role: sfu.RoleSendonly, video: true})
	pub.pump(t, 1)
	sub := join(t, s, clientOpts{channel: "bye", id: "SUB", role: sfu.RoleRecvonly})
	testutil.Eventually(t, func() bool { return len(sub.payloads("PUB/PUB-video")) > 0 }, wait, "subscriber receives")
	// PUB's m-line came in sub's initial offer or in a re-offer, depending
	// on whether PUB's track was up when sub joined.
	mid := midOf(sub.lastOffer(), "PUB")
	if mid == "" {
		t.Fatal("no m-line for PUB in the subscriber's offers")
	}
	_ = pub.pc.Close()
	select {
	case <-pub.conn.Done():
	case <-time.After(wait):
		t.Fatal("server connection not closed after the client closed")
	}
	if !errors.Is(pub.conn.Err(), sfu.ErrPeerClosed) {
		t.Fatalf("Err = %v", pub.conn.Err())
	}
	testutil.Eventually(t, func() bool { return directionOf(sub.lastReoffer(), mid) == "inactive" }, wait, "publisher's m-line inactive")
	if got := s.Counts(); got.Total != 1 {
		t.Fatalf("counts %+v", got)
	}
}

func TestMessagingHeaderAndDirection(t *testing.T) {
	testutil.CheckLeaks(t)
	s := newSFU(t, nil)
	a := join(t, s, clientOpts{channel: "hdr", id: "AAAA", role: sfu.RoleRecvonly, labels: []string{"#x+hdr", "#y+recvonly"}})
	b := join(t, s, clientOpts{channel: "hdr", id: "BBBB", role: sfu.RoleRecvonly, labels: []string{"#x+hdr", "#y+recvonly"}})
	for _, c := range []*testClient{a, b} {
		testutil.Eventually(t, func() bool { return c.isOpen("#x+hdr") && c.isOpen("#y+recvonly") }, wait, "channels open")
	}
	if err := b.dc("#x+hdr").Send([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	// b is recvonly on #y: what it sends there goes nowhere.
	if err := b.dc("#y+recvonly").Send([]byte("dropped")); err != nil {
		t.Fatal(err)
	}
	ch, _ := s.Channel("hdr")
	if err := ch.InjectMessage("#y+recvonly", "FAR", []byte("in")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, func() bool { return len(a.messages("#x+hdr")) == 1 && len(a.messages("#y+recvonly")) == 1 }, wait, "messages")
	if got := string(a.messages("#x+hdr")[0]); got != "BBBBhi" {
		t.Fatalf("with header: %q", got)
	}
	if got := string(a.messages("#y+recvonly")[0]); got != "in" {
		t.Fatalf("recvonly channel got %q", got)
	}
	// A message b sends after "dropped" on the same association has made
	// its way to a: "dropped" had every chance to be forwarded too.
	if err := b.dc("#x+hdr").Send([]byte("after")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, func() bool { return len(a.messages("#x+hdr")) == 2 }, wait, "the message after the dropped one")
	time.Sleep(50 * time.Millisecond)
	if n := len(a.messages("#y+recvonly")); n != 1 {
		t.Fatalf("a message sent on a recvonly channel was forwarded (%d messages)", n)
	}
}

func TestICELite(t *testing.T) {
	testutil.CheckLeaks(t)
	s := newSFU(t, func(c *sfu.Config) { c.Network.Lite = true })
	pub := join(t, s, clientOpts{channel: "lite", id: "PUB", role: sfu.RoleSendonly, video: true})
	if !strings.Contains(pub.conn.Offer().SDP, "a=ice-lite") {
		t.Fatal("offer is not ICE-lite")
	}
	pub.pump(t, 4)
	sub := join(t, s, clientOpts{channel: "lite", id: "SUB", role: sfu.RoleRecvonly})
	testutil.Eventually(t, func() bool { return len(sub.payloads("PUB/PUB-video")) > 0 }, wait, "media with an ICE-lite server")
}

func TestPortRange(t *testing.T) {
	testutil.CheckLeaks(t)
	s := newSFU(t, func(c *sfu.Config) { c.Network.PortMin, c.Network.PortMax = 41000, 41099 })
	conn, err := s.Join(testutil.Context(t, wait), sfu.JoinRequest{ChannelID: "ports", Role: sfu.RoleRecvonly})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	n := 0
	for _, l := range strings.Split(conn.Offer().SDP, "\r\n") {
		if !strings.HasPrefix(l, "a=candidate:") {
			continue
		}
		var port int
		f := strings.Fields(l)
		fmt.Sscan(f[5], &port)
		if port < 41000 || port > 41099 {
			t.Fatalf("candidate port %d outside 41000-41099: %s", port, l)
		}
		n++
	}
	if n == 0 {
		t.Fatal("no candidates")
	}
}

func TestNACKRetransmission(t *testing.T) {
	testutil.CheckLeaks(t)
	s := newSFU(t, nil)
	// Without replay protection the client keeps the retransmitted copy of a
	// packet it already has, which shows the retransmission.
	api := pionapi.Local(func(se *webrtc.SettingEngine) { se.DisableSRTPReplayProtection(true) })
	sub := join(t, s, clientOpts{channel: "nack", id: "SUB", role: sfu.RoleRecvonly, api: api})
	ch := channel(t, s, "nack")
	w := addRemoteVideo(t, ch, "v", "FAR", nil)
	seq := uint16(0)
	send := func() {
		p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: uint32(seq) * 3000, SSRC: 9}, Payload: []byte{0xEE, byte(seq >> 8), byte(seq)}}
		b, _ := p.Marshal()
		_ = w.WriteRTP(b)
		seq++
	}
	testutil.Eventually(t, func() bool {
		send()
		return len(sub.payloads("FAR/v")) >= 5
	}, wait, "subscriber receives")
	got := sub.payloads("FAR/v")
	last := got[len(got)-1]
	lost := uint16(last[1])<<8 | uint16(last[2])
	sub.mu.Lock()
	ssrc := sub.ssrcs["FAR/v"]
	sub.mu.Unlock()
	count := func() int {
		n := 0
		for _, p := range sub.payloads("FAR/v") {
			if uint16(p[1])<<8|uint16(p[2]) == lost {
				n++
			}
		}
		return n
	}
	// The subscriber says it lost a packet it has: the SFU sends it again.
	// Media keeps flowing: pion's client hands a packet that came as RTX
	// to the reader only along with the next one of the track.
	testutil.Eventually(t, func() bool {
		send()
		_ = sub.pc.WriteRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{MediaSSRC: ssrc, Nacks: []rtcp.NackPair{{PacketID: lost}}}})
		return count() >= 2
	}, wait, "packet %d retransmitted after a NACK", lost)
}
