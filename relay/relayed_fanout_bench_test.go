package relay

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"
	"github.com/pion/webrtc/v4"

	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/sfu"
)

// BenchmarkRelayedFanOut: a node receiving 50 relayed tracks fans them
// out with its real SFU. Node A relays 50 video tracks to node B over a
// real link on loopback; B is an sfu.SFU behind NewSFULocal with three
// recvonly pion subscribers, each receiving all 50 tracks, so every
// relayed packet is written three times over DTLS-SRTP from B's UDP mux.
// The SFU's congestion control is off and the subscribers have no
// interceptors (no NACKs, no reports): what is measured is the fan-out.
// Run at one and two processors, with three ways of dispatching B's
// remote tracks: per-track (each has its queue and goroutine, and at most
// as many fan-outs as processors, at least two, run at once: the relay
// now), per-track-unlimited (the same with no limit: the relay before)
// and, as the baseline, inline (every track's fan-out on the receive
// goroutine, as before per-track dispatch; Config.inlineDispatch):
//
//	go test -run '^$' -bench RelayedFanOut -benchtime 60000x -cpu 1,2 -count 3 ./relay/
//
// b.N is the number of relayed packets (spread over the 50 tracks). Each
// of A's 50 senders keeps at most 16 packets in flight (counted when B's
// SFU has taken them), so the rate is what B sustains. Metrics:
//
//   - pkts/s: packets the subscribers received (wall clock), b.N×3 when
//     nothing is lost;
//   - cores: the process's CPU time over wall time (both nodes and the
//     in-process subscribers): how many cores the run kept busy;
//   - cpu0-%, cpu1-%: each core's busy share over the run, from
//     /proc/stat (the whole machine, other processes included);
//   - parallel-%: the share of B's fan-outs (sfu.TrackWriter.WriteRTP)
//     that started while another track's was running; two-cores-%: those
//     that started on one processor (getcpu) while a fan-out that had
//     started on the other was running (processors 0 and 1 only);
//   - fanouts/core-s: B's fan-outs per second of the process's CPU time,
//     the cost, which the machine's other load moves less than the rates;
//   - loss-%: packets the subscribers did not get.
//
// The subscribers' SRTP decryption runs in the same process, at the same
// GOMAXPROCS, in goroutines of their own (pion's): that part spreads over
// the cores whatever the relay does, so the baseline too gains from a
// second core; the differences between the three are the relay's
// dispatch. Subscribers' sockets get 4 MiB receive buffers (bigBufferNet).
func BenchmarkRelayedFanOut(b *testing.B) {
	for _, mode := range []string{"per-track", "per-track-unlimited", "inline"} {
		b.Run("dispatch="+mode, func(b *testing.B) {
			benchRelayedFanOut(b, func(c *Config) {
				c.inlineDispatch = mode == "inline"
				if mode == "per-track-unlimited" {
					c.fanOutSlots = -1
				}
			})
		})
	}
}

const (
	fanOutTracks = 50
	fanOutSubs   = 3
)

