package multiclustertest

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	shoal "github.com/shoal-sfu/shoal"
	"github.com/shoal-sfu/shoal/cluster"
	"github.com/shoal-sfu/shoal/cluster/multicluster"
	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/relay"
	"github.com/shoal-sfu/shoal/sfu"
	"github.com/shoal-sfu/shoal/signaling"
	"github.com/shoal-sfu/shoal/signaling/client"
	"github.com/shoal-sfu/shoal/signaling/wire"
)

var mcKey = []byte("multi-cluster-key-0123456789abcd")

// node is one node of a region, with its signaling on an HTTP server.
type node struct {
	*shoal.Node
	url  string
	api  string // admin API, POST /
	stop func()
}

type region struct {
	id    string
	nodes []*node
	names []string
	ips   []netip.Addr
}

func logLevel() slog.Level {
	switch os.Getenv("SHOAL_TEST_LOG") {
	case "":
	case "info":
		return slog.LevelInfo
	default:
		return slog.LevelDebug
	}
	return slog.LevelError
}

// startRegion starts a cluster of three nodes with ClusterID id, its own
// cluster key, multi-cluster on with the shared key and channel ch, and
// initialises it. seeds are gossip addresses of other regions.
func startRegion(t *testing.T, id string, ch multicluster.GossipChannel, seeds []string, set func(*shoal.Config)) *region {
	t.Helper()
	ips := testutil.LoopbackIPs(t, 3)
	port := testutil.FreePort(t, ips[0])
	r := &region{id: id, ips: ips}
	key := []byte(fmt.Sprintf("cluster-key-of-%-17s", id))
	for i, ip := range ips {
		cfg := shoal.DefaultConfig()
		cfg.NodeName = fmt.Sprintf("%s%d@%v", id, i+1, ip)
		cfg.Cluster = true
		cfg.MaxConnections = 20
		cfg.ClusterKey = key
		cfg.ClusterID, cfg.ServiceID = id, "test"
		cfg.ListenMinPort, cfg.ListenMaxPort = port, port+3
		cfg.Timing = testTiming()
		cfg.RelayLink = relay.FastConfig(relay.Config{})
		cfg.RelayLink.LinkTimeout = linkTimeout
		cfg.Authenticator = signaling.AllowAll
		cfg.SFU = sfu.LocalConfig(nil)
		cfg.DefaultAffinity = false
		cfg.Logger = testutil.LoggerLevel(t, logLevel())
		cfg.MultiCluster = shoal.MultiClusterConfig{Key: mcKey, GossipPort: port + 4, RelayPort: port + 5,
			Channels: []multicluster.GossipChannel{ch}, Seeds: seeds, SyncInterval: time.Second, Tick: 100 * time.Millisecond,
			Agent: func(c *multicluster.AgentConfig) { c.Tune = testTune }}
		if i > 0 {
			cfg.MultiCluster.Seeds = append(slices.Clone(seeds), netip.AddrPortFrom(ips[0], uint16(port+4)).String())
		}
		if set != nil {
			set(&cfg)
		}
		r.nodes = append(r.nodes, startNode(t, cfg))
		r.names = append(r.names, cfg.NodeName)
	}
	ctx := testutil.Context(t, 30*time.Second)
	if _, err := r.nodes[0].InitCluster(ctx, r.names); err != nil {
		t.Fatalf("InitCluster %s: %v", id, err)
	}
	for _, n := range r.nodes {
		testutil.Eventually(t, n.Ready, 20*time.Second, "%s ready", n.Name())
	}
	return r
}

