package sfu_test

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/internal/testutil/pionapi"
	"github.com/shoal-sfu/shoal/sfu"
)

// mSection is what the SDK cares about in one media section of an offer.
type mSection struct {
	kind, mid, dir, msid string
	candidates           int
	endOfCandidates      bool
}

func parseOffer(t *testing.T, s string) (secs []mSection, bundle []string) {
	t.Helper()
	var d sdp.SessionDescription
	if err := d.UnmarshalString(s); err != nil {
		t.Fatalf("offer does not parse: %v\n%s", err, s)
	}
	if g, ok := d.Attribute("group"); ok {
		bundle = strings.Fields(strings.TrimPrefix(g, "BUNDLE"))
	}
	for _, m := range d.MediaDescriptions {
		sec := mSection{kind: m.MediaName.Media}
		for _, a := range m.Attributes {
			switch a.Key {
			case "mid":
				sec.mid = a.Value
			case "msid":
				sec.msid = a.Value
			case "candidate":
				sec.candidates++
			case "end-of-candidates":
				sec.endOfCandidates = true
			case "sendrecv", "sendonly", "recvonly", "inactive":
				sec.dir = a.Key
			}
		}
		secs = append(secs, sec)
	}
	return secs, bundle
}

// checkOfferLayout checks the offer layout the signaling protocol relies on
// (docs/signaling.md): every candidate in the SDP (gathering complete), the
// upstream m-lines first of their kind and named by mids, forwarded m-lines
// sendonly with the publisher's id as msid stream.
func checkOfferLayout(t *testing.T, name, offer string, mids sfu.Mids, publishers map[string]int) {
	t.Helper()
	secs, bundle := parseOffer(t, offer)
	if len(secs) == 0 || secs[0].candidates == 0 || !secs[0].endOfCandidates {
		t.Fatalf("%s: the first m-section (the BUNDLE transport) lacks candidates or a=end-of-candidates:\n%s", name, offer)
	}
	var allMids []string
	firstOf := map[string]mSection{}
	forwarded := map[string]int{}
	hasApp := false
	for _, sec := range secs {
		allMids = append(allMids, sec.mid)
		if sec.kind == "application" {
			hasApp = true
			continue
		}
		if _, seen := firstOf[sec.kind]; !seen {
			firstOf[sec.kind] = sec
		}
		if sec.dir == "sendonly" {
			stream, track, _ := strings.Cut(sec.msid, " ")
			if stream == "" || !strings.HasPrefix(track, stream+"-") {
				t.Fatalf("%s: forwarded m-line %s has a=msid:%q; want the publisher's connection id as stream", name, sec.mid, sec.msid)
			}
			forwarded[stream]++
		}
	}
	if !hasApp {
		t.Fatalf("%s: no m=application", name)
	}
	if !slices.Equal(bundle, allMids) {
		t.Fatalf("%s: BUNDLE %v, m-section mids %v", name, bundle, allMids)
	}
	for kind, mid := range map[string]string{"audio": mids.Audio, "video": mids.Video} {
		if mid == "" {
			continue
		}
		if f := firstOf[kind]; f.mid != mid || f.dir != "recvonly" {
			t.Fatalf("%s: first %s m-section is mid %q (%s), want the upstream mid %q recvonly", name, kind, f.mid, f.dir, mid)
		}
	}
	for p, n := range publishers {
		if forwarded[p] != n {
			t.Fatalf("%s: %d forwarded m-lines with msid stream %s, want %d (all: %v)", name, forwarded[p], p, n, forwarded)
		}
	}
}

