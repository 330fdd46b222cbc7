package sfu_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/internal/testutil/pionapi"
	"github.com/shoal-sfu/shoal/sfu"
)

// BenchmarkVideoSubscriberHeap reports the server's heap per video
// subscriber while media flows: b.N recvonly subscribers of one video
// track, their pion clients in a child process (so that only the server's
// heap is measured), the heap measured with the connections up and idle,
// then again after 3000 packets of 1000 bytes (more than any
// retransmission buffer holds) reached them all. The difference, divided
// by b.N, is what a subscriber's video costs the server: its sender and
// SRTP, its retransmission state and its share of the source's buffer.
// heap-B counts live objects (HeapAlloc), inuse-B whole spans (HeapInuse,
// as BenchmarkIdleConnection).
//
// With mux=true the node has one UDP port and the subscribers are served
// by the direct send path, each connection with its own pion API and SRTP
// context, as in production.
//
//	go test -run XXX -bench VideoSubscriberHeap -benchtime 20x -count 3 ./sfu/
func BenchmarkVideoSubscriberHeap(b *testing.B) {
	b.Run("mux=false", func(b *testing.B) { videoSubscriberHeap(b, newSFU(b, nil)) })
	b.Run("mux=true", func(b *testing.B) {
		s := muxSFU(b, nil)
		videoSubscriberHeap(b, s)
		if st := s.MuxStats(); st.DirectConns < uint64(b.N) {
			b.Fatalf("%d of %d subscribers on the direct path: %+v", st.DirectConns, b.N, st)
		}
	})
}

func videoSubscriberHeap(b *testing.B, s *sfu.SFU) {
	cl := startClientProcess(b)
	for i := 0; i < b.N; i++ {
		cl.join(b, s, "heap", fmt.Sprintf("S%d", i))
	}
	testutil.Eventually(b, func() bool { return cl.count("connected") == b.N }, 30*time.Second, "clients connected")
	ch := channel(b, s, "heap")
	before, beforeInUse := liveHeap(), heapInUse()
	heapProfile(b, "before")
	w := addRemoteVideo(b, ch, "v", "PUB", nil)
	pkt := benchPacket()
	seq := 0
	write := func() {
		pkt[2], pkt[3] = byte(seq>>8), byte(seq)
		ts := uint32(seq/4) * 3000
		pkt[4], pkt[5], pkt[6], pkt[7] = byte(ts>>24), byte(ts>>16), byte(ts>>8), byte(ts)
		seq++
		_ = w.WriteRTP(pkt)
	}
	testutil.Eventually(b, func() bool { write(); return cl.count("track") == b.N }, 30*time.Second, "clients receive")
	for i := 0; i < 3000; i++ {
		write()
		time.Sleep(time.Millisecond) // about 1000 packets/s, 8 Mbit/s
	}
	after, afterInUse := liveHeap(), heapInUse()
	heapProfile(b, "after")
	b.ReportMetric(float64(after-before)/float64(b.N), "heap-B/video-sub")
	b.ReportMetric(float64(afterInUse-beforeInUse)/float64(b.N), "inuse-B/video-sub")
	b.ReportMetric(0, "ns/op")
}

// heapProfile writes a heap profile to $SFU_HEAP_PROFILE.name when that
// is set: compare the two of BenchmarkVideoSubscriberHeap with
// go tool pprof -base $SFU_HEAP_PROFILE.before $SFU_HEAP_PROFILE.after.
func heapProfile(tb testing.TB, name string) {
	path := os.Getenv("SFU_HEAP_PROFILE")
	if path == "" {
		return
	}
	f, err := os.Create(path + "." + name)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if err := pprof.WriteHeapProfile(f); err != nil {
		tb.Fatal(err)
	}
}