// testTiming is cluster.FastTiming with a failure detector that holds
// under CPU starvation. Six nodes and eleven pion clients share one -race
// process here; on two loaded cores it stalls for hundreds of
// milliseconds, and FastTiming's detector (150 ms probe timeout, suspicion
// x2, Lifeguard's awareness capped at x2) then declared live nodes failed
// every second or so: a node seeing two of its cluster failed leaves the
// majority and closes every client (the rule of docs/cluster.md), which
// broke connects, media and messages at random (a1-a3 and b1-b3
// "EventMemberFailed" while all ran). No step here waits on the detector:
// a stopped node leaves (serf leave, Raft leadership transferred) and the
// partition cuts the relay only, so the memberlist LAN profile's probe
// timeout, suspicion and awareness, and Raft's default election timers,
// cost the tests nothing but the first election (about a second).
func testTiming() cluster.Timing {
	t := cluster.FastTiming()
	p := cluster.ProductionTiming()
	t.ProbeInterval, t.ProbeTimeout = p.ProbeInterval, p.ProbeTimeout
	t.SuspicionMult, t.AwarenessMaxMultiplier = p.SuspicionMult, p.AwarenessMaxMultiplier
	t.HeartbeatTimeout, t.ElectionTimeout, t.LeaderLeaseTimeout = p.HeartbeatTimeout, p.ElectionTimeout, p.LeaderLeaseTimeout
	return t
}

// linkTimeout replaces relay.FastConfig's 1 s: a process starved for a
// second (seen at a load average of 8) broke links on read and write
// deadlines, both relays', and reconnected them mid-measurement.
const linkTimeout = 3 * time.Second

// testTune keeps memberlist's LAN failure detection for the gossip
// between the regions (multicluster.StarvedTune), for the reason above.
var testTune = multicluster.StarvedTune

func startNode(t *testing.T, cfg shoal.Config) *node {
	t.Helper()
	nn, _ := cluster.ParseNodeName(cfg.NodeName)
	ln, err := net.Listen("tcp", netip.AddrPortFrom(nn.Addr, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	aln, err := net.Listen("tcp", netip.AddrPortFrom(nn.Addr, 0).String())
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	url := "ws://" + ln.Addr().String() + "/signaling"
	api := "http://" + aln.Addr().String() + "/"
	cfg.ExternalSignalingURL, cfg.ExternalAPIURL = url, api
	n, err := shoal.New(cfg)
	if err != nil {
		ln.Close()
		aln.Close()
		t.Fatal(err)
	}
	srv := &http.Server{Handler: n.SignalingHandler()}
	asrv := &http.Server{Handler: n.AdminHandler()}
	done := make(chan struct{}, 2)
	go func() { srv.Serve(ln); done <- struct{}{} }()
	go func() { asrv.Serve(aln); done <- struct{}{} }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			n.Close()
			srv.Close()
			asrv.Close()
			<-done
			<-done
		})
	}
	t.Cleanup(stop)
	if err := n.Start(testutil.Context(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	return &node{Node: n, url: url, api: api, stop: stop}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// publisher sends a VP8-like RTP stream (1,000-byte payloads every 10 ms)
// and can send "#chat" messages.
type publisher struct {
	c       *client.Conn
	sent    atomic.Uint64
	bytes   atomic.Uint64
	stopped chan struct{}
}

func publish(t *testing.T, url, channel string) *publisher {
	t.Helper()
	api, err := client.LocalAPI(quiet())
	if err != nil {
		t.Fatal(err)
	}
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", "pub")
	if err != nil {
		t.Fatal(err)
	}
	f := false
	c, err := client.Connect(testutil.Context(t, 20*time.Second), client.Config{URLs: []string{url}, ChannelID: channel,
		Role: wire.RoleSendonly, API: api, Audio: &f, Tracks: []webrtc.TrackLocal{track}, Logger: quiet(),
		DataChannels: []wire.DataChannelSpec{{Label: "#chat", Direction: "sendrecv"}}})
	if err != nil {
		t.Fatalf("publisher: %v", err)
	}
	p := &publisher{c: c, stopped: make(chan struct{})}
	done := make(chan struct{})
	go func() {
		defer close(p.stopped)
		payload := make([]byte, 1000)
		payload[0] = 0x10 // VP8 descriptor: start of partition
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			if i%50 == 0 {
				payload[1] = 0x00 // keyframe bit clear in the VP8 header: a keyframe
			} else {
				payload[1] = 0x01
			}
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(i),
				Timestamp: uint32(i * 900), Marker: true}, Payload: payload}
			if err := track.WriteRTP(pkt); err == nil {
				p.sent.Add(1)
				p.bytes.Add(uint64(12 + len(payload)))
			}
		}
	}()
	t.Cleanup(func() {
		close(done)
		<-p.stopped
		c.Close()
	})
	return p
}