func TestOfferLayout(t *testing.T) {
	testutil.CheckLeaks(t)
	s := newSFU(t, nil)
	ch := channel(t, s, "layout")
	var tracks atomic.Int64
	stop, err := ch.Observe(sfu.Observer{TrackAdded: func(sfu.TrackInfo, *sfu.TrackTap) { tracks.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	a := join(t, s, clientOpts{channel: "layout", id: "AAAA", role: sfu.RoleSendrecv, audio: true, video: true})
	a.pump(t, 1)
	a.pumpAudio(t)
	testutil.Eventually(t, func() bool { return tracks.Load() == 2 }, wait, "A's audio and video published")

	// B joins a channel where A publishes: B's upstream m-lines still come
	// first, A's follow.
	b := join(t, s, clientOpts{channel: "layout", id: "BBBB", role: sfu.RoleSendrecv, audio: true, video: true, labels: []string{"#chat"}})
	offer := b.conn.Offer()
	if offer.Mids != (sfu.Mids{Audio: "0", Video: "1"}) {
		t.Fatalf("B's mids %+v", offer.Mids)
	}
	checkOfferLayout(t, "B's offer", offer.SDP, offer.Mids, map[string]int{"AAAA": 2})
	var dcs []string
	for _, d := range offer.DataChannels {
		dcs = append(dcs, fmt.Sprintf("%s/%s/%v", d.Label, d.Direction, d.Compress))
	}
	if want := "[signaling/sendrecv/false notify/sendrecv/false push/sendrecv/false #chat/sendrecv/false]"; fmt.Sprint(dcs) != want {
		t.Fatalf("offer data channels %v, want %v", dcs, want)
	}

	// B publishes: A's re-offer adds B's m-lines after A's own, mids kept,
	// candidates still inside.
	b.pump(t, 2)
	b.pumpAudio(t)
	testutil.Eventually(t, func() bool {
		secs, _ := parseOffer(t, a.lastReoffer())
		n := 0
		for _, sec := range secs {
			if strings.HasPrefix(sec.msid, "BBBB ") {
				n++
			}
		}
		return n == 2
	}, wait, "A's re-offer carries B's audio and video")
	checkOfferLayout(t, "A's re-offer", a.lastReoffer(), a.conn.Offer().Mids, map[string]int{"BBBB": 2})
	testutil.Eventually(t, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.streams["AAAA-audio"] == "AAAA" && b.streams["AAAA-video"] == "AAAA"
	}, wait, "B's tracks from A have A's connection id as stream id")
}

// A client that never answers a re-offer is closed after AnswerTimeout
// with ErrAnswerTimeout; the others of its channel go on.
func TestAnswerTimeout(t *testing.T) {
	testutil.CheckLeaks(t)
	// Long enough for the answering client on a loaded machine.
	const timeout = 3 * time.Second
	s := newSFU(t, func(c *sfu.Config) { c.AnswerTimeout = timeout })
	var reofferedAt atomic.Int64
	mute := join(t, s, clientOpts{channel: "slow", id: "MUTE", role: sfu.RoleRecvonly, onReoffer: func(*testClient, string) {
		reofferedAt.CompareAndSwap(0, time.Now().UnixNano())
	}})
	good := join(t, s, clientOpts{channel: "slow", id: "GOOD", role: sfu.RoleRecvonly})
	// A client that never answers its initial offer, timed meanwhile.
	start := time.Now()
	unanswered, err := s.Join(testutil.Context(t, wait), sfu.JoinRequest{ChannelID: "slow", Role: sfu.RoleRecvonly})
	if err != nil {
		t.Fatal(err)
	}
	ch := channel(t, s, "slow")
	w := addRemoteVideo(t, ch, "far-video", "FAR", nil)
	select {
	case <-mute.conn.Done():
	case <-time.After(timeout + wait):
		t.Fatal("a connection that never re-answers stays open")
	}
	closedAt := time.Now()
	if err := mute.conn.Err(); !errors.Is(err, sfu.ErrAnswerTimeout) {
		t.Fatalf("Err = %v, want ErrAnswerTimeout", err)
	}
	if at := reofferedAt.Load(); at == 0 || closedAt.Sub(time.Unix(0, at)) < timeout-100*time.Millisecond {
		t.Fatalf("closed %v after the re-offer, want about %v", closedAt.Sub(time.Unix(0, at)), timeout)
	}
	if err := mute.conn.SetAnswer("v=0"); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("late answer: err = %v", err)
	}
	writeUntil(t, w, 5, []byte{0xCD}, func() bool { return len(good.payloads("FAR/far-video")) >= 5 },
		"the answering subscriber still gets the track")
	if err := good.conn.Err(); err != nil {
		t.Fatalf("the answering subscriber was closed: %v", err)
	}
	select {
	case <-unanswered.Done():
	case <-time.After(timeout + wait):
		t.Fatal("a connection whose offer is never answered stays open")
	}
	if !errors.Is(unanswered.Err(), sfu.ErrAnswerTimeout) || time.Since(start) < timeout-100*time.Millisecond {
		t.Fatalf("unanswered offer: Err = %v after %v", unanswered.Err(), time.Since(start))
	}
	if got := s.Counts(); got.Total != 1 {
		t.Fatalf("counts %+v", got)
	}
}

// The signaling layer closes a connection from its own hooks (a
// "disconnect" on the signaling data channel, a re-offer it cannot send).
func TestCloseFromHooks(t *testing.T) {
	testutil.CheckLeaks(t)
	s := newSFU(t, nil)

	// From DataChannelMessage, on pion's data channel goroutine.
	var conn atomic.Pointer[sfu.Connection]
	closed := make(chan error, 1)
	pc := barePeer(t)
	c, err := s.Join(testutil.Context(t, wait), sfu.JoinRequest{ChannelID: "hooks", ConnectionID: "A", Role: sfu.RoleRecvonly, Hooks: sfu.ConnectionHooks{
		DataChannelMessage: func(label string, data []byte, _ bool) {
			if label == sfu.LabelSignaling && string(data) == `{"type":"disconnect"}` {
				closed <- conn.Load().Close()
			}
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	conn.Store(c)
	defer c.Close()
	sendOnOpen(pc, sfu.LabelSignaling, `{"type":"disconnect"}`)
	if err := c.SetAnswer(answerOffer(t, pc, c.Offer().SDP)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(wait):
		t.Fatal("Close from the DataChannelMessage hook did not return")
	}
	if !errors.Is(c.Err(), net.ErrClosed) {
		t.Fatalf("Err = %v", c.Err())
	}
	if err := c.SendText(sfu.LabelNotify, "{}"); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("send after close: %v", err)
	}
	if err := c.AddICECandidate(webrtc.ICECandidateInit{}); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("candidate after close: %v", err)
	}

	// From ReOffer, on the connection's event goroutine.
	reoffered := make(chan error, 1)
	sub := join(t, s, clientOpts{channel: "hooks", id: "B", role: sfu.RoleRecvonly, onReoffer: func(tc *testClient, _ string) {
		reoffered <- tc.conn.Close()
	}})
	addRemoteVideo(t, channel(t, s, "hooks"), "v", "FAR", nil)
	select {
	case err := <-reoffered:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(wait):
		t.Fatal("Close from the ReOffer hook did not return")
	}
	<-sub.conn.Done()
}

// DisconnectAll and Close may come while Joins are half done: no panic, no
// connection left behind in a channel, every Join either returns an open
// connection or an error.
func TestJoinRacesDisconnectAndClose(t *testing.T) {
	testutil.CheckLeaks(t)
	s := newSFU(t, nil)
	ctx := testutil.Context(t, 2*wait)
	var (
		mu      sync.Mutex
		conns   []*sfu.Connection
		fails   int
		closing atomic.Bool
	)
	joinLoop := func(wg *sync.WaitGroup, n int) {
		defer wg.Done()
		for range n {
			c, err := s.Join(ctx, sfu.JoinRequest{ChannelID: "race", Role: sfu.RoleRecvonly})
			mu.Lock()
			if err == nil {
				conns = append(conns, c)
			} else {
				fails++
			}
			mu.Unlock()
			if err != nil && closing.Load() {
				return
			}
		}
	}

	// Phase 1: DisconnectAll keeps hitting the joins.
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go joinLoop(&wg, 6)
	}
	joined := make(chan struct{})
	go func() { wg.Wait(); close(joined) }()
	for running := true; running; {
		select {
		case <-joined:
			running = false
		case <-time.After(time.Millisecond):
			s.DisconnectAll()
		}
	}
	s.DisconnectAll()
	mu.Lock()
	got := slices.Clone(conns)
	mu.Unlock()
	for _, c := range got {
		select {
		case <-c.Done():
		case <-time.After(wait):
			t.Fatalf("connection %s not closed by DisconnectAll", c.ID())
		}
	}
	if n := s.Counts().Total; n != 0 {
		t.Fatalf("%d connections counted after DisconnectAll", n)
	}
	ch := channel(t, s, "race")
	if n := ch.Counts().Connections; n != 0 {
		t.Fatalf("%d closed connections left in the channel", n)
	}

	// Phase 2: Close comes in the middle of joins.
	for range 3 {
		wg.Add(1)
		go joinLoop(&wg, 50)
	}
	time.Sleep(20 * time.Millisecond)
	closing.Store(true)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	for _, c := range conns {
		select {
		case <-c.Done():
		case <-time.After(wait):
			t.Fatalf("connection %s not closed by Close", c.ID())
		}
	}
	t.Logf("%d joins succeeded, %d failed", len(conns), fails)
}

// A track forwarded after another left reuses the inactive m-line, and a
// NACK on it is answered as on the first one: its sender is bound like a
// new m-line's (see addDown), with RTX.
//
// A sendrecv subscriber has upstream m-lines with no sender, the first ones
// pion's AddTrack would take: the sender must still end up on the reused
// m-line, and the upstream ones stay recvonly.
func TestNACKOnReusedMLine(t *testing.T) {
	testutil.CheckLeaks(t)
	s := newSFU(t, nil)
	api := pionapi.Local(func(se *webrtc.SettingEngine) { se.DisableSRTPReplayProtection(true) })
	for _, role := range []sfu.Role{sfu.RoleRecvonly, sfu.RoleSendrecv} {
		t.Run(string(role), func(t *testing.T) { testNACKOnReusedMLine(t, s, api, role) })
	}
}

func testNACKOnReusedMLine(t *testing.T, s *sfu.SFU, api *webrtc.API, role sfu.Role) {
	name := "nack-" + string(role)
	sends := role == sfu.RoleSendrecv
	sub := join(t, s, clientOpts{channel: name, id: "SUB", role: role, api: api, audio: sends, video: sends})
	ch := channel(t, s, name)
	w0 := addRemoteVideo(t, ch, "FAR0-video", "FAR0", nil)
	testutil.Eventually(t, func() bool { return midOf(sub.lastReoffer(), "FAR0") != "" && sub.settled() }, wait, "v0 offered")
	mid0 := midOf(sub.lastReoffer(), "FAR0")
	_ = w0.Close()
	testutil.Eventually(t, func() bool { return directionOf(sub.lastReoffer(), mid0) == "inactive" && sub.settled() }, wait, "v0 removed")
	before := countMlines(sub.lastReoffer())
	w := addRemoteVideo(t, ch, "FAR-video", "FAR", nil)
	seq := uint16(0)
	testutil.Eventually(t, func() bool {
		p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: uint32(seq) * 3000, SSRC: 9}, Payload: []byte{0xEE, byte(seq >> 8), byte(seq)}}
		b, _ := p.Marshal()
		_ = w.WriteRTP(b)
		seq++
		return len(sub.payloads("FAR/FAR-video")) >= 5
	}, wait, "subscriber receives")
	offer := sub.lastReoffer()
	if mid := midOf(offer, "FAR"); mid != mid0 || directionOf(offer, mid) != "sendonly" {
		t.Fatalf("FAR's track is on mid %q (%s), want the reused mid %q sendonly", mid, directionOf(offer, mid), mid0)
	}
	if after := countMlines(offer); after != before {
		t.Fatalf("m-lines went from %d to %d, want the inactive one reused", before, after)
	}
	checkOfferLayout(t, "offer with the reused m-line", offer, sub.conn.Offer().Mids, map[string]int{"FAR": 1})
	got := sub.payloads("FAR/FAR-video")
	last := got[len(got)-1]
	lost := uint16(last[1])<<8 | uint16(last[2])
	sub.mu.Lock()
	ssrc := sub.ssrcs["FAR/FAR-video"]
	sub.mu.Unlock()
	testutil.Eventually(t, func() bool {
		// Media keeps flowing: pion's client hands a packet that came as
		// RTX to the reader only along with the next one of the track.
		p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: uint32(seq) * 3000, SSRC: 9}, Payload: []byte{0xEE, byte(seq >> 8), byte(seq)}}
		b, _ := p.Marshal()
		_ = w.WriteRTP(b)
		seq++
		_ = sub.pc.WriteRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{MediaSSRC: ssrc, Nacks: []rtcp.NackPair{{PacketID: lost}}}})
		n := 0
		for _, p := range sub.payloads("FAR/FAR-video") {
			if uint16(p[1])<<8|uint16(p[2]) == lost {
				n++
			}
		}
		return n >= 2
	}, wait, "packet %d retransmitted after a NACK on the later track", lost)
}

