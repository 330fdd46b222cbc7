package sfu_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
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

// testClient is a pion peer that behaves like Sora's SDKs: it answers the
// server's offers, attaches its tracks with AddTrack after SRD (so they land
// on the first free m-lines of their kind) and trickles its candidates.
type testClient struct {
	t    testing.TB
	pc   *webrtc.PeerConnection
	conn *sfu.Connection

	audio, video *webrtc.TrackLocalStaticRTP
	videoSender  *webrtc.RTPSender
	layers       []*simTrack // a simulcast publisher's layers, r0 first
	plis         atomic.Int64
	nacks        atomic.Int64                         // NACKs the SFU sent about the video
	rrs          atomic.Int64                         // receiver reports the SFU sent about the video
	tccs         atomic.Int64                         // transport-cc feedback the SFU sent
	lastRR       atomic.Pointer[rtcp.ReceptionReport] // the last report on the video

	mu       sync.Mutex
	reoffers []string
	answered int                     // re-offers whose answer the server took
	received map[string][][]byte     // stream id/track id -> payloads
	hdrs     map[string][]rtp.Header // stream id/track id -> headers
	switches []sfu.SimulcastSwitch
	streams  map[string]string   // track id -> stream id
	ssrcs    map[string]uint32   // stream id/track id -> SSRC
	msgs     map[string][][]byte // label -> messages
	dcs      map[string]*webrtc.DataChannel
	open     map[string]bool
	events   []sfu.ConnectionEvent
}

type clientOpts struct {
	channel string
	id      string
	role    sfu.Role
	audio   bool
	video   bool
	labels  []string
	discard bool // read received RTP without keeping it (benchmarks)
	// simulcast publishes the video as three layers (simTrack), rid the
	// layer received of simulcast tracks.
	simulcast bool
	rid       sfu.SimulcastRid
	api       *webrtc.API // nil: sharedClientAPI
	// onReoffer, when set, is called with each re-offer (after it is
	// recorded) instead of answering it.
	onReoffer func(c *testClient, offer string)
}

// sharedClientAPI is the API of the test clients that need no tweak.
var sharedClientAPI = pionapi.Local()

// join connects a client and waits until its peer connection is up.
func join(t testing.TB, s *sfu.SFU, o clientOpts) *testClient {
	t.Helper()
	c, err := tryJoin(t, s, o)
	if err != nil {
		t.Fatalf("join %s: %v", o.id, err)
	}
	testutil.Eventually(t, func() bool { return c.pc.ConnectionState() == webrtc.PeerConnectionStateConnected }, 10*time.Second, "client %s connected", o.id)
	return c
}