// say sends text on "#chat" once the channel is open.
func (p *publisher) say(t *testing.T, text string) {
	t.Helper()
	testutil.Eventually(t, func() bool {
		dc, ok := p.c.DataChannel("#chat")
		return ok && dc.ReadyState() == webrtc.DataChannelStateOpen
	}, 10*time.Second, "publisher's #chat open")
	dc, _ := p.c.DataChannel("#chat")
	if err := dc.SendText(text); err != nil {
		t.Fatal(err)
	}
}

// subscriber counts the RTP packets and "#chat" messages it receives.
type subscriber struct {
	c        *client.Conn
	packets  atomic.Uint64
	last     atomic.Int64 // unix nanos of the last packet
	maxGap   atomic.Int64 // longest silence between packets after gapFrom
	gapFrom  atomic.Int64
	mu       sync.Mutex
	messages []string
}

func subscribe(t *testing.T, url, channel string) *subscriber {
	t.Helper()
	api, err := client.LocalAPI(quiet())
	if err != nil {
		t.Fatal(err)
	}
	s := &subscriber{}
	c, err := client.Connect(testutil.Context(t, 20*time.Second), client.Config{URLs: []string{url}, ChannelID: channel,
		Role: wire.RoleRecvonly, API: api, Logger: quiet(),
		DataChannels: []wire.DataChannelSpec{{Label: "#chat", Direction: "sendrecv"}},
		OnDataChannel: func(dc *webrtc.DataChannel) {
			if dc.Label() == "#chat" {
				dc.OnMessage(func(m webrtc.DataChannelMessage) {
					s.mu.Lock()
					s.messages = append(s.messages, string(m.Data))
					s.mu.Unlock()
				})
			}
		},
		OnTrack: func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
			buf := make([]byte, 1500)
			for {
				if _, _, err := tr.Read(buf); err != nil {
					return
				}
				now := time.Now().UnixNano()
				prev := s.last.Swap(now)
				if gf := s.gapFrom.Load(); gf != 0 {
					if g := now - max(prev, gf); g > s.maxGap.Load() {
						s.maxGap.Store(g)
					}
				}
				s.packets.Add(1)
			}
		},
	})
	if err != nil {
		t.Fatalf("subscriber: %v", err)
	}
	s.c = c
	t.Cleanup(func() { c.Close() })
	return s
}

func (s *subscriber) got(text string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Contains(s.messages, text)
}

// bridgeOf is the node of r that bridges channel (what Bridge decides over
// all three, every node being a gateway).
func (r *region) bridgeOf(channel string) *node {
	b := multicluster.Bridge(channel, r.names)
	return r.nodes[slices.Index(r.names, b)]
}

// channelAvoiding returns a channel id whose bridge in r is not avoid.
func channelAvoiding(r *region, avoid string) string {
	for i := 0; ; i++ {
		ch := fmt.Sprintf("mc-room-%d", i)
		if multicluster.Bridge(ch, r.names) != avoid {
			return ch
		}
	}
}

// interStats sums what the inter-cluster relays of r sent and received
// for channel.
func (r *region) interStats(channel string) (pktsOut, pktsIn, bytesOut, bytesIn uint64) {
	for _, n := range r.nodes {
		if n.Err() != nil {
			continue
		}
		st := n.InterClusterRelay().Stats()
		for _, c := range st.Channels {
			if c.Channel == channel {
				pktsOut += c.PacketsOut
				pktsIn += c.PacketsIn
			}
		}
		for _, l := range st.Links {
			bytesOut += l.BytesOut
			bytesIn += l.BytesIn
		}
	}
	return
}