// A subscriber that stays while publishers come and go keeps a bounded SDP:
// each new publisher's tracks reuse the m-lines the previous one left
// inactive, same mids, new a=msid and SSRCs. WATCH is recvonly; SR is
// sendrecv and publishes video the whole time, so its upstream m-lines (no
// sender on the server) are the first ones pion's AddTrack would pick.
//
// The client's receiver on each reused mid must get the new stream id and
// SSRC. Its media is checked when a single offer carried the m-line
// inactive: a pion v4.2.26 answerer stops an m-line's receiver at each
// offer that carries it inactive, and one stopped twice never delivers the
// media of a later track (browsers have no such problem). The video comes
// first, so its m-line is usually reused in the first re-offer after the
// previous publisher left; the audio's, in the one after.
//
// With ReuseOnce (the default) the same churn must deliver the media of
// every track to the pion client: only m-lines inactive in one offer are
// reused, so the SDP may grow, but no track is lost. ReuseNever is the
// baseline: every track on a new m-line.
func TestMLinesBoundedUnderChurn(t *testing.T) {
	for _, mode := range []struct {
		name  string
		reuse sfu.Reuse
	}{{"ReuseAny", sfu.ReuseAny}, {"ReuseOnce", sfu.ReuseOnce}, {"ReuseNever", sfu.ReuseNever}} {
		t.Run(mode.name, func(t *testing.T) { testChurn(t, mode.reuse) })
	}
}

