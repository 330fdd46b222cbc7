package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"

	"github.com/shoal-sfu/shoal/signaling/client"
	"github.com/shoal-sfu/shoal/signaling/wire"
)

// config is what the flags set (see doc.go).
type config struct {
	URLs        []string
	Channel     string
	Publishers  int
	Subscribers int
	// Duration is the measured window; Warmup runs before it, once every
	// subscriber receives every track (or MediaTimeout passed).
	Duration, Warmup, MediaTimeout time.Duration
	VideoCodec                     string // VP8, H264, or "" for no video
	Audio                          bool
	VideoKbps, AudioKbps, FPS      int
	KeyframeInterval               time.Duration
	JoinConcurrency                int
	// Loopback restricts the peers to loopback UDP candidates (for a
	// server on this host).
	Loopback  bool
	ServerPID int // 0: no CPU figure
	// Progress receives one line a second; nil for none.
	Progress io.Writer
	Logger   *slog.Logger
}

func (c *config) check() error {
	var errs []error
	if len(c.URLs) == 0 {
		errs = append(errs, errors.New("-url: no signaling URL"))
	}
	for _, u := range c.URLs {
		if p, err := url.Parse(u); err != nil || (p.Scheme != "ws" && p.Scheme != "wss") {
			errs = append(errs, fmt.Errorf("-url %q: want ws:// or wss://", u))
		}
	}
	if c.Publishers < 0 || c.Subscribers < 0 || c.Publishers+c.Subscribers == 0 {
		errs = append(errs, fmt.Errorf("-publishers %d, -subscribers %d: want at least one connection and no negative count", c.Publishers, c.Subscribers))
	}
	if c.VideoCodec == "" && !c.Audio && c.Publishers > 0 {
		errs = append(errs, errors.New("publishers with neither audio nor video (-video-codec none and -audio=false)"))
	}
	if c.VideoCodec != "" {
		if _, err := videoMime(c.VideoCodec); err != nil {
			errs = append(errs, err)
		}
		if c.VideoKbps <= 0 || c.FPS <= 0 || c.FPS > 120 {
			errs = append(errs, fmt.Errorf("-video-kbps %d, -fps %d: want a positive bit rate and 1..120 frames per second", c.VideoKbps, c.FPS))
		}
	}
	if c.Audio && c.AudioKbps <= 0 {
		errs = append(errs, fmt.Errorf("-audio-kbps %d: want a positive bit rate", c.AudioKbps))
	}
	if c.Duration <= 0 {
		errs = append(errs, fmt.Errorf("-duration %v: want a positive duration", c.Duration))
	}
	if c.JoinConcurrency <= 0 {
		errs = append(errs, fmt.Errorf("-join-concurrency %d: want at least 1", c.JoinConcurrency))
	}
	return errors.Join(errs...)
}

// summary is what a run measured.
type summary struct {
	Publishers, Subscribers int // connected
	JoinFailures            int
	JoinP50, JoinP99        time.Duration // connect sent to peer connection connected
	// MediaP50, MediaP99: a subscriber's join start to the first packet of
	// every track it should receive.
	MediaP50, MediaP99 time.Duration
	Window             time.Duration
	Delivered          int64 // RTP packets the subscribers received in the window
	Expected           int64 // ... and the sequence numbers they should have
	PacketsPerSecond   float64
	Loss               float64 // 1 - Delivered/Expected, >= 0
	// ServerCPU is the server's CPU time in the window (with -server-pid),
	// CPUPerPacket that over Delivered.
	ServerCPU    time.Duration
	CPUPerPacket time.Duration
	// Keyframes the publishers sent in the whole run: the first, the
	// periodic ones and those the server asked for (PLI, FIR).
	Keyframes, KeyframeRequests uint64
	LoadAvg                     string // /proc/loadavg at the end
}

func (s summary) print(w io.Writer) {
	fmt.Fprintf(w, "connections: %d publishers, %d subscribers (%d failed to join)\n", s.Publishers, s.Subscribers, s.JoinFailures)
	fmt.Fprintf(w, "join time:   p50 %v, p99 %v\n", s.JoinP50.Round(time.Millisecond), s.JoinP99.Round(time.Millisecond))
	fmt.Fprintf(w, "first media: p50 %v, p99 %v\n", s.MediaP50.Round(time.Millisecond), s.MediaP99.Round(time.Millisecond))
	fmt.Fprintf(w, "window:      %v\n", s.Window.Round(time.Millisecond))
	fmt.Fprintf(w, "delivered:   %d packets, %.0f packets/s\n", s.Delivered, s.PacketsPerSecond)
	fmt.Fprintf(w, "loss:        %.3f%% (%d of %d expected)\n", 100*s.Loss, max(s.Expected-s.Delivered, 0), s.Expected)
	if s.ServerCPU > 0 || s.CPUPerPacket > 0 {
		fmt.Fprintf(w, "server cpu:  %v in the window, %.2f cpu-us per delivered packet\n", s.ServerCPU.Round(time.Millisecond), float64(s.CPUPerPacket.Nanoseconds())/1000)
	}
	fmt.Fprintf(w, "keyframes:   %d sent, %d requests from the server\n", s.Keyframes, s.KeyframeRequests)
	fmt.Fprintf(w, "load avg:    %s\n", s.LoadAvg)
}