// interLinks describes the inter-cluster links of the live nodes of rs:
// who to whom, connected or not, and how often they reconnected.
func interLinks(rs ...*region) string {
	var out []string
	for _, r := range rs {
		for _, n := range r.nodes {
			if n.Err() != nil {
				continue
			}
			for _, l := range n.InterClusterRelay().Stats().Links {
				out = append(out, fmt.Sprintf("%s>%s:%t:%d", n.Name(), l.Peer, l.Connected, l.Reconnects))
			}
		}
	}
	slices.Sort(out)
	return fmt.Sprint(out)
}

func TestTwoRegions(t *testing.T) {
	if testing.Short() {
		t.Skip("two clusters of three nodes")
	}
	twoRegions(t, 0)
}

// TestTwoRegionsDelayed is TestTwoRegions with 40 ms each way between the
// regions on the relay (delayNet: this kernel has no netem), a measurement
// run with SHOAL_MC_DELAY=1. It passed without -race; under -race, at a
// load average of 9.5, it failed twice (not every subscriber received
// within 30 s; once a pion client failed to connect): not understood yet,
// so it is not part of the suite.
func TestTwoRegionsDelayed(t *testing.T) {
	if os.Getenv("SHOAL_MC_DELAY") == "" {
		t.Skip("a measurement: set SHOAL_MC_DELAY=1")
	}
	twoRegions(t, 40*time.Millisecond)
}