func testChurn(t *testing.T, reuse sfu.Reuse) {
	testutil.CheckLeaks(t)
	s := newSFU(t, func(c *sfu.Config) { c.MLineReuse = reuse })
	watch := join(t, s, clientOpts{channel: "churn", id: "WATCH", role: sfu.RoleRecvonly})
	sr := join(t, s, clientOpts{channel: "churn", id: "SR", role: sfu.RoleSendrecv, audio: true, video: true})
	sr.pump(t, 3)
	testutil.Eventually(t, func() bool { return len(watch.payloads("SR/SR-video")) >= 5 }, wait, "WATCH receives SR's video")
	subs := []struct {
		c        *testClient
		upstream int // upstream m-lines
		steady   int // tracks that stay: SR's video for WATCH
	}{{watch, 0, 1}, {sr, 2, 0}}

	const rounds = 8
	// mids[i] are the mids subscriber i's forwarded tracks were ever on.
	mids := make([]map[string]bool, len(subs))
	for i := range mids {
		mids[i] = map[string]bool{}
	}
	lastSSRC := make([]map[uint32]bool, len(subs))
	media := 0 // tracks whose media was checked
	for round := range rounds {
		id := fmt.Sprintf("PUB%d", round)
		t.Run(id, func(t *testing.T) {
			pub := join(t, s, clientOpts{channel: "churn", id: id, role: sfu.RoleSendonly, audio: true, video: true})
			pub.pump(t, byte(round))
			for _, sub := range subs {
				msid := id + " " + id + "-video"
				testutil.Eventually(t, func() bool { return midOfMsid(sub.c.lastOffer(), msid) != "" && sub.c.settled() }, wait, "%s: %s offered", sub.c.conn.ID(), msid)
			}
			pub.pumpAudio(t)
			for i, sub := range subs {
				c := sub.c
				ssrcs := map[uint32]bool{}
				for _, kind := range []string{"video", "audio"} {
					msid := id + " " + id + "-" + kind
					var mid string
					testutil.Eventually(t, func() bool {
						mid = midOfMsid(c.lastOffer(), msid)
						return mid != "" && c.settled()
					}, wait, "%s: %s offered and answered", c.conn.ID(), msid)
					// The client's receiver on that mid has the new track.
					var stream string
					var ssrc uint32
					testutil.Eventually(t, func() bool {
						stream, ssrc = receivedOn(c, mid)
						return stream == id && ssrc != 0
					}, wait, "%s: mid %s receives stream %s (has %q)", c.conn.ID(), mid, id, stream)
					if !strings.Contains(c.lastOffer(), fmt.Sprintf("a=ssrc:%d msid:%s\r\n", ssrc, msid)) {
						t.Fatalf("%s: the offer has no a=ssrc:%d for %s on mid %s", c.conn.ID(), ssrc, msid, mid)
					}
					if round > 0 && reuse == sfu.ReuseNever && mids[i][mid] {
						t.Errorf("%s: ReuseNever put %s on the used mid %s", c.conn.ID(), msid, mid)
					}
					if round > 0 && reuse == sfu.ReuseAny {
						if !mids[i][mid] {
							t.Errorf("%s: %s is on new mid %s, want one of the inactive %v reused", c.conn.ID(), msid, mid, mids[i])
						}
						if lastSSRC[i][ssrc] {
							t.Fatalf("%s: reused mid %s kept the SSRC %d of the previous track", c.conn.ID(), mid, ssrc)
						}
					}
					// Media: always on a new m-line; on a reused one only if
					// a single offer carried it inactive (see above).
					key := id + "/" + id + "-" + kind
					n := inactiveBefore(c, mid, msid)
					if reuse == sfu.ReuseOnce && n > 1 {
						t.Errorf("%s: ReuseOnce put %s on mid %s, inactive in %d offers", c.conn.ID(), msid, mid, n)
					}
					if round == 0 || n <= 1 {
						testutil.Eventually(t, func() bool { return len(c.payloads(key)) >= 3 }, wait, "%s receives %s on mid %s", c.conn.ID(), key, mid)
						media++
					} else {
						t.Logf("%s: mid %s was inactive in %d offers: media of %s not checked (pion answerer)", c.conn.ID(), mid, n, key)
					}
					mids[i][mid] = true
					ssrcs[ssrc] = true
				}
				lastSSRC[i] = ssrcs
				checkOfferLayout(t, c.conn.ID()+"'s offer", c.lastOffer(), c.conn.Offer().Mids, map[string]int{id: 2})
			}
			if err := pub.conn.Close(); err != nil {
				t.Fatal(err)
			}
			for i, sub := range subs {
				c := sub.c
				testutil.Eventually(t, func() bool {
					if !c.settled() {
						return false
					}
					offer := c.lastOffer()
					if midOf(offer, id) != "" {
						return false
					}
					for mid := range mids[i] {
						if directionOf(offer, mid) != "inactive" {
							return false
						}
					}
					return true
				}, wait, "%s: %s's m-lines inactive and answered", c.conn.ID(), id)
				n := countMlines(c.pc.CurrentRemoteDescription().SDP)
				// Upstream, the most forwarded tracks at once, the data channels.
				bound := sub.upstream + sub.steady + 2 + 1
				t.Logf("%s: %d m-lines after %s left (ReuseAny's bound: %d)", c.conn.ID(), n, id, bound)
				if reuse == sfu.ReuseAny && n > bound {
					t.Fatalf("%s: %d m-lines after %d publishers came and went, want at most %d", c.conn.ID(), n, round+1, bound)
				}
			}
		})
	}
	t.Logf("media checked for %d of %d forwarded tracks", media, rounds*2*len(subs))
	// SR's own video still flows to WATCH, and SR's upstream m-lines are
	// still its first, recvonly.
	n := len(watch.payloads("SR/SR-video"))
	testutil.Eventually(t, func() bool { return len(watch.payloads("SR/SR-video")) > n+5 }, wait, "WATCH still receives SR's video")
	checkOfferLayout(t, "SR's last offer", sr.lastOffer(), sr.conn.Offer().Mids, nil)
}