func tryJoin(t testing.TB, s *sfu.SFU, o clientOpts) (*testClient, error) {
	t.Helper()
	api := o.api
	if api == nil {
		api = sharedClientAPI
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	c := &testClient{t: t, pc: pc, received: map[string][][]byte{}, hdrs: map[string][]rtp.Header{}, streams: map[string]string{}, ssrcs: map[string]uint32{}, msgs: map[string][][]byte{}, dcs: map[string]*webrtc.DataChannel{}, open: map[string]bool{}}
	t.Cleanup(func() { _ = pc.Close() })
	if o.audio {
		c.audio, _ = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "mic", "local")
	}
	switch {
	case o.video && o.simulcast:
		c.layers = newSimTracks()
	case o.video:
		c.video, _ = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "cam", "local")
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		key := tr.StreamID() + "/" + tr.ID()
		if o.discard {
			c.mu.Lock()
			c.received[key] = [][]byte{nil}
			c.mu.Unlock()
			buf := make([]byte, 1500)
			for {
				if _, _, err := tr.Read(buf); err != nil {
					return
				}
			}
		}
		c.mu.Lock()
		c.streams[tr.ID()] = tr.StreamID()
		c.ssrcs[key] = uint32(tr.SSRC())
		c.mu.Unlock()
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			c.mu.Lock()
			c.received[key] = append(c.received[key], append([]byte(nil), p.Payload...))
			c.hdrs[key] = append(c.hdrs[key], p.Header)
			c.mu.Unlock()
		}
	})
	pc.OnDataChannel(func(dc *webrtc.DataChannel) {
		label := dc.Label()
		c.mu.Lock()
		c.dcs[label] = dc
		c.mu.Unlock()
		dc.OnOpen(func() {
			c.mu.Lock()
			c.open[label] = true
			c.mu.Unlock()
		})
		dc.OnMessage(func(m webrtc.DataChannelMessage) {
			c.mu.Lock()
			c.msgs[label] = append(c.msgs[label], m.Data)
			c.mu.Unlock()
		})
	})
	var specs []sfu.DataChannelSpec
	for _, l := range o.labels {
		spec := sfu.DataChannelSpec{Label: l}
		switch {
		case strings.HasSuffix(l, "+hdr"):
			spec.SenderIDHeader = true
		case strings.HasSuffix(l, "+recvonly"):
			spec.Direction = "recvonly"
		}
		specs = append(specs, spec)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := s.Join(ctx, sfu.JoinRequest{
		ChannelID: o.channel, ConnectionID: o.id, Role: o.role, Audio: o.audio, Video: o.video, DataChannels: specs,
		Simulcast: o.simulcast, SimulcastRid: o.rid,
		Hooks: sfu.ConnectionHooks{
			SimulcastSwitched: func(ev sfu.SimulcastSwitch) {
				c.mu.Lock()
				c.switches = append(c.switches, ev)
				c.mu.Unlock()
			},
			ReOffer: func(offer string) {
				c.mu.Lock()
				c.reoffers = append(c.reoffers, offer)
				c.mu.Unlock()
				if o.onReoffer != nil {
					o.onReoffer(c, offer)
					return
				}
				answer, err := c.answer(offer)
				if err == nil {
					err = c.conn.SetAnswer(answer)
				}
				if err == nil {
					c.mu.Lock()
					c.answered++
					c.mu.Unlock()
				}
				// Errors during teardown (either side closing) are expected.
				if err != nil && !errors.Is(err, net.ErrClosed) && c.pc.ConnectionState() != webrtc.PeerConnectionStateClosed && c.conn.Err() == nil {
					t.Errorf("client %s: re-answer: %v", o.id, err)
				}
			},
			Event: func(ev sfu.ConnectionEvent) {
				c.mu.Lock()
				c.events = append(c.events, ev)
				c.mu.Unlock()
			},
		},
	})
	if err != nil {
		return nil, err
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
		t.Fatalf("answer: %v", err)
	}
	if err := conn.SetAnswer(answer); err != nil {
		t.Fatalf("set answer: %v", err)
	}
	return c, nil
}

// answer does what the SDK does: SRD, addTrack, createAnswer, SLD.
func (c *testClient) answer(offer string) (string, error) {
	if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", err
	}
	if c.audio != nil && c.senderOf(c.audio) == nil {
		if _, err := c.pc.AddTrack(c.audio); err != nil {
			return "", err
		}
	}
	if c.video != nil && c.senderOf(c.video) == nil {
		s, err := c.pc.AddTrack(c.video)
		if err != nil {
			return "", err
		}
		c.videoSender = s
		go func() {
			for {
				pkts, _, err := s.ReadRTCP()
				if err != nil {
					return
				}
				for _, p := range pkts {
					switch p := p.(type) {
					case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
						c.plis.Add(1)
					case *rtcp.TransportLayerNack:
						c.nacks.Add(1)
					case *rtcp.ReceiverReport:
						c.rrs.Add(1)
						for _, r := range p.Reports {
							if enc := s.GetParameters().Encodings; len(enc) > 0 && r.SSRC == uint32(enc[0].SSRC) {
								c.lastRR.Store(&r)
							}
						}
					case *rtcp.TransportLayerCC:
						c.tccs.Add(1)
					}
				}
			}
		}()
	}
	if c.layers != nil && c.senderOf(c.layers[0]) == nil {
		if err := c.addLayers(); err != nil {
			return "", err
		}
	}
	answer, err := c.pc.CreateAnswer(nil)
	if err != nil {
		return "", err
	}
	if err := c.pc.SetLocalDescription(answer); err != nil {
		return "", err
	}
	if c.layers != nil {
		return dropRecvSimulcast(answer.SDP), nil
	}
	return answer.SDP, nil
}

