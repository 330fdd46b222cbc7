package relay

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoal-sfu/shoal/internal/testutil"
)

// fakeLocal stands in for the SFU: it records what peers relay.
type fakeLocal struct {
	mu    sync.Mutex
	sinks map[string]*fakeSink
}

func newFakeLocal() *fakeLocal { return &fakeLocal{sinks: map[string]*fakeSink{}} }

func (f *fakeLocal) RelayChannel(r *Relay, channel string) (ChannelSink, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := &fakeSink{r: r, channel: channel, tracks: map[string]*fakeWriter{}}
	f.sinks[channel] = s
	return s, nil
}

func (f *fakeLocal) sink(channel string) *fakeSink {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sinks[channel]
}

// addRemoteTrackPause is how long fakeSink.AddRemoteTrack takes after it
// has filed the track.
const addRemoteTrackPause = 5 * time.Millisecond

type fakeSink struct {
	r       *Relay
	channel string

	mu     sync.Mutex
	tracks map[string]*fakeWriter
	added  int
	msgs   []Message
	closed bool
}

func (s *fakeSink) AddRemoteTrack(from string, info TrackInfo, kf KeyframeRequester) (TrackWriter, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := &fakeWriter{from: from, info: info, kf: kf}
	s.tracks[info.ID] = w
	s.added++
	// The relay takes w only when this returns: a test must not take the
	// track for ready before (fakeSink.track waits for the relay). The
	// pause makes a test that does fail every time, not once in a while.
	s.mu.Unlock()
	time.Sleep(addRemoteTrackPause)
	s.mu.Lock()
	return w, nil
}

func (s *fakeSink) DeliverMessage(from string, m Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m.From = from + "/" + m.From
	s.msgs = append(s.msgs, m)
}

func (s *fakeSink) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
}

// track returns the writer of the remote track id once the relay has it,
// so that every packet sent from then on reaches it; nil before. The
// relay takes the writer when AddRemoteTrack returns and drops (counting)
// what arrives earlier: a test that waited only for AddRemoteTrack to be
// called lost its first packets when the relay's goroutine was slow to
// take the return (TestThreeNodesFanOut, once on a loaded CI machine; with
// addRemoteTrackPause, every test that sent a fixed number of packets).
func (s *fakeSink) track(id string) *fakeWriter {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	w := s.tracks[id]
	s.mu.Unlock()
	if w == nil {
		return nil
	}
	if !w.ready.Load() {
		if !remoteReady(s.r, s.channel, id) {
			return nil
		}
		w.ready.Store(true)
	}
	return w
}

// called returns the writer AddRemoteTrack made for track id, ready or
// not (nil if it was not called).
func (s *fakeSink) called(id string) *fakeWriter {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tracks[id]
}

// remoteReady reports whether r delivers the packets of a peer's track id
// in channel to its writer.
func remoteReady(r *Relay, channel, id string) bool {
	r.mu.Lock()
	links := make([]*link, 0, len(r.peers))
	for _, l := range r.peers {
		links = append(links, l)
	}
	r.mu.Unlock()
	for _, l := range links {
		l.inMu.RLock()
		t := l.in[channel][id]
		l.inMu.RUnlock()
		if t != nil && t.w.Load() != nil {
			return true
		}
	}
	return false
}

func (s *fakeSink) messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

func (s *fakeSink) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

type fakeWriter struct {
	from string
	info TrackInfo
	kf   KeyframeRequester

	mu     sync.Mutex
	seqs   []uint16
	last   []byte
	n      atomic.Int64
	closed atomic.Bool
	ready  atomic.Bool                      // the relay has it (fakeSink.track)
	hook   atomic.Pointer[func(pkt []byte)] // benchmarks: replaces the recording
}

func (w *fakeWriter) onWrite(fn func(pkt []byte)) { w.hook.Store(&fn) }

func (w *fakeWriter) WriteRTP(pkt []byte) error {
	if fn := w.hook.Load(); fn != nil {
		(*fn)(pkt)
		return nil
	}
	w.mu.Lock()
	w.seqs = append(w.seqs, binary.BigEndian.Uint16(pkt[2:4]))
	w.last = append(w.last[:0], pkt...)
	w.mu.Unlock()
	w.n.Add(1)
	return nil
}

func (w *fakeWriter) Close() error { w.closed.Store(true); return nil }

func (w *fakeWriter) hasSeq(s uint16) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, x := range w.seqs {
		if x == s {
			return true
		}
	}
	return false
}