// liveHeap returns the bytes of live heap objects (HeapAlloc after GC);
// heapInUse counts whole spans in use, free slots included.
func liveHeap() int64 {
	time.Sleep(200 * time.Millisecond)
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// clientProcess runs pion clients in a child process (this test binary,
// running TestClientProcess), driven over its stdin and stdout by lines of
// JSON: {"id","offer"} in, {"id","answer"} and {"id","event"} out.
type clientProcess struct {
	enc   *json.Encoder
	encMu sync.Mutex
	mu    sync.Mutex
	conns map[string]*sfu.Connection
	seen  map[string]int // event -> clients that reported it
}

type clientMsg struct {
	ID     string `json:"id"`
	Offer  string `json:"offer,omitempty"`
	Answer string `json:"answer,omitempty"`
	Event  string `json:"event,omitempty"`
}

func startClientProcess(tb testing.TB) *clientProcess {
	cmd := exec.Command(os.Args[0], "-test.run", "^TestClientProcess$", "-test.count", "1")
	cmd.Env = append(os.Environ(), "SFU_CLIENT_PROCESS=1")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = in.Close(); _ = cmd.Wait() })
	p := &clientProcess{enc: json.NewEncoder(in), conns: map[string]*sfu.Connection{}, seen: map[string]int{}}
	go func() {
		dec := json.NewDecoder(out)
		for {
			var m clientMsg
			if err := dec.Decode(&m); err != nil {
				return
			}
			p.mu.Lock()
			c := p.conns[m.ID]
			if m.Event != "" {
				p.seen[m.Event]++
			}
			p.mu.Unlock()
			if m.Answer != "" && c != nil {
				_ = c.SetAnswer(m.Answer)
			}
		}
	}()
	return p
}

func (p *clientProcess) send(m clientMsg) {
	p.encMu.Lock()
	defer p.encMu.Unlock()
	_ = p.enc.Encode(m)
}

func (p *clientProcess) count(event string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen[event]
}

// join joins a recvonly connection answered by a client of the process.
func (p *clientProcess) join(tb testing.TB, s *sfu.SFU, channel, id string) {
	conn, err := s.Join(testutil.Context(tb, 10*time.Second), sfu.JoinRequest{ChannelID: channel, ConnectionID: id, Role: sfu.RoleRecvonly,
		Hooks: sfu.ConnectionHooks{ReOffer: func(sdp string) { p.send(clientMsg{ID: id, Offer: sdp}) }}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	p.mu.Lock()
	p.conns[id] = conn
	p.mu.Unlock()
	p.send(clientMsg{ID: id, Offer: conn.Offer().SDP})
}

// TestClientProcess is the child of startClientProcess; it does nothing
// in a normal test run.
func TestClientProcess(t *testing.T) {
	if os.Getenv("SFU_CLIENT_PROCESS") == "" {
		t.Skip("run by startClientProcess")
	}
	enc := json.NewEncoder(os.Stdout)
	var encMu sync.Mutex
	send := func(m clientMsg) {
		encMu.Lock()
		defer encMu.Unlock()
		_ = enc.Encode(m)
	}
	pcs := map[string]*webrtc.PeerConnection{}
	dec := json.NewDecoder(os.Stdin)
	for {
		var m clientMsg
		if err := dec.Decode(&m); err != nil {
			break
		}
		pc := pcs[m.ID]
		if pc == nil {
			var err error
			if pc, err = sharedClientAPI.NewPeerConnection(webrtc.Configuration{}); err != nil {
				t.Fatal(err)
			}
			pcs[m.ID] = pc
			id := m.ID
			pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
				if st == webrtc.PeerConnectionStateConnected {
					send(clientMsg{ID: id, Event: "connected"})
				}
			})
			pc.OnTrack(func(tr *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
				go func() {
					for {
						if _, _, err := r.ReadRTCP(); err != nil {
							return
						}
					}
				}()
				buf := make([]byte, 1500)
				first := true
				for {
					if _, _, err := tr.Read(buf); err != nil {
						return
					}
					if first {
						first = false
						send(clientMsg{ID: id, Event: "track"})
					}
				}
			})
		}
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: m.Offer}); err != nil {
			t.Fatal(err)
		}
		answer, err := pc.CreateAnswer(nil)
		if err != nil {
			t.Fatal(err)
		}
		gathered := webrtc.GatheringCompletePromise(pc)
		if err := pc.SetLocalDescription(answer); err != nil {
			t.Fatal(err)
		}
		<-gathered
		send(clientMsg{ID: m.ID, Answer: pc.LocalDescription().SDP})
	}
	for _, pc := range pcs {
		_ = pc.Close()
	}
}