// peer is one connection of the run.
type peer struct {
	conn *client.Conn
	pub  *publisherMedia
}

// run joins the publishers, then the subscribers, measures for
// cfg.Duration and closes everything.
func run(ctx context.Context, cfg config) (summary, error) {
	if err := cfg.check(); err != nil {
		return summary{}, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	api, err := newAPI(cfg)
	if err != nil {
		return summary{}, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var (
		mu         sync.Mutex
		peers      []*peer
		joins      []time.Duration
		medias     []time.Duration
		failures   int
		firstErr   error
		wg         sync.WaitGroup // publishers' media and RTCP goroutines
		rx         rxSet
		nPub, nSub atomic.Int64
	)
	defer func() {
		cancel()
		var cw sync.WaitGroup
		for _, p := range peers {
			cw.Go(func() { _ = p.conn.Close() })
		}
		cw.Wait()
		wg.Wait()
	}()

	tracksPerPub := 0
	if cfg.VideoCodec != "" {
		tracksPerPub++
	}
	if cfg.Audio {
		tracksPerPub++
	}
	wantTracks := cfg.Publishers * tracksPerPub
	allMedia := make(chan struct{}, cfg.Subscribers)

	join := func(i int, pub bool) {
		start := time.Now()
		c := client.Config{URLs: cfg.URLs, ChannelID: cfg.Channel, API: api, Logger: cfg.Logger,
			Audio: ptr(pub && cfg.Audio), Video: ptr(pub && cfg.VideoCodec != "")}
		var pm *publisherMedia
		if pub {
			c.Role = wire.RoleSendonly
			c.ClientID = fmt.Sprintf("load-pub-%d", i)
			var err error
			if pm, err = newPublisherMedia(cfg, i); err != nil {
				mu.Lock()
				failures++
				firstErr = cmp(firstErr, err)
				mu.Unlock()
				return
			}
			if pm.video != nil {
				c.Tracks = append(c.Tracks, pm.video)
			}
			if pm.audio != nil {
				c.Tracks = append(c.Tracks, pm.audio)
			}
		} else {
			c.Role = wire.RoleRecvonly
			c.ClientID = fmt.Sprintf("load-sub-%d", i)
			c.Audio, c.Video = ptr(cfg.Audio), ptr(cfg.VideoCodec != "")
			var seen atomic.Int64
			c.OnTrack = func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
				t := &rxTrack{}
				rx.add(t)
				buf := make([]byte, 1500)
				first := true
				for {
					n, _, err := tr.Read(buf)
					if err != nil {
						return
					}
					if n < 12 {
						continue
					}
					t.add(uint16(buf[2])<<8 | uint16(buf[3]))
					if first {
						first = false
						if seen.Add(1) == int64(wantTracks) {
							mu.Lock()
							medias = append(medias, time.Since(start))
							mu.Unlock()
							allMedia <- struct{}{}
						}
					}
				}
			}
		}
		jctx, jcancel := context.WithTimeout(ctx, 30*time.Second)
		conn, err := client.Connect(jctx, c)
		jcancel()
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			failures++
			firstErr = cmp(firstErr, err)
			return
		}
		joins = append(joins, time.Since(start))
		p := &peer{conn: conn, pub: pm}
		peers = append(peers, p)
		if pub {
			nPub.Add(1)
			for _, s := range conn.PC.GetSenders() {
				wg.Go(func() { pm.readRTCP(s) })
			}
			wg.Go(func() { pm.run(ctx) })
		} else {
			nSub.Add(1)
		}
	}

	// Live progress, once a second, from the first join on.
	progressDone := make(chan struct{})
	var window atomic.Pointer[string]
	phase := "joining"
	window.Store(&phase)
	t0 := time.Now()
	go func() {
		defer close(progressDone)
		if cfg.Progress == nil {
			return
		}
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		prev, prevCPU, prevT := rx.snapshot(), cpuOr0(cfg.ServerPID), time.Now()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-tick.C:
				cur, cpu := rx.snapshot(), cpuOr0(cfg.ServerPID)
				r, e := delta(prev, cur)
				dt := now.Sub(prevT).Seconds()
				line := fmt.Sprintf("%5.0fs %-9s pubs %d/%d subs %d/%d  %7.0f pkt/s  loss %6.3f%%",
					now.Sub(t0).Seconds(), *window.Load(), nPub.Load(), cfg.Publishers, nSub.Load(), cfg.Subscribers,
					float64(r)/dt, 100*lossOf(r, e))
				if cfg.ServerPID > 0 {
					line += fmt.Sprintf("  server cpu %5.1f%%", 100*(cpu-prevCPU).Seconds()/dt)
				}
				fmt.Fprintln(cfg.Progress, line)
				prev, prevCPU, prevT = cur, cpu, now
			}
		}
	}()
	defer func() { cancel(); <-progressDone }()

	sem := make(chan struct{}, cfg.JoinConcurrency)
	var jw sync.WaitGroup
	for i := range cfg.Publishers {
		sem <- struct{}{}
		jw.Go(func() { defer func() { <-sem }(); join(i, true) })
	}
	jw.Wait()
	for i := range cfg.Subscribers {
		sem <- struct{}{}
		jw.Go(func() { defer func() { <-sem }(); join(i, false) })
	}
	jw.Wait()
	if err := ctx.Err(); err != nil {
		return summary{}, err
	}
	mu.Lock()
	joined := len(peers)
	mu.Unlock()
	if joined == 0 {
		return summary{}, fmt.Errorf("no connection joined: %w", firstErr)
	}
	if firstErr != nil {
		cfg.Logger.Warn("some connections failed to join", "failures", failures, "first", firstErr)
	}

	// Wait for every subscriber's media, then warm up.
	waitMedia := time.NewTimer(cfg.MediaTimeout)
	for got := 0; got < int(nSub.Load()) && wantTracks > 0; got++ {
		select {
		case <-allMedia:
		case <-waitMedia.C:
			got = int(nSub.Load())
		case <-ctx.Done():
			return summary{}, ctx.Err()
		}
	}
	waitMedia.Stop()
	phase = "warmup"
	window.Store(&phase)
	if !sleep(ctx, cfg.Warmup) {
		return summary{}, ctx.Err()
	}
	phase2 := "measuring"
	window.Store(&phase2)
	a, cpuA, tA := rx.snapshot(), cpuOr0(cfg.ServerPID), time.Now()
	if !sleep(ctx, cfg.Duration) {
		return summary{}, ctx.Err()
	}
	b, cpuB, tB := rx.snapshot(), cpuOr0(cfg.ServerPID), time.Now()

	mu.Lock()
	defer mu.Unlock()
	r, e := delta(a, b)
	s := summary{Publishers: int(nPub.Load()), Subscribers: int(nSub.Load()), JoinFailures: failures,
		JoinP50: percentile(joins, 50), JoinP99: percentile(joins, 99),
		MediaP50: percentile(medias, 50), MediaP99: percentile(medias, 99),
		Window: tB.Sub(tA), Delivered: r, Expected: e, Loss: lossOf(r, e), LoadAvg: loadAvg()}
	s.PacketsPerSecond = float64(r) / s.Window.Seconds()
	for _, p := range peers {
		if p.pub != nil {
			s.Keyframes += p.pub.keyframes.Load()
			s.KeyframeRequests += p.pub.requests.Load()
		}
	}
	if cfg.ServerPID > 0 {
		s.ServerCPU = cpuB - cpuA
		if r > 0 {
			s.CPUPerPacket = s.ServerCPU / time.Duration(r)
			if s.CPUPerPacket == 0 {
				s.CPUPerPacket = time.Duration(float64(s.ServerCPU) / float64(r))
			}
		}
	}
	return s, nil
}