// counter is a KeyframeRequester that counts.
type counter struct{ n atomic.Int64 }

func (c *counter) RequestKeyframe() { c.n.Add(1) }

var testKey = []byte("test cluster key, 32 bytes long!")

type node struct {
	*Relay
	name  string
	local *fakeLocal
}

// startNode makes a node (newNode) and runs its relay until the test ends.
func startNode(t testing.TB, name string, key []byte, mod ...func(*Config)) *node {
	t.Helper()
	n := newNode(t, name, key, mod...)
	runRelay(t, n.Relay)
	return n
}

// newNode makes a node on its own loopback IP with a fakeLocal; its relay
// is not started.
func newNode(t testing.TB, name string, key []byte, mod ...func(*Config)) *node {
	t.Helper()
	ip := testutil.LoopbackIP(t)
	local := newFakeLocal()
	cfg := FastConfig(Config{
		NodeName:   name + "@" + ip.String(),
		ClusterKey: key,
		ListenAddr: netip.AddrPortFrom(ip, uint16(testutil.FreePort(t, ip))),
		Local:      local,
		Logger:     testutil.LoggerLevel(t, slogLevel()),
	})
	for _, m := range mod {
		m(&cfg)
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &node{Relay: r, name: cfg.NodeName, local: local}
}

// runRelay binds r and serves it until the test ends.
func runRelay(t testing.TB, r *Relay) {
	t.Helper()
	if err := r.Listen(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Serve(context.Background()) }()
	t.Cleanup(func() {
		r.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
}

// udpPair returns two UDP sockets on a loopback IP, closed when the test
// ends.
func udpPair(t testing.TB) (a, b *net.UDPConn) {
	t.Helper()
	ip := testutil.LoopbackIP(t)
	var socks [2]*net.UDPConn
	for i := range socks {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		socks[i] = c
	}
	return socks[0], socks[1]
}

func meet(t testing.TB, nodes ...*node) {
	t.Helper()
	for _, a := range nodes {
		for _, b := range nodes {
			if a != b {
				if err := a.SetPeer(b.name, b.Addr()); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

func (n *node) link(peer *node) LinkStats {
	for _, l := range n.Stats().Links {
		if l.Peer == peer.name {
			return l
		}
	}
	return LinkStats{}
}

func rtpPacket(seq uint16, payload []byte) []byte {
	p := make([]byte, 12, 12+len(payload))
	p[0], p[1] = 0x80, 96
	binary.BigEndian.PutUint16(p[2:], seq)
	binary.BigEndian.PutUint32(p[8:], 0xabcdef)
	return append(p, payload...)
}

var video = TrackInfo{
	ID: "conn1-video", StreamID: "conn1", Kind: "video", MimeType: "video/VP8", ClockRate: 90000,
	Feedback: []Feedback{{"nack", ""}, {"nack", "pli"}},
}

// stream writes packets to t from seq on until stop is closed.
func stream(t *LocalTrack, seq *atomic.Uint32, stop <-chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
			s := uint16(seq.Add(1))
			_ = t.WriteRTP(rtpPacket(s, []byte("media")))
		}
	}
}

// openRoom has a and b meet and opens channel "room" from a to b; it
// returns once b relays the channel back.
func openRoom(t *testing.T, a, b *node) {
	t.Helper()
	meet(t, a, b)
	if err := a.OpenChannel("room", b.name); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, func() bool { return b.local.sink("room") != nil }, 5*time.Second, "B relays room")
}

// relayVideo opens "room" (openRoom) and adds the video track on a.
func relayVideo(t *testing.T, a, b *node) (*LocalTrack, *counter) {
	t.Helper()
	openRoom(t, a, b)
	kf := &counter{}
	lt, err := a.AddLocalTrack("room", video, kf)
	if err != nil {
		t.Fatal(err)
	}
	return lt, kf
}

// streamUntilEnd streams lt (see stream) until the test ends; the returned
// counter is the last sequence number sent.
func streamUntilEnd(t *testing.T, lt *LocalTrack) *atomic.Uint32 {
	var seq atomic.Uint32
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go stream(lt, &seq, stop, &wg)
	t.Cleanup(func() { close(stop); wg.Wait() })
	return &seq
}

func TestTwoNodesMediaMessagesKeyframes(t *testing.T) {
	testutil.CheckLeaks(t)
	a := startNode(t, "a", testKey)
	b := startNode(t, "b", testKey)
	openRoom(t, a, b)

	kf := &counter{}
	lt, err := a.AddLocalTrack("room", video, kf)
	if err != nil {
		t.Fatal(err)
	}
	var w *fakeWriter
	testutil.Eventually(t, func() bool { w = b.local.sink("room").track(video.ID); return w != nil }, 5*time.Second, "remote track on B")
	if w.from != a.name || w.info.MimeType != "video/VP8" || len(w.info.Feedback) != 2 || w.info.Feedback[1].Parameter != "pli" {
		t.Fatalf("remote track = from %q info %+v", w.from, w.info)
	}
	for i := range 20 {
		if err := lt.WriteRTP(rtpPacket(uint16(100+i), []byte{byte(i), 1, 2, 3})); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, func() bool { return w.n.Load() == 20 }, 5*time.Second, "20 packets on B (have %d)", w.n.Load())
	w.mu.Lock()
	if want := rtpPacket(119, []byte{19, 1, 2, 3}); !bytes.Equal(w.last, want) {
		t.Errorf("last packet %x, want %x", w.last, want)
	}
	w.mu.Unlock()

	// Messages both ways.
	if err := a.SendMessage("room", Message{Label: "#chat", From: "conn1", Data: []byte("hi from a")}); err != nil {
		t.Fatal(err)
	}
	if err := b.SendMessage("room", Message{Label: "#chat", From: "conn2", Data: []byte("hi from b")}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, func() bool { return len(b.local.sink("room").messages()) == 1 }, 5*time.Second, "message on B")
	testutil.Eventually(t, func() bool { return len(a.local.sink("room").messages()) == 1 }, 5*time.Second, "message on A")
	if m := b.local.sink("room").messages()[0]; m.From != a.name+"/conn1" || string(m.Data) != "hi from a" || m.Label != "#chat" {
		t.Errorf("B got %+v", m)
	}
	if m := a.local.sink("room").messages()[0]; m.From != b.name+"/conn2" || string(m.Data) != "hi from b" {
		t.Errorf("A got %+v", m)
	}

	// The new remote track asked once for a keyframe. Many subscriber
	// requests within the interval are coalesced on B: none crosses.
	testutil.Eventually(t, func() bool { return kf.n.Load() == 1 }, 5*time.Second, "first keyframe request")
	for range 50 {
		w.kf.RequestKeyframe()
	}
	time.Sleep(100 * time.Millisecond)
	if got := kf.n.Load(); got != 1 {
		t.Errorf("publisher got %d keyframe requests, want 1", got)
	}
	if st := b.link(a); st.KeyframesCoalesced != 50 || st.KeyframesOut != 1 {
		t.Errorf("B link: coalesced %d out %d, want 50 and 1", st.KeyframesCoalesced, st.KeyframesOut)
	}
	time.Sleep(DefaultKeyframeInterval)
	w.kf.RequestKeyframe()
	testutil.Eventually(t, func() bool { return kf.n.Load() == 2 }, 5*time.Second, "keyframe after the interval")

	st := a.Stats()
	if len(st.Channels) != 1 || st.Channels[0].PacketsOut != 20 || st.Channels[0].MessagesOut != 1 || st.Channels[0].Peers[0] != b.name {
		t.Errorf("A channel stats %+v", st.Channels)
	}
	testutil.Eventually(t, func() bool { return a.link(b).RTT > 0 }, 5*time.Second, "rtt measured")

	// Closing the track removes it on B; closing the channel ends it on both.
	lt.Close()
	testutil.Eventually(t, w.closed.Load, 5*time.Second, "remote track closed")
	if err := a.CloseChannel("room"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, b.local.sink("room").isClosed, 5*time.Second, "B's channel ended")
	if !a.local.sink("room").isClosed() {
		t.Error("A's sink not closed")
	}
	if err := lt.WriteRTP(rtpPacket(1, nil)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write after close: %v", err)
	}
}

func TestThreeNodesFanOut(t *testing.T) {
	testutil.CheckLeaks(t)
	a := startNode(t, "a", testKey)
	b := startNode(t, "b", testKey)
	c := startNode(t, "c", testKey)
	meet(t, a, b, c)
	for _, p := range []*node{b, c} {
		if err := a.OpenChannel("room", p.name); err != nil {
			t.Fatal(err)
		}
	}
	lt, err := a.AddLocalTrack("room", video, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []*node{b, c} {
		testutil.Eventually(t, func() bool { return p.local.sink("room").track(video.ID) != nil }, 5*time.Second, "track on %s", p.name)
	}
	for i := range 10 {
		_ = lt.WriteRTP(rtpPacket(uint16(i), []byte("x")))
	}
	for _, p := range []*node{b, c} {
		w := p.local.sink("room").track(video.ID)
		testutil.Eventually(t, func() bool { return w.n.Load() == 10 }, 5*time.Second, "10 packets on %s", p.name)
	}
	// B's message reaches A; B and C are not linked for this channel, so
	// nothing is relayed between them (each node relays only its own).
	if err := b.SendMessage("room", Message{Label: "#x", From: "b1", Data: []byte("m")}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, func() bool { return len(a.local.sink("room").messages()) == 1 }, 5*time.Second, "message on A")
}

// The relay of a channel lasts until CloseChannel: a node whose last local
// track (its last publishing client) left keeps receiving, and new tracks
// flow both ways.
func TestRelayOutlivesLocalClients(t *testing.T) {
	testutil.CheckLeaks(t)
	a := startNode(t, "a", testKey)
	b := startNode(t, "b", testKey)
	openRoom(t, a, b)
	bt, err := b.AddLocalTrack("room", TrackInfo{ID: "b-audio", StreamID: "b", Kind: "audio", MimeType: "audio/opus", ClockRate: 48000, Channels: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, func() bool { return a.local.sink("room").track("b-audio") != nil }, 5*time.Second, "B's track on A")
	bt.Close() // B's last client left
	testutil.Eventually(t, a.local.sink("room").track("b-audio").closed.Load, 5*time.Second, "B's track gone on A")

	time.Sleep(300 * time.Millisecond)
	lt, err := a.AddLocalTrack("room", video, nil)
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, func() bool { return b.local.sink("room").track(video.ID) != nil }, 5*time.Second, "A's track on B")
	_ = lt.WriteRTP(rtpPacket(7, nil))
	testutil.Eventually(t, func() bool { return b.local.sink("room").track(video.ID).n.Load() == 1 }, 5*time.Second, "packet on B")
	if b.local.sink("room").isClosed() || a.local.sink("room").isClosed() {
		t.Error("a channel ended without CloseChannel")
	}
}

func TestLinkBreaksAndRecovers(t *testing.T) {
	testutil.CheckLeaks(t)
	var ups, downs atomic.Int64
	a := startNode(t, "a", testKey, func(c *Config) {
		c.OnLinkChange = func(_ string, up bool, err error) {
			if up != (err == nil) {
				t.Errorf("OnLinkChange up=%v err=%v", up, err)
			}
			if up {
				ups.Add(1)
			} else {
				downs.Add(1)
			}
		}
	})
	b := startNode(t, "b", testKey)
	lt, kf := relayVideo(t, a, b)
	seq := streamUntilEnd(t, lt)
	var w *fakeWriter
	testutil.Eventually(t, func() bool { w = b.local.sink("room").track(video.ID); return w != nil && w.n.Load() > 10 }, 5*time.Second, "streaming")
	before := kf.n.Load()

	// Kill the link under the stream, from each side in turn.
	for i, n := range []*node{a, b} {
		peer := map[*node]*node{a: b, b: a}[n]
		n.peers[peer.name].sess.Load().conn.Close()
		testutil.Eventually(t, func() bool { return n.link(peer).Reconnects == uint64(i+1) && n.link(peer).Connected }, 10*time.Second, "reconnect %d", i+1)
		mark := uint16(seq.Load())
		testutil.Eventually(t, func() bool { return w.hasSeq(mark + 5) }, 5*time.Second, "media resumes after break %d", i+1)
	}
	b.local.sink("room").mu.Lock()
	added := b.local.sink("room").added
	b.local.sink("room").mu.Unlock()
	if added != 1 {
		t.Errorf("remote track added %d times; the resumed link should carry on the same track", added)
	}
	if w.closed.Load() {
		t.Error("remote track closed by the break")
	}
	testutil.Eventually(t, func() bool { return kf.n.Load() > before }, 5*time.Second, "keyframe requested on resume")
	if ups.Load() != 3 || downs.Load() != 2 {
		t.Errorf("OnLinkChange: %d ups, %d downs; want 3 and 2", ups.Load(), downs.Load())
	}
}

// relayedVideo starts nodes a and b with "room" open between them, adds
// the video track on a and waits for b's writer of it.
func relayedVideo(t *testing.T) (a, b *node, lt *LocalTrack, w *fakeWriter) {
	t.Helper()
	a = startNode(t, "a", testKey)
	b = startNode(t, "b", testKey)
	openRoom(t, a, b)
	lt, w = videoOnB(t, a, b)
	return a, b, lt, w
}

// videoOnB adds the video track to a's "room" and waits for b's writer
// of it.
func videoOnB(t *testing.T, a, b *node) (*LocalTrack, *fakeWriter) {
	t.Helper()
	lt, err := a.AddLocalTrack("room", video, nil)
	if err != nil {
		t.Fatal(err)
	}
	var w *fakeWriter
	testutil.Eventually(t, func() bool { w = b.local.sink("room").track(video.ID); return w != nil }, 5*time.Second, "track on B")
	return lt, w
}

func TestNACKAnsweredFromSendingSide(t *testing.T) {
	testutil.CheckLeaks(t)
	a, b, lt, w := relayedVideo(t)
	for s := uint16(1); s <= 10; s++ {
		if s == 4 || s == 5 {
			lt.ring.put(rtpPacket(s, []byte("lost"))) // kept for NACKs, never sent: lost on the wire
			continue
		}
		_ = lt.WriteRTP(rtpPacket(s, []byte("ok")))
	}
	testutil.Eventually(t, func() bool { return w.hasSeq(4) && w.hasSeq(5) }, 5*time.Second, "lost packets resent")
	if st := a.link(b); st.Retransmits != 2 || st.NACKsIn != 1 {
		t.Errorf("A link retransmits %d nacks in %d, want 2 and 1", st.Retransmits, st.NACKsIn)
	}
	if st := b.Stats().Channels[0]; st.RetransmitsIn != 2 {
		t.Errorf("B channel retransmits in %d, want 2", st.RetransmitsIn)
	}
}

func TestWithoutClusterKeyRejected(t *testing.T) {
	testutil.CheckLeaks(t)
	a := startNode(t, "a", testKey)
	b := startNode(t, "b", testKey)
	meet(t, a, b)
	if err := a.OpenChannel("room", b.name); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, func() bool { return a.link(b).Connected }, 5*time.Second, "a-b link")

	// A node with another key ("0" sorts first, so it dials B) never links.
	x := startNode(t, "0x", []byte("some other key of 32 bytes......"))
	if err := x.SetPeer(b.name, b.Addr()); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, func() bool { return b.Stats().HandshakeFailures >= 2 && x.Stats().HandshakeFailures >= 2 }, 5*time.Second, "handshakes refused")
	if x.link(b).Connected {
		t.Fatal("a node without the key linked")
	}
	for _, l := range b.Stats().Links {
		if l.Peer == x.name {
			t.Fatalf("B made a link for %s", x.name)
		}
	}

	// Datagrams from an address that is no peer's are dropped and counted.
	ip := testutil.LoopbackIP(t)
	raw, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.WriteToUDPAddrPort(rtpPacket(1, []byte("forged")), b.Addr()); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, func() bool { return b.Stats().UnknownSource >= 1 }, 5*time.Second, "unknown source counted")

	// Datagrams claiming to come from A but sealed without the key fail
	// authentication: dropped and counted, nothing delivered.
	lt, w := videoOnB(t, a, b)
	forged := append(rtpPacket(9, nil), appendFrameStr(nil, KindRTP, 0, "room", video.ID, rtpPacket(1, []byte("evil")))...)
	forged = append(forged, make([]byte, 16)...) // a made-up GCM tag
	b.handleDatagram(forged, (*b.peers[a.name].sess.Load()).udpAP)
	if got := b.link(a).AuthFailures; got != 1 {
		t.Errorf("auth failures %d, want 1", got)
	}
	if w.n.Load() != 0 {
		t.Error("forged packet delivered")
	}
	_ = lt.WriteRTP(rtpPacket(1, []byte("real")))
	testutil.Eventually(t, func() bool { return w.n.Load() == 1 }, 5*time.Second, "real packet still delivered")
}

func TestConfigValidation(t *testing.T) {
	good := Config{NodeName: "a@10.0.0.1", ClusterKey: testKey, Local: newFakeLocal()}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no name", func(c *Config) { c.NodeName = "" }, "NodeName"},
		{"bad name", func(c *Config) { c.NodeName = "a b@h" }, "NodeName"},
		{"short key", func(c *Config) { c.ClusterKey = []byte("short") }, "at least 16 bytes"},
		{"no local", func(c *Config) { c.Local = nil }, "Local is required"},
		{"negative", func(c *Config) { c.LinkTimeout = -1 }, "LinkTimeout must not be negative"},
		{"backoff", func(c *Config) { c.ReconnectMin, c.ReconnectMax = time.Second, time.Millisecond }, "below ReconnectMin"},
		{"timeout", func(c *Config) { c.HeartbeatInterval, c.LinkTimeout = time.Second, time.Second }, "must exceed"},
		{"message queue", func(c *Config) { c.QueueLen = -1 }, "QueueLen must not be negative"},
		{"track queue", func(c *Config) { c.TrackQueueLen = -1 }, "TrackQueueLen must not be negative"},
	} {
		cfg := good
		tc.mod(&cfg)
		if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want one containing %q", tc.name, err, tc.want)
		}
	}
	r, err := New(good)
	if err != nil {
		t.Fatal(err)
	}
	if r.cfg.ListenAddr.Port() != DefaultPort || r.cfg.NACKBuffer != DefaultNACKBuffer || r.cfg.KeyframeInterval != DefaultKeyframeInterval || r.cfg.TrackQueueLen != DefaultTrackQueueLen {
		t.Errorf("defaults not applied: %+v", r.cfg)
	}
	if err := r.OpenChannel("room", "b@10.0.0.2"); !errors.Is(err, ErrUnknownPeer) {
		t.Errorf("open with unknown peer: %v", err)
	}
	if err := r.SetPeer("a@10.0.0.1", netip.MustParseAddrPort("10.0.0.1:1")); err == nil {
		t.Error("SetPeer accepted this node")
	}
	r.Close()
	r.Close()
	for name, err := range map[string]error{
		"Run":      r.Run(context.Background()),
		"SetPeer":  r.SetPeer("b@10.0.0.2", netip.MustParseAddrPort("10.0.0.2:1")),
		"Open":     r.OpenChannel("room", "b@10.0.0.2"),
		"SendMsg":  r.SendMessage("room", Message{}),
		"AddTrack": func() error { _, err := r.AddLocalTrack("room", video, nil); return err }(),
	} {
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("%s after Close: %v, want net.ErrClosed", name, err)
		}
	}
}