// TestNACKSharedRTXAndPlain: two subscribers of one relayed video track,
// one whose client negotiates RTX (pion's defaults) and one whose client
// has no RTX codec, say they lost the same packet: each gets it again, as
// RTX or as the packet itself, and its stats say so.
func TestNACKSharedRTXAndPlain(t *testing.T) {
	testutil.CheckLeaks(t)
	s := newSFU(t, nil)
	noReplay := func(se *webrtc.SettingEngine) { se.DisableSRTPReplayProtection(true) }
	subs := []*testClient{
		join(t, s, clientOpts{channel: "rtx", id: "RTX", role: sfu.RoleRecvonly, api: pionapi.Local(noReplay)}),
		join(t, s, clientOpts{channel: "rtx", id: "PLAIN", role: sfu.RoleRecvonly, api: vp8OnlyAPI(t, noReplay)}),
	}
	w := addRemoteVideo(t, channel(t, s, "rtx"), "v", "FAR", nil)
	seq := uint16(0)
	send := func() {
		p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: uint32(seq) * 3000, SSRC: 9}, Payload: []byte{0xEE, byte(seq >> 8), byte(seq)}}
		b, _ := p.Marshal()
		_ = w.WriteRTP(b)
		seq++
	}
	testutil.Eventually(t, func() bool {
		send()
		return len(subs[0].payloads("FAR/v")) >= 5 && len(subs[1].payloads("FAR/v")) >= 5
	}, wait, "subscribers receive")
	lost := seq - 2
	for i, sub := range subs {
		sub.mu.Lock()
		ssrc := sub.ssrcs["FAR/v"]
		sub.mu.Unlock()
		testutil.Eventually(t, func() bool {
			send() // pion hands an RTX packet to the reader along with the next one
			_ = sub.pc.WriteRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{MediaSSRC: ssrc, Nacks: []rtcp.NackPair{{PacketID: lost}}}})
			n := 0
			for _, p := range sub.payloads("FAR/v") {
				if uint16(p[1])<<8|uint16(p[2]) == lost {
					n++
				}
			}
			return n >= 2
		}, wait, "subscriber %d gets packet %d again", i, lost)
		st := sub.conn.Stats()
		if len(st.Outbound) != 1 {
			t.Fatalf("subscriber %d: %d outbound tracks", i, len(st.Outbound))
		}
		o := st.Outbound[0]
		if o.RTX != (i == 0) || o.Retransmitted == 0 || o.NACKs == 0 || o.TrackID != "v" || o.StreamID != "FAR" || o.SSRC != ssrc {
			t.Errorf("subscriber %d: %+v", i, o)
		}
	}
}

// TestStats: a publisher's inbound track and a subscriber's outbound one
// count what went through, and the subscriber's receiver reports give its
// round-trip time.
func TestStats(t *testing.T) {
	s := newSFU(t, nil)
	pub := join(t, s, clientOpts{channel: "stats", id: "PUB", role: sfu.RoleSendonly, video: true})
	sub := join(t, s, clientOpts{channel: "stats", id: "SUB", role: sfu.RoleRecvonly})
	pub.pump(t, 1)
	// A pion client's interceptors see the server's sender reports (and
	// put their time in the receiver reports) only if it reads RTCP.
	reading := map[*webrtc.RTPReceiver]bool{}
	testutil.Eventually(t, func() bool {
		for _, r := range sub.pc.GetReceivers() {
			if r.Track() != nil && !reading[r] {
				reading[r] = true
				go func() {
					for {
						if _, _, err := r.ReadRTCP(); err != nil {
							return
						}
					}
				}()
			}
		}
		st := sub.conn.Stats()
		return len(st.Outbound) == 1 && st.Outbound[0].Packets >= 50 && st.Outbound[0].RTT > 0
	}, 3*wait, "subscriber's track forwarded, with an RTT")
	ps := pub.conn.Stats()
	if len(ps.Inbound) != 1 || len(ps.Outbound) != 0 {
		t.Fatalf("publisher: %+v", ps)
	}
	in := ps.Inbound[0]
	if in.TrackID != "PUB-video" || in.MimeType != webrtc.MimeTypeVP8 || in.Packets < 50 || in.Bytes != 3*in.Packets || in.SSRC == 0 || in.PacketsLost != 0 || in.Layer != "" {
		t.Errorf("publisher's inbound track: %+v", in)
	}
	if ps.PacketsReceived != in.Packets || ps.RTT <= 0 {
		t.Errorf("publisher: received %d, RTT %v", ps.PacketsReceived, ps.RTT)
	}
	ss := sub.conn.Stats()
	out := ss.Outbound[0]
	if out.TrackID != "PUB-video" || out.StreamID != "PUB" || out.Bytes != 3*out.Packets || out.SSRC == 0 || out.RTT > time.Second || out.Undecodable {
		t.Errorf("subscriber's outbound track: %+v", out)
	}
	if ss.PacketsSent != out.Packets || ss.BytesSent != out.Bytes || len(ss.Inbound) != 0 {
		t.Errorf("subscriber: %+v", ss)
	}
	all := s.Stats()
	if len(all) != 2 || all[0].ConnectionID != "PUB" || all[1].ConnectionID != "SUB" {
		t.Errorf("SFU.Stats: %d connections", len(all))
	}
}