func benchRelayedFanOut(b *testing.B, mod func(*Config)) {
	a := startNode(b, "a", testKey)
	log := testutil.LoggerLevel(b, slogLevel())
	scfg := sfu.LocalConfig(log)
	// Off: the estimator would hold each subscriber to its estimate,
	// and what is measured here is the fan-out's work.
	scfg.DisableCongestionControl = true
	s, err := sfu.New(scfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	counting := &countingLocal{Local: NewSFULocal(s, log), per: map[string]*trackCount{}}
	ip := testutil.LoopbackIP(b)
	cfg := FastConfig(Config{
		NodeName:   "b@" + ip.String(),
		ClusterKey: testKey,
		ListenAddr: netip.AddrPortFrom(ip, uint16(testutil.FreePort(b, ip))),
		Local:      counting,
		Logger:     log,
	})
	mod(&cfg)
	rb, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	runRelay(b, rb)
	if err := a.SetPeer(cfg.NodeName, rb.Addr()); err != nil {
		b.Fatal(err)
	}
	if err := rb.SetPeer(a.name, a.Addr()); err != nil {
		b.Fatal(err)
	}
	if err := a.OpenChannel("room", cfg.NodeName); err != nil {
		b.Fatal(err)
	}
	lts := make([]*LocalTrack, fanOutTracks)
	for i := range lts {
		info := video
		info.ID, info.StreamID = fmt.Sprintf("t%d", i), fmt.Sprintf("s%d", i)
		if lts[i], err = a.AddLocalTrack("room", info, nil); err != nil {
			b.Fatal(err)
		}
	}
	testutil.Eventually(b, func() bool { return counting.tracks() == fanOutTracks }, 20*time.Second, "B has the %d tracks (%d; link %+v)", fanOutTracks, counting.tracks(), a.Stats().Links)
	subs := make([]*fanOutSub, fanOutSubs)
	for i := range subs {
		subs[i] = joinFanOutSub(b, s, fmt.Sprintf("sub%d", i))
	}
	// VP8: a keyframe's first packet until every subscriber gets every
	// track, then packets in the middle of a frame (the SFU paces a
	// keyframe's packets).
	payload := make([]byte, benchPayloadLen)
	payload[0], payload[1] = 0x10, 0x00 // start of partition, keyframe
	warm := uint16(0)
	testutil.Eventually(b, func() bool {
		warm++
		for _, lt := range lts {
			_ = lt.WriteRTP(rtpPacket(warm, payload))
		}
		time.Sleep(10 * time.Millisecond)
		for _, c := range subs {
			if c.streams() < fanOutTracks {
				return false
			}
		}
		return true
	}, 30*time.Second, "every subscriber gets every track (%d, %d, %d of %d)", subs[0].streams(), subs[1].streams(), subs[2].streams(), fanOutTracks)
	payload[0], payload[1] = 0x00, 0x01
	time.Sleep(100 * time.Millisecond)
	var got0 int64
	for _, c := range subs {
		got0 += c.n.Load()
	}
	counting.reset()

	b.SetBytes(benchPayloadLen)
	b.ReportAllocs()
	cores0 := procStat()
	start := cpuTime()
	b.ResetTimer()
	var wg sync.WaitGroup
	var timeouts atomic.Int64
	for i, lt := range lts {
		done := counting.count(lt.info.ID)
		wg.Add(1)
		go func() {
			defer wg.Done()
			pkt := rtpPacket(0, payload)
			sent := int64(0)
			for j := i; j < b.N; j += fanOutTracks {
				if sent-done.n.Load() >= 16 {
					t := time.NewTimer(50 * time.Millisecond)
				wait:
					for sent-done.n.Load() >= 16 {
						select {
						case <-done.kick:
						case <-t.C:
							timeouts.Add(1)
							break wait
						}
					}
					t.Stop()
				}
				binary.BigEndian.PutUint16(pkt[2:], warm+uint16(1+j/fanOutTracks))
				for errors.Is(lt.WriteRTP(pkt), errQueueFull) {
					runtime.Gosched()
				}
				sent++
			}
		}()
	}
	wg.Wait()
	want := int64(b.N) * fanOutSubs
	delivered := func() int64 {
		var n int64
		for _, c := range subs {
			n += c.n.Load()
		}
		return n - got0
	}
	for deadline := time.Now().Add(2 * time.Second); delivered() < want && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	cpu := cpuTime() - start
	cores1 := procStat()
	got := delivered()
	wall := b.Elapsed().Seconds()
	b.ReportMetric(float64(got)/wall, "pkts/s")
	b.ReportMetric(cpu.Seconds()/wall, "cores")
	b.ReportMetric(float64(counting.calls.Load())/wall, "fanouts/s")
	for i := range min(len(cores0), len(cores1), 2) {
		busy, total := cores1[i].busy-cores0[i].busy, cores1[i].total-cores0[i].total
		if total > 0 {
			b.ReportMetric(100*float64(busy)/float64(total), fmt.Sprintf("cpu%d-%%", i))
		}
	}
	b.ReportMetric(100*float64(counting.overlapped.Load())/float64(max(counting.calls.Load(), 1)), "parallel-%")
	b.ReportMetric(100*float64(counting.twoCores.Load())/float64(max(counting.calls.Load(), 1)), "two-cores-%")
	b.ReportMetric(float64(counting.calls.Load())/cpu.Seconds(), "fanouts/core-s")
	b.ReportMetric(100*float64(want-min(got, want))/float64(want), "loss-%")
	b.Logf("senders' waits that timed out: %d; sfu drops %+v; relay drops %+v", timeouts.Load(), s.Drops(), rb.Stats().Drops)
	b.ReportMetric(0, "ns/op") // mixes b.N's packets with their fan-out; pkts/s is the rate
}

// countingLocal wraps a Local: the TrackWriters of its sinks count the
// packets of each track and the fan-outs that ran beside another.
type countingLocal struct {
	Local
	calls, active, overlapped atomic.Int64
	// on counts the fan-outs running now that started on processor 0 and
	// 1; twoCores, those that started while one that had started on the
	// other was running.
	on       [2]atomic.Int64
	twoCores atomic.Int64

	mu  sync.Mutex
	per map[string]*trackCount
}

// trackCount counts a track's packets that B's SFU took; kick wakes its
// sender.
type trackCount struct {
	n    atomic.Int64
	kick chan struct{}
}

func (c *countingLocal) RelayChannel(r *Relay, channel string) (ChannelSink, error) {
	s, err := c.Local.RelayChannel(r, channel)
	if err != nil {
		return nil, err
	}
	return &countingSink{ChannelSink: s, c: c}, nil
}

func (c *countingLocal) count(track string) *trackCount {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.per[track]
}

func (c *countingLocal) tracks() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.per)
}

func (c *countingLocal) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.per {
		n.n.Store(0)
	}
	c.calls.Store(0)
	c.overlapped.Store(0)
	c.twoCores.Store(0)
}

type countingSink struct {
	ChannelSink
	c *countingLocal
}