func lossOf(received, expected int64) float64 {
	if expected <= 0 || received >= expected {
		return 0
	}
	return 1 - float64(received)/float64(expected)
}

func cpuOr0(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	d, _ := procCPU(pid)
	return d
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func ptr[T any](v T) *T { return &v }

func cmp(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// newPublisherMedia makes publisher i's tracks.
func newPublisherMedia(cfg config, i int) (*publisherMedia, error) {
	pm := &publisherMedia{videoKbps: cfg.VideoKbps, audioKbps: cfg.AudioKbps, fps: cfg.FPS, keyInterval: cfg.KeyframeInterval}
	stream := fmt.Sprintf("load-pub-%d", i)
	if cfg.VideoCodec != "" {
		mime, err := videoMime(cfg.VideoCodec)
		if err != nil {
			return nil, err
		}
		pm.h264 = mime == webrtc.MimeTypeH264
		capab := webrtc.RTPCodecCapability{MimeType: mime, ClockRate: 90000}
		if pm.h264 {
			capab.SDPFmtpLine = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"
		}
		if pm.video, err = webrtc.NewTrackLocalStaticSample(capab, "video", stream); err != nil {
			return nil, err
		}
	}
	if cfg.Audio {
		var err error
		capab := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}
		if pm.audio, err = webrtc.NewTrackLocalStaticSample(capab, "audio", stream); err != nil {
			return nil, err
		}
	}
	return pm, nil
}

// newAPI is the peers' pion API: default codecs and interceptors; on
// loopback (cfg.Loopback), client.LocalAPI's loopback-only candidates.
func newAPI(cfg config) (*webrtc.API, error) {
	if cfg.Loopback {
		return client.LocalAPI(cfg.Logger)
	}
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		return nil, err
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir)), nil
}

// isLoopbackURL reports whether every URL names a loopback host.
func isLoopbackURL(urls []string) bool {
	for _, u := range urls {
		p, err := url.Parse(u)
		if err != nil {
			return false
		}
		h := p.Hostname()
		if h == "localhost" {
			continue
		}
		ip := net.ParseIP(h)
		if ip == nil || !ip.IsLoopback() {
			return false
		}
	}
	return len(urls) > 0
}