// inactiveBefore counts the offers the client got that carried mid inactive
// right before the first one that carries msid on it.
func inactiveBefore(c *testClient, mid, msid string) int {
	c.mu.Lock()
	offers := append([]string{c.conn.Offer().SDP}, c.reoffers...)
	c.mu.Unlock()
	n := 0
	for _, o := range offers {
		if midOfMsid(o, msid) == mid {
			return n
		}
		if directionOf(o, mid) == "inactive" {
			n++
		} else {
			n = 0
		}
	}
	return n
}

// midOfMsid returns the mid of the m-line whose a=msid is msid ("stream
// track"), or "".
func midOfMsid(sdpText, msid string) string {
	for _, sec := range strings.Split(sdpText, "\r\nm=")[1:] {
		if strings.Contains(sec+"\r\n", "\r\na=msid:"+msid+"\r\n") {
			return attr(sec, "mid")
		}
	}
	return ""
}

// receivedOn returns the stream id and SSRC of the track the client's
// receiver on the m-line mid has.
func receivedOn(c *testClient, mid string) (string, uint32) {
	for _, tr := range c.pc.GetTransceivers() {
		if tr.Mid() != mid || tr.Receiver() == nil {
			continue
		}
		if track := tr.Receiver().Track(); track != nil {
			return track.StreamID(), uint32(track.SSRC())
		}
	}
	return "", 0
}
