package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	shoal "github.com/shoal-sfu/shoal"
	"github.com/shoal-sfu/shoal/sfu"
	"github.com/shoal-sfu/shoal/signaling"
)

func main() {
	var (
		impl    = flag.String("impl", "shoal", "shoal or pion")
		addr    = flag.String("addr", "127.0.0.1:5000", "HTTP address; signaling at /signaling")
		udpPort = flag.Int("udp-port", 50000, "Shoal's UDP mux port (on 127.0.0.1)")
		batch   = flag.Bool("batch", true, "Shoal: batched sends on the UDP mux")
		spread  = flag.Int("spread-above", 0, "Shoal: spread a track's fan-out above this many subscribers (0: default 20, -1: never)")
		cc      = flag.Bool("cc", true, "Shoal: downlink congestion control")
		direct  = flag.Bool("direct", true, "Shoal: the direct send path (false: every packet through pion's sender chain)")
		every   = flag.Duration("stats-every", 0, "Shoal: print what the SFU paced, dropped and batched this often (0: never)")
		verbose = flag.Bool("v", false, "log warnings")
		prof    = flag.Bool("pprof", false, "serve net/http/pprof at /debug/pprof/ (CPU profiles, execution traces)")
	)
	flag.Parse()
	withPprof = *prof
	level := slog.LevelError
	if *verbose {
		level = slog.LevelWarn
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch *impl {
	case "shoal":
		err = runShoal(ctx, *addr, *udpPort, *batch, *spread, *cc, *direct, *every, logger)
	case "pion":
		err = serve(ctx, *addr, newBare(logger))
	default:
		err = fmt.Errorf("-impl %q: want shoal or pion", *impl)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "server:", err)
		os.Exit(1)
	}
}

func runShoal(ctx context.Context, addr string, udpPort int, batch bool, spread int, cc, direct bool, statsEvery time.Duration, logger *slog.Logger) error {
	if udpPort <= 0 || udpPort > 65535 {
		return fmt.Errorf("-udp-port %d: want 1..65535", udpPort)
	}
	cfg := shoal.DefaultConfig()
	cfg.NodeName = "load@127.0.0.1"
	cfg.Authenticator = signaling.AllowAll
	cfg.Logger = logger
	cfg.SFU = sfu.LocalConfig(logger)
	cfg.SFU.Network.UDPPort = udpPort
	cfg.SFU.Network.ListenIP = netip.MustParseAddr("127.0.0.1")
	cfg.SFU.Network.IPFilter = nil
	cfg.SFU.DisableBatchedSends = !batch
	cfg.SFU.SpreadAbove = spread
	cfg.SFU.DisableCongestionControl = !cc
	cfg.SFU.DisableDirectSend = !direct
	n, err := shoal.New(cfg)
	if err != nil {
		return err
	}
	defer n.Close()
	if err := n.Start(ctx); err != nil {
		return err
	}
	if statsEvery > 0 {
		go func() {
			t := time.NewTicker(statsEvery)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					printSFUStats(n.SFU())
				}
			}
		}()
	}
	return serve(ctx, addr, n.SignalingHandler())
}

// printSFUStats writes to stderr what the SFU batched, paced and dropped,
// summed over its open connections.
func printSFUStats(s *sfu.SFU) {
	var conns int
	var queued, dropped, est uint64
	for _, c := range s.Stats() {
		conns++
		queued += c.PacerQueued
		dropped += c.PacerDropped
		est += c.EstimatedBandwidth
	}
	ms := s.MuxStats()
	fmt.Fprintf(os.Stderr, "sfu: %d connections; pacer queued %d, dropped %d; mean estimate %d bit/s; "+
		"mux batched %v: %d datagrams in %d calls, %d failed; spread fan-out dropped %d; "+
		"direct send: %d connections (%d through pion), %d packets; "+
		"direct receive: %d RTCP, %d RTP taken, %d RTCP to pion, %d dropped; "+
		"publishers' streams switched %d, their packets %d, dropped from full queues %d\n",
		conns, queued, dropped, est/uint64(max(conns, 1)), ms.Batched, ms.Datagrams, ms.Calls, ms.Failed, ms.FanOutDropped,
		ms.DirectConns, ms.DirectFallback, ms.DirectPackets, ms.RecvRTCP, ms.RecvRTP, ms.RecvToPion, ms.RecvDropped,
		ms.UpstreamSwitched, ms.UpstreamPackets, s.Drops().UpstreamQueueFull)
}

// withPprof: serve also net/http/pprof (-pprof).
var withPprof bool

// serve serves h at /signaling (and pprof with -pprof) until ctx ends.
func serve(ctx context.Context, addr string, h http.Handler) error {
	mux := http.NewServeMux()
	mux.Handle("/signaling", h)
	if withPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	fmt.Fprintf(os.Stderr, "serving ws://%s/signaling (pid %d)\n", ln.Addr(), os.Getpid())
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	if c, ok := h.(interface{ Close() }); ok {
		c.Close()
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// messageType reads the "type" of a signaling message.
func messageType(b []byte) string {
	var m struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal(b, &m)
	return m.Type
}
