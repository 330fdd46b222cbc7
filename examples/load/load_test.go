package main

import (
	"bytes"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	shoal "github.com/shoal-sfu/shoal"
	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/sfu"
	"github.com/shoal-sfu/shoal/signaling"
)

// startNode starts a single Shoal node (cluster off) in this process and
// returns its signaling URL.
func startNode(t *testing.T) string {
	t.Helper()
	cfg := shoal.DefaultConfig()
	cfg.Authenticator = signaling.AllowAll
	cfg.SFU = sfu.LocalConfig(nil)
	cfg.Logger = testutil.LoggerLevel(t, slog.LevelError)
	ip := testutil.LoopbackIP(t)
	cfg.NodeName = "load@" + ip.String()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := shoal.New(cfg)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	srv := &http.Server{Handler: n.SignalingHandler()}
	done := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(done) }()
	t.Cleanup(func() {
		n.Close()
		srv.Close()
		<-done
	})
	if err := n.Start(testutil.Context(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	return "ws://" + ln.Addr().String() + "/signaling"
}

// TestRunAgainstNode runs 1 publisher x 3 subscribers (VP8 and Opus) for
// a few seconds against an in-process node and checks that the summary is
// plausible: everyone joined, packets delivered at about the rate sent,
// next to no loss, a CPU figure, keyframes asked for and sent.
func TestRunAgainstNode(t *testing.T) {
	testutil.CheckLeaks(t)
	url := startNode(t)
	var progress bytes.Buffer
	cfg := config{URLs: []string{url}, Channel: "load", Publishers: 1, Subscribers: 3,
		Duration: 3 * time.Second, Warmup: time.Second, MediaTimeout: 20 * time.Second,
		VideoCodec: "VP8", Audio: true, VideoKbps: 300, AudioKbps: 32, FPS: 30, KeyframeInterval: 0,
		JoinConcurrency: 4, Loopback: true, ServerPID: os.Getpid(), Progress: &progress,
		Logger: testutil.LoggerLevel(t, slog.LevelError)}
	s, err := run(testutil.Context(t, 60*time.Second), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	s.print(&out)
	t.Logf("progress:\n%s\nsummary:\n%s", progress.String(), out.String())
	if s.Publishers != 1 || s.Subscribers != 3 || s.JoinFailures != 0 {
		t.Errorf("joined %d publishers and %d subscribers (%d failures); want 1, 3, 0", s.Publishers, s.Subscribers, s.JoinFailures)
	}
	if s.JoinP50 <= 0 || s.JoinP99 < s.JoinP50 || s.MediaP50 <= 0 {
		t.Errorf("join p50 %v p99 %v, first media p50 %v: want positive, p99 >= p50", s.JoinP50, s.JoinP99, s.MediaP50)
	}
	// Each subscriber gets at least one video packet per frame and 50
	// audio packets a second; at 300 kbit/s a frame is one or two packets.
	low, high := 0.5*3*(30+50), 1.5*3*(30*3+50)
	if s.PacketsPerSecond < low || s.PacketsPerSecond > high {
		t.Errorf("delivered %.0f packets/s; want %.0f..%.0f", s.PacketsPerSecond, low, high)
	}
	if s.Loss > 0.05 {
		t.Errorf("loss %.2f%%; want about 0 on loopback", 100*s.Loss)
	}
	if s.CPUPerPacket <= 0 {
		t.Errorf("CPU per packet %v; want > 0 (this process is the server)", s.CPUPerPacket)
	}
	// With no periodic keyframes, anything beyond the first was asked for:
	// the server asks for one for each new subscriber.
	if s.KeyframeRequests == 0 || s.Keyframes < 2 {
		t.Errorf("%d keyframes sent, %d requests; want the server to ask for some", s.Keyframes, s.KeyframeRequests)
	}
	if !strings.Contains(progress.String(), "pkt/s") {
		t.Errorf("no progress line in %q", progress.String())
	}
}

// TestRunH264 checks that H.264 reaches a subscriber, keyframes included.
func TestRunH264(t *testing.T) {
	testutil.CheckLeaks(t)
	url := startNode(t)
	cfg := config{URLs: []string{url}, Channel: "h264", Publishers: 1, Subscribers: 1,
		Duration: 2 * time.Second, Warmup: 500 * time.Millisecond, MediaTimeout: 20 * time.Second,
		VideoCodec: "H264", VideoKbps: 500, FPS: 25, KeyframeInterval: time.Second,
		JoinConcurrency: 2, Loopback: true, Logger: testutil.LoggerLevel(t, slog.LevelError)}
	s, err := run(testutil.Context(t, 60*time.Second), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if s.Subscribers != 1 || s.PacketsPerSecond < 25 || s.Loss > 0.05 {
		t.Errorf("1 subscriber of H.264: %d joined, %.0f packets/s, loss %.2f%%; want 1, >= 25, about 0", s.Subscribers, s.PacketsPerSecond, 100*s.Loss)
	}
}

func TestFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-url", "http://x/signaling"}, "want ws://"},
		{[]string{"-publishers", "0", "-subscribers", "0"}, "at least one connection"},
		{[]string{"-video-codec", "VP9"}, "want VP8 or H264"},
		{[]string{"-video-codec", "none", "-audio=false"}, "neither audio nor video"},
		{[]string{"-duration", "0s"}, "-duration"},
		{[]string{"-loopback", "maybe"}, "-loopback"},
		{[]string{"extra"}, "unexpected arguments"},
	} {
		if _, _, err := parseFlags(tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v; want an error mentioning %q", tc.args, err, tc.want)
		}
	}
	cfg, _, err := parseFlags([]string{"-url", "ws://127.0.0.1:5000/signaling,ws://127.0.0.2:5000/signaling", "-video-codec", "h264"})
	if err != nil || len(cfg.URLs) != 2 || !cfg.Loopback || cfg.VideoCodec != "H264" {
		t.Errorf("two loopback URLs, h264: %+v, %v", cfg, err)
	}
}

// TestLossCount checks the counting of sequence numbers: a gap is loss,
// the wrap at 65535 is not, a late (reordered) packet is counted once.
func TestLossCount(t *testing.T) {
	var tr rxTrack
	var set rxSet
	set.add(&tr)
	for _, seq := range []uint16{65530, 65531, 65532, 65533, 65534, 65535, 0, 1} {
		tr.add(seq)
	}
	a := set.snapshot()
	if r, e := delta(nil, a); r != 8 || e != 8 {
		t.Errorf("across the wrap: %d received of %d expected; want 8 of 8", r, e)
	}
	for _, seq := range []uint16{2, 3, 6, 5, 7} { // 4 lost, 6 and 5 swapped
		tr.add(seq)
	}
	r, e := delta(a, set.snapshot())
	if r != 5 || e != 6 {
		t.Errorf("after a gap: %d received of %d expected; want 5 of 6", r, e)
	}
	if l := lossOf(r, e); l < 0.16 || l > 0.17 {
		t.Errorf("loss %.3f; want 1/6", l)
	}
}

// TestFrames checks the synthetic frames' headers: a VP8 keyframe's tag
// and start code, an H.264 keyframe's SPS, PPS and IDR.
func TestFrames(t *testing.T) {
	var g frameGen
	k := g.frame(1000, true)
	if len(k) != 1000 || k[0]&1 != 0 || !bytes.Equal(k[3:6], []byte{0x9d, 0x01, 0x2a}) {
		t.Errorf("VP8 keyframe header % x", k[:10])
	}
	if d := g.frame(500, false); len(d) != 500 || d[0]&1 != 1 {
		t.Errorf("VP8 interframe header % x", d[:3])
	}
	h := frameGen{h264: true}
	k = h.frame(1000, true)
	var types []byte
	for i := 0; i+4 < len(k); i++ {
		if bytes.Equal(k[i:i+4], startCode) {
			types = append(types, k[i+4]&0x1f)
		}
	}
	if !bytes.Equal(types, []byte{7, 8, 5}) {
		t.Errorf("H.264 keyframe NAL types %v; want [7 8 5]", types)
	}
	d := h.frame(1000, false)
	if !bytes.Equal(d[:4], startCode) || d[4]&0x1f != 1 || bytes.Contains(d[5:], []byte{0, 0}) {
		t.Errorf("H.264 interframe % x...", d[:8])
	}
}
