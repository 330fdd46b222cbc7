package sfu_test

import (
	"os"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/transport/v5/vnet"
	"github.com/pion/webrtc/v4"

	"github.com/shoal-sfu/shoal/internal/slogpion"
	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/internal/testutil/pionapi"
	"github.com/shoal-sfu/shoal/sfu"
)

// TestCongestionSettlesAndRecovers runs on pion's vnet: a simulcast
// publisher (r0 about 130 kbit/s, r1 430, r2 950 with headers, and audio)
// and two subscribers asking for r2, one behind a 300 kbit/s token bucket
// on its downlink. The limited one settles on r0 and keeps receiving while
// the other keeps r2. With SFU_TEST_LONG=1 the limit is then lifted and the
// limited one must climb back to r2. The times to settle and to recover
// are logged.
func TestCongestionSettlesAndRecovers(t *testing.T) {
	if testing.Short() {
		t.Skip("simulcast over a rate-limited virtual network")
	}
	log := testutil.LoggerLevel(t, testLogLevel)
	router, err := vnet.NewRouter(&vnet.RouterConfig{CIDR: "10.0.0.0/24", LoggerFactory: slogpion.New(log)})
	if err != nil {
		t.Fatal(err)
	}
	newNet := func(ip string) *vnet.Net {
		n, err := vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{ip}})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	server, pubNet, slowNet, fastNet := newNet("10.0.0.2"), newNet("10.0.0.3"), newNet("10.0.0.4"), newNet("10.0.0.5")
	// The slow subscriber's downlink: 300 kbit/s, a 4 KB burst, a 40 KB
	// queue (about a second).
	tbf := vnet.NewTBFQueue(300_000, 4000, 40_000)
	slowNIC, err := vnet.NewQueue(slowNet, tbf)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []vnet.NIC{server, pubNet, slowNIC, fastNet} {
		if err := router.AddNet(n); err != nil {
			t.Fatal(err)
		}
	}
	if err := router.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = router.Stop() })
	s := newSFU(t, func(c *sfu.Config) {
		c.Net = server
		c.Network = sfu.NetworkConfig{}
	})
	api := func(n *vnet.Net) *webrtc.API {
		return pionapi.Local(func(se *webrtc.SettingEngine) {
			se.SetNet(n)
			se.SetIPFilter(nil)
			se.SetIncludeLoopbackCandidate(false)
		})
	}
	pub := join(t, s, clientOpts{channel: "cc", id: "pub", role: sfu.RoleSendonly, audio: true, video: true, simulcast: true, api: api(pubNet)})
	// Audio as Opus sends it: a 100-byte frame every 20 ms.
	every(t, 20*time.Millisecond, func(i int) {
		_ = pub.audio.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: uint16(i), Timestamp: uint32(i) * 960, SSRC: 2}, Payload: make([]byte, 100)})
	})
	for l, size := range []int{500, 1650, 3750} { // bytes a frame at 30 fps
		pub.layers[l].mu.Lock()
		pub.layers[l].size = size
		pub.layers[l].mu.Unlock()
	}
	every(t, 33*time.Millisecond, func(int) {
		for _, l := range pub.layers {
			l.writeFrame()
		}
	})
	start := time.Now()
	slow := join(t, s, clientOpts{channel: "cc", id: "slow", role: sfu.RoleRecvonly, rid: sfu.RidR2, api: api(slowNet)})
	fast := join(t, s, clientOpts{channel: "cc", id: "fast", role: sfu.RoleRecvonly, rid: sfu.RidR2, api: api(fastNet)})
	key := "pub/pub-video"
	testutil.Eventually(t, func() bool { return lastLayer(fast.frames(key)) == 'C' }, 20*time.Second, "the fast subscriber gets r2")

	// Settled: the slow one's last 3 s are r0 only, and it keeps receiving.
	stable := func(c *testClient, layer byte, d time.Duration) bool {
		fs := c.frames(key)
		if len(fs) == 0 || fs[len(fs)-1].layer != layer {
			return false
		}
		n := 0
		for i := len(fs) - 1; i >= 0 && fs[i].layer == layer; i-- {
			n++
		}
		return n >= int(d/(33*time.Millisecond))/2 // half the frames of d at least, all of layer
	}
	every(t, 2*time.Second, func(int) {
		fs := slow.frames(key)
		t.Logf("%v slow: est %d kbit/s, %d frames, last %c; fast est %d", time.Since(start).Round(100*time.Millisecond), slow.conn.EstimatedBitrate()/1000, len(fs), lastLayer(fs), fast.conn.EstimatedBitrate()/1000)
	})
	testutil.Eventually(t, func() bool { return stable(slow, 'A', 3*time.Second) }, 60*time.Second, "the slow subscriber settles on r0")
	settled := time.Since(start)
	if lastLayer(fast.frames(key)) != 'C' {
		t.Fatalf("the fast subscriber left r2: %c", lastLayer(fast.frames(key)))
	}
	// It keeps receiving r0, steadily: half its frames at least over 4 s
	// (the video pauses only when the estimate stays under r0 for 3 s).
	n := len(slow.frames(key))
	time.Sleep(4 * time.Second)
	if got := len(slow.frames(key)) - n; got < 60 {
		t.Fatalf("the slow subscriber got %d frames in 4 s on r0 (it is sent 120)", got)
	}
	st := slow.conn.Stats()
	t.Logf("settled on r0 %v after the subscribers joined (estimate %d kbit/s; fast one's %d kbit/s; keyframe packets paced %d, dropped %d)", settled.Round(100*time.Millisecond),
		slow.conn.EstimatedBitrate()/1000, fast.conn.EstimatedBitrate()/1000, st.PacerQueued, st.PacerDropped)

	if os.Getenv("SFU_TEST_LONG") == "" {
		return
	}
	// The limit is lifted: back to r2.
	tbf.SetRate(20_000_000)
	tbf.SetBurst(64_000)
	lifted := time.Now()
	testutil.Eventually(t, func() bool { return lastLayer(slow.frames(key)) == 'C' }, 120*time.Second, "the slow subscriber climbs back to r2")
	t.Logf("back on r2 %v after the limit was lifted (estimate %d kbit/s)", time.Since(lifted).Round(100*time.Millisecond), slow.conn.EstimatedBitrate()/1000)
}