func (c *testClient) senderOf(t webrtc.TrackLocal) *webrtc.RTPSender {
	for _, s := range c.pc.GetSenders() {
		if s.Track() == t {
			return s
		}
	}
	return nil
}

// writeVideo sends n VP8-typed packets whose payloads are tag, seq.
func (c *testClient) writeVideo(t testing.TB, tag byte, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		p := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(i), Timestamp: uint32(i) * 3000, SSRC: 1}, Payload: []byte{tag, byte(i >> 8), byte(i)}}
		if err := c.video.WriteRTP(p); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
}

// writeVideoUntil writes batches of n video packets tagged tag, numbered on
// from one batch to the next, until done reports true (the first packets
// may go before a subscriber's SRTP is up).
func (c *testClient) writeVideoUntil(t testing.TB, tag byte, n int, done func() bool, msg string, args ...any) {
	t.Helper()
	seq := 0
	testutil.Eventually(t, func() bool {
		c.writeVideo(t, tag, seq, n)
		seq += n
		return done()
	}, wait, msg, args...)
}

// pump writes video packets every 5 ms until the test ends.
func (c *testClient) pump(t testing.TB, tag byte) {
	every(t, 5*time.Millisecond, func(i int) {
		p := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(i), Timestamp: uint32(i) * 3000, SSRC: 1}, Payload: []byte{tag, byte(i >> 8), byte(i)}}
		_ = c.video.WriteRTP(p)
	})
}

// pumpAudio writes Opus-typed packets every 20 ms until the test ends.
func (c *testClient) pumpAudio(t testing.TB) {
	every(t, 20*time.Millisecond, func(i int) {
		p := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: uint16(i), Timestamp: uint32(i) * 960, SSRC: 2}, Payload: []byte{0xA0, byte(i >> 8), byte(i)}}
		_ = c.audio.WriteRTP(p)
	})
}

// every calls fn(0), fn(1), ... at period d on a goroutine that the test's
// cleanup ends and waits for.
func every(t testing.TB, d time.Duration, fn func(i int)) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			case <-time.After(d):
			}
			fn(i)
		}
	}()
	t.Cleanup(func() { close(done); wg.Wait() })
}

func (c *testClient) payloads(key string) [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.received[key]...)
}

func (c *testClient) messages(label string) [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.msgs[label]...)
}

func (c *testClient) lastReoffer() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.reoffers) == 0 {
		return ""
	}
	return c.reoffers[len(c.reoffers)-1]
}

// lastOffer returns the last re-offer, or the initial offer if none came.
func (c *testClient) lastOffer() string {
	if o := c.lastReoffer(); o != "" {
		return o
	}
	return c.conn.Offer().SDP
}

// settled reports whether the server took the answer to every re-offer.
func (c *testClient) settled() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.answered == len(c.reoffers)
}

func (c *testClient) isOpen(label string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.open[label]
}

func (c *testClient) dc(label string) *webrtc.DataChannel {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dcs[label]
}

// midOf returns the mid of the m-line whose a=msid names stream, or "".
func midOf(sdpText, stream string) string {
	for _, sec := range strings.Split(sdpText, "\r\nm=")[1:] {
		if strings.Contains(sec, "a=msid:"+stream+" ") {
			return attr(sec, "mid")
		}
	}
	return ""
}

