package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	cfg, asJSON, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s, err := run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
	if asJSON {
		e := json.NewEncoder(os.Stdout)
		e.SetIndent("", "  ")
		_ = e.Encode(s)
		return
	}
	s.print(os.Stdout)
}

// parseFlags reads the flags (doc.go lists them).
func parseFlags(args []string) (config, bool, error) {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	var (
		urls     = fs.String("url", "ws://127.0.0.1:5000/signaling", "signaling URLs, comma-separated (opened all at once, the first to open is kept)")
		channel  = fs.String("channel", "load", "channel_id every connection joins")
		pubs     = fs.Int("publishers", 1, "publishers (sendonly)")
		subs     = fs.Int("subscribers", 10, "subscribers (recvonly)")
		dur      = fs.Duration("duration", 10*time.Second, "measured window")
		warmup   = fs.Duration("warmup", 2*time.Second, "run before the window, once every subscriber receives every track")
		mediaTO  = fs.Duration("media-timeout", 20*time.Second, "longest wait for every subscriber's first packets")
		video    = fs.String("video-codec", "VP8", "VP8, H264, or none")
		vkbps    = fs.Int("video-kbps", 500, "video bit rate of each publisher, kbit/s")
		fps      = fs.Int("fps", 30, "video frames per second")
		keyint   = fs.Duration("keyframe-interval", 2*time.Second, "a keyframe at least this often (and on every PLI or FIR); 0: only on request")
		audio    = fs.Bool("audio", true, "publish Opus audio")
		akbps    = fs.Int("audio-kbps", 32, "audio bit rate of each publisher, kbit/s")
		conc     = fs.Int("join-concurrency", 10, "connections joining at once")
		loopback = fs.String("loopback", "auto", "peers use loopback candidates only: true, false, or auto (when every URL's host is loopback)")
		pid      = fs.Int("server-pid", 0, "PID of a server on this host: report its CPU time per delivered packet (from /proc/PID/stat)")
		quiet    = fs.Bool("quiet", false, "no progress line")
		asJSON   = fs.Bool("json", false, "print the summary as JSON")
		verbose  = fs.Bool("v", false, "log the clients' and pion's warnings to stderr")
	)
	if err := fs.Parse(args); err != nil {
		return config{}, false, err
	}
	if fs.NArg() > 0 {
		return config{}, false, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	cfg := config{Channel: *channel, Publishers: *pubs, Subscribers: *subs, Duration: *dur, Warmup: *warmup,
		MediaTimeout: *mediaTO, Audio: *audio, VideoKbps: *vkbps, AudioKbps: *akbps, FPS: *fps,
		KeyframeInterval: *keyint, JoinConcurrency: *conc, ServerPID: *pid, Progress: os.Stderr}
	for u := range strings.SplitSeq(*urls, ",") {
		if u = strings.TrimSpace(u); u != "" {
			cfg.URLs = append(cfg.URLs, u)
		}
	}
	if !strings.EqualFold(*video, "none") {
		cfg.VideoCodec = strings.ToUpper(*video)
	}
	switch *loopback {
	case "true":
		cfg.Loopback = true
	case "false":
	case "auto":
		cfg.Loopback = isLoopbackURL(cfg.URLs)
	default:
		return config{}, false, fmt.Errorf("-loopback %q: want true, false or auto", *loopback)
	}
	if *quiet {
		cfg.Progress = nil
	}
	if *verbose {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	if cfg.ServerPID < 0 {
		return config{}, false, fmt.Errorf("-server-pid %d: want a process id", cfg.ServerPID)
	}
	return cfg, *asJSON, cfg.check()
}