func (s *countingSink) AddRemoteTrack(from string, info TrackInfo, kf KeyframeRequester) (TrackWriter, error) {
	w, err := s.ChannelSink.AddRemoteTrack(from, info, kf)
	if err != nil {
		return nil, err
	}
	n := &trackCount{kick: make(chan struct{}, 1)}
	s.c.mu.Lock()
	s.c.per[info.ID] = n
	s.c.mu.Unlock()
	return &countingWriter{TrackWriter: w, c: s.c, n: n}, nil
}

type countingWriter struct {
	TrackWriter
	c *countingLocal
	n *trackCount
}

func (w *countingWriter) WriteRTP(pkt []byte) error {
	c := w.c
	c.calls.Add(1)
	if c.active.Add(1) > 1 {
		c.overlapped.Add(1)
	}
	cpu := currentCPU()
	if cpu >= 0 && cpu < len(c.on) {
		if c.on[cpu].Add(1); c.on[cpu^1].Load() > 0 {
			c.twoCores.Add(1)
		}
	}
	err := w.TrackWriter.WriteRTP(pkt)
	if cpu >= 0 && cpu < len(c.on) {
		c.on[cpu].Add(-1)
	}
	c.active.Add(-1)
	w.n.n.Add(1)
	select {
	case w.n.kick <- struct{}{}:
	default:
	}
	return err
}

// fanOutSub is a recvonly pion subscriber that counts what it receives.
type fanOutSub struct {
	pc   *webrtc.PeerConnection
	conn *sfu.Connection
	n    atomic.Int64

	mu   sync.Mutex
	seen map[string]bool // stream ids with packets
}

func (c *fanOutSub) streams() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

// bigBufferNet is the host's network with 4 MiB socket receive buffers
// (as much as the system allows): with the default, a subscriber's socket
// overflows in the bursts of a saturating run, and what is measured is its
// losses and their NACKs.
type bigBufferNet struct{ *stdnet.Net }

func (n bigBufferNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.Net.ListenUDP(network, laddr)
	if err == nil {
		_ = c.SetReadBuffer(4 << 20)
	}
	return c, err
}

// fanOutAPI is the subscribers' API: no interceptors (no NACKs, no
// reports), so that they cost the process little besides SRTP.
var fanOutAPI = sync.OnceValue(func() *webrtc.API {
	n, err := stdnet.NewNet()
	if err != nil {
		panic(err)
	}
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		panic(err)
	}
	se := webrtc.SettingEngine{}
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetNet(bigBufferNet{n})
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se))
})

func joinFanOutSub(b *testing.B, s *sfu.SFU, id string) *fanOutSub {
	pc, err := fanOutAPI().NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = pc.Close() })
	c := &fanOutSub{pc: pc, seen: map[string]bool{}}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		buf := make([]byte, 1500)
		first := true
		for {
			if _, _, err := tr.Read(buf); err != nil {
				return
			}
			if first {
				first = false
				c.mu.Lock()
				c.seen[tr.StreamID()] = true
				c.mu.Unlock()
			}
			c.n.Add(1)
		}
	})
	answer := func(offer string) (string, error) {
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
			return "", err
		}
		a, err := pc.CreateAnswer(nil)
		if err != nil {
			return "", err
		}
		if err := pc.SetLocalDescription(a); err != nil {
			return "", err
		}
		return a.SDP, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := s.Join(ctx, sfu.JoinRequest{
		ChannelID: "room", ConnectionID: id, Role: sfu.RoleRecvonly,
		Hooks: sfu.ConnectionHooks{ReOffer: func(offer string) {
			if a, err := answer(offer); err == nil {
				_ = c.conn.SetAnswer(a)
			}
		}},
	})
	if err != nil {
		b.Fatal(err)
	}
	c.conn = conn
	b.Cleanup(func() { _ = conn.Close() })
	pc.OnICECandidate(func(cand *webrtc.ICECandidate) {
		if cand != nil {
			_ = conn.AddICECandidate(cand.ToJSON())
		}
	})
	a, err := answer(conn.Offer().SDP)
	if err != nil {
		b.Fatal(err)
	}
	if err := conn.SetAnswer(a); err != nil {
		b.Fatal(err)
	}
	waitFor(b, func() bool { return pc.ConnectionState() == webrtc.PeerConnectionStateConnected })
	return c
}

// coreTicks is one core's line of /proc/stat: busy and total ticks.
type coreTicks struct{ busy, total uint64 }

// procStat reads each core's ticks from /proc/stat; nil where there is
// none.
func procStat() []coreTicks {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []coreTicks
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || !strings.HasPrefix(fields[0], "cpu") || fields[0] == "cpu" {
			continue
		}
		var t coreTicks
		for i, v := range fields[1:] {
			n, _ := strconv.ParseUint(v, 10, 64)
			if i < 8 { // user nice system idle iowait irq softirq steal
				t.total += n
				if i != 3 && i != 4 {
					t.busy += n
				}
			}
		}
		out = append(out, t)
	}
	return out
}