func TestRingBuffer(t *testing.T) {
	r := newRing(8, 100)
	for s := uint16(65530); s != 6; s++ {
		r.put(rtpPacket(s, []byte{byte(s)}))
	}
	r.put(rtpPacket(1, make([]byte, 200))) // too large: not kept, older seq 1 stays
	for s, want := range map[uint16]bool{65530: false, 65533: false, 65534: true, 0: true, 5: true, 6: false} {
		var got []byte
		ok := r.get(s, func(p []byte) { got = append(got, p...) })
		if ok != want || (ok && binary.BigEndian.Uint16(got[2:]) != s) {
			t.Errorf("seq %d: found %v (%x), want %v", s, ok, got, want)
		}
	}
}

func slogLevel() slog.Level {
	if os.Getenv("RELAY_DEBUG") != "" {
		return slog.LevelDebug
	}
	return slog.LevelWarn
}

func TestRemovePeerEndsItsRelay(t *testing.T) {
	testutil.CheckLeaks(t)
	a := startNode(t, "a", testKey)
	b := startNode(t, "b", testKey)
	meet(t, a, b)
	if err := b.OpenChannel("room", a.name); err != nil { // b accepts the link, but may open channels too
		t.Fatal(err)
	}
	lt, err := b.AddLocalTrack("room", video, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lt.Close()
	var w *fakeWriter
	testutil.Eventually(t, func() bool { w = a.local.sink("room").track(video.ID); return w != nil }, 5*time.Second, "b's track on a")
	if err := a.RemovePeer(b.name); err != nil {
		t.Fatal(err)
	}
	if !w.closed.Load() || !a.local.sink("room").isClosed() {
		t.Error("removing the only peer left its track or channel open")
	}
	if st := a.Stats(); len(st.Links) != 0 || len(st.Channels) != 0 {
		t.Errorf("stats after RemovePeer: %+v", st)
	}
	if err := a.RemovePeer(b.name); !errors.Is(err, ErrUnknownPeer) {
		t.Errorf("second RemovePeer: %v", err)
	}
}