// twoRegions: media and messages from a publisher in a reach ten
// subscribers in b, each packet crossing once; a's bridge stopped, another
// takes over. delay, when not 0, is added each way between the regions.
func twoRegions(t *testing.T, delay time.Duration) {
	testutil.CheckLeaks(t)
	var set func(*shoal.Config)
	if delay > 0 {
		var mu sync.Mutex
		region := map[netip.Addr]string{}
		dn := &delayNet{inner: relay.NewFaultNet(), d: delay, far: func(x, y netip.Addr) bool {
			mu.Lock()
			defer mu.Unlock()
			return region[x] != "" && region[y] != "" && region[x] != region[y]
		}}
		set = func(c *shoal.Config) {
			nn, _ := cluster.ParseNodeName(c.NodeName)
			mu.Lock()
			region[nn.Addr] = c.ClusterID
			mu.Unlock()
			c.RelayLink.Net = dn
		}
	}
	mem := multicluster.NewMemoryChannel("mem")
	a := startRegion(t, "a", mem, nil, set)
	b := startRegion(t, "b", mem, []string{a.nodes[0].GossipAddr()}, set)
	start := time.Now()
	if _, err := b.nodes[2].SetMultiClusterConfiguration([]string{"a", "b"}, "two regions"); err != nil {
		t.Fatal(err)
	}
	for _, n := range slices.Concat(a.nodes, b.nodes) {
		testutil.Eventually(t, func() bool {
			c, _ := n.GetMultiClusterConfiguration()
			gws, _ := n.ListGateways()
			return c.Has("a") && c.Has("b") && len(gws) == 6
		}, 15*time.Second, "%s knows the configuration and six gateways", n.Name())
	}
	t.Logf("configuration and gateways known everywhere %v after the configuration was set", time.Since(start))

	// The publisher on a node of A that does not bridge the channel.
	channel := channelAvoiding(a, a.names[1])
	pub := publish(t, a.nodes[1].url, channel)
	var subs []*subscriber
	for i := range 10 {
		subs = append(subs, subscribe(t, b.nodes[i%3].url, channel))
	}
	testutil.Eventually(t, func() bool {
		for _, s := range subs {
			if s.packets.Load() < 50 {
				return false
			}
		}
		return true
	}, 30*time.Second, "every subscriber in B receives the publisher's media (%s)", a.nodes[0].Name())
	cc, _ := b.nodes[0].ListChannelClusters(channel)
	if len(cc) != 2 {
		t.Fatalf("ListChannelClusters(%s) = %v, want a and b", channel, cc)
	}

	// Each packet crosses once: over a window, what A's inter-cluster
	// relays send of the channel is what the publisher sent. The counters
	// are those of the links and channels open now, so the window counts
	// only if no inter-cluster link went down or reconnected meanwhile (a
	// starved process can miss a deadline); a disturbed window is taken
	// again, three times at most.
	var sent, crossed, arrived, bytes0, bytes1, bout0, bout1 uint64
	for try := 1; ; try++ {
		links0 := interLinks(a, b)
		sent0, by0 := pub.sent.Load(), pub.bytes.Load()
		out0, _, bo0, _ := a.interStats(channel)
		_, in0, _, _ := b.interStats(channel)
		time.Sleep(3 * time.Second)
		sent1, by1 := pub.sent.Load(), pub.bytes.Load()
		out1, _, bo1, _ := a.interStats(channel)
		_, in1, _, _ := b.interStats(channel)
		if links1 := interLinks(a, b); links1 != links0 {
			if try == 3 {
				t.Fatalf("the inter-cluster links changed in each of three 3 s windows; last: %s -> %s", links0, links1)
			}
			t.Logf("window %d disturbed, taken again: inter-cluster links %s -> %s", try, links0, links1)
			continue
		}
		if out1 < out0 || in1 < in0 || bo1 < bo0 {
			t.Fatalf("inter-cluster counters went back with the links unchanged (sent %d -> %d, received %d -> %d, bytes %d -> %d)",
				out0, out1, in0, in1, bo0, bo1)
		}
		sent, crossed, arrived = sent1-sent0, out1-out0, in1-in0
		bytes0, bytes1, bout0, bout1 = by0, by1, bo0, bo1
		break
	}
	perByte := float64(bout1-bout0) / float64(bytes1-bytes0)
	t.Logf("window of 3 s: publisher sent %d packets, A's inter-cluster relays sent %d, B's received %d; inter-cluster bytes per published byte %.3f",
		sent, crossed, arrived, perByte)
	for _, n := range a.nodes {
		for _, l := range n.InterClusterRelay().Stats().Links {
			if l.Connected {
				t.Logf("inter-cluster link %s - %s: RTT %v", n.Name(), l.Peer, l.RTT)
			}
		}
	}
	if crossed > sent+sent/10+5 || crossed < sent/2 {
		t.Errorf("%d packets crossed for %d published to ten subscribers: want each once", crossed, sent)
	}
	if arrived > crossed+crossed/10+5 {
		t.Errorf("B received %d packets, A sent %d", arrived, crossed)
	}

	// Messages cross too, once every subscriber's #chat is open.
	for i, s := range subs {
		testutil.Eventually(t, func() bool {
			dc, ok := s.c.DataChannel("#chat")
			return ok && dc.ReadyState() == webrtc.DataChannelStateOpen
		}, 10*time.Second, "subscriber %d's #chat open", i)
	}
	pub.say(t, "hello from a")
	for i, s := range subs {
		testutil.Eventually(t, func() bool { return s.got("hello from a") }, 10*time.Second, "subscriber %d got the message", i)
	}

	// The bridge of A stops: another node of A takes over.
	old := a.bridgeOf(channel)
	killed := time.Now()
	for _, s := range subs {
		s.gapFrom.Store(killed.UnixNano())
	}
	before := make([]uint64, len(subs))
	for i, s := range subs {
		before[i] = s.packets.Load()
	}
	old.stop()
	resumed := testutil.WaitFor(func() bool {
		for i, s := range subs {
			if s.packets.Load() < before[i]+100 {
				return false
			}
		}
		return true
	}, 40*time.Second)
	if !resumed {
		// Say which: the publisher's node may have left its cluster's
		// majority for a moment (the stopped node was the Raft leader),
		// which closes its connections.
		select {
		case <-pub.c.Done():
			t.Fatalf("media did not resume after %s stopped: the publisher's connection ended (%v)", old.Name(), pub.c.Err())
		default:
			t.Fatalf("media did not resume after %s stopped (publisher still connected)", old.Name())
		}
	}
	var worst time.Duration
	for _, s := range subs {
		worst = max(worst, time.Duration(s.maxGap.Load()))
	}
	t.Logf("bridge %s stopped: media resumed at every subscriber; longest gap %v", old.Name(), worst)
}