// directionOf returns the direction of the m-line with this mid.
func directionOf(sdpText, mid string) string {
	for _, sec := range strings.Split(sdpText, "\r\nm=")[1:] {
		if attr(sec, "mid") != mid {
			continue
		}
		// The split took the CRLF that ends a section's last line.
		sec += "\r\n"
		for _, d := range []string{"sendrecv", "sendonly", "recvonly", "inactive"} {
			if strings.Contains(sec, "\r\na="+d+"\r\n") {
				return d
			}
		}
	}
	return ""
}

func attr(sec, name string) string {
	for _, l := range strings.Split(sec, "\r\n") {
		if v, ok := strings.CutPrefix(l, "a="+name+":"); ok {
			return v
		}
	}
	return ""
}

func countMlines(sdpText string) int { return strings.Count(sdpText, "\r\nm=") }

func newSFU(t testing.TB, mutate func(*sfu.Config)) *sfu.SFU {
	t.Helper()
	cfg := sfu.LocalConfig(testutil.LoggerLevel(t, testLogLevel))
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := sfu.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// testLogLevel is slog.LevelError unless SFU_TEST_DEBUG is set.
var testLogLevel = func() slog.Level {
	if os.Getenv("SFU_TEST_DEBUG") != "" {
		return slog.LevelDebug
	}
	return slog.LevelError
}()

var vp8 = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}

// channel returns the channel id of s.
func channel(t testing.TB, s *sfu.SFU, id string) *sfu.Channel {
	t.Helper()
	ch, err := s.Channel(id)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// remoteSSRC writes small packets into w until sub receives the track key
// ("streamID/id"), and returns the SSRC sub sees it on: what sub's PLIs
// must name to reach the server's sender.
func remoteSSRC(t testing.TB, w *sfu.TrackWriter, sub *testClient, key string) uint32 {
	t.Helper()
	writeUntil(t, w, 3, []byte{1}, func() bool { return len(sub.payloads(key)) > 0 }, "subscriber receives")
	sub.mu.Lock()
	defer sub.mu.Unlock()
	return sub.ssrcs[key]
}

// writeUntil writes packets of ssrc carrying payload into w, five at a
// time with consecutive sequence numbers, until done.
func writeUntil(t testing.TB, w *sfu.TrackWriter, ssrc uint32, payload []byte, done func() bool, what string) {
	t.Helper()
	seq := uint16(0)
	testutil.Eventually(t, func() bool {
		for range 5 {
			p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, SSRC: ssrc}, Payload: payload}
			b, _ := p.Marshal()
			_ = w.WriteRTP(b)
			seq++
		}
		return done()
	}, wait, "%s", what)
}

// addRemoteVideo adds a remote VP8 track id, published by the connection
// streamID of another node, to ch; the track is removed when the test ends.
func addRemoteVideo(t testing.TB, ch *sfu.Channel, id, streamID string, kr sfu.KeyframeRequester) *sfu.TrackWriter {
	t.Helper()
	w, err := ch.AddRemoteTrack(sfu.TrackInfo{ID: id, StreamID: streamID, Kind: webrtc.RTPCodecTypeVideo, Codec: vp8}, kr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	return w
}

// barePeer returns a pion peer with no track that answers nothing by
// itself, closed when the test ends.
func barePeer(t testing.TB) *webrtc.PeerConnection {
	t.Helper()
	pc, err := sharedClientAPI.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	return pc
}

// answerOffer has pc take offer and returns its answer.
func answerOffer(t testing.TB, pc *webrtc.PeerConnection, offer string) string {
	t.Helper()
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		t.Fatal(err)
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SetLocalDescription(answer); err != nil {
		t.Fatal(err)
	}
	return answer.SDP
}

// sendOnOpen has pc send text on the data channel label once the server
// has opened it.
func sendOnOpen(pc *webrtc.PeerConnection, label, text string) {
	pc.OnDataChannel(func(dc *webrtc.DataChannel) {
		if dc.Label() == label {
			dc.OnOpen(func() { _ = dc.SendText(text) })
		}
	})
}
