package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/shoal-sfu/shoal"
	"github.com/shoal-sfu/shoal/cluster"
	"github.com/shoal-sfu/shoal/examples/minimal-cluster/web"
	"github.com/shoal-sfu/shoal/relay"
	"github.com/shoal-sfu/shoal/sfu"
	"github.com/shoal-sfu/shoal/signaling"
)

type options struct {
	// one node per process
	name, listen, signalingURL, apiURL, key, dataDir, init, register string
	// both modes
	httpPort, maxConns              int
	webhook                         string
	relay, affinity, fast, loopback bool
	publicIP, logLevel              string
	udpPort, minPort, maxPort       int
	adminToken                      string
	origins                         string
	mlineReuse                      string
	temporary                       bool
	eventWebhook                    string
}

func main() {
	var o options
	flag.StringVar(&o.name, "name", "", "run one node per process: this node's node_name, NAME@HOST (HOST an IP address or a name with a dot)")
	flag.StringVar(&o.listen, "listen", "", "one node: HTTP listen address (default HOST:http-port)")
	flag.StringVar(&o.signalingURL, "signaling-url", "", "one node: external_signaling_url (default ws://HOST:http-port/signaling)")
	flag.StringVar(&o.apiURL, "api-url", "", "one node: external_api_url (default http://HOST:http-port/api)")
	flag.StringVar(&o.key, "key", "", "the cluster key, hex (16, 24 or 32 bytes), the same on every node; three nodes: random unless given")
	flag.StringVar(&o.dataDir, "data", "", "data directory (one node: its own; three nodes: one subdirectory each); default a temporary directory removed at exit")
	flag.StringVar(&o.init, "init", "", "one node: run InitCluster with these comma-separated node names once they are all up")
	flag.StringVar(&o.register, "register", "", "one node: run RegisterClusterNode with this contact node name")
	flag.IntVar(&o.httpPort, "http-port", 5000, "HTTP port of each node (page, /signaling, /api)")
	flag.IntVar(&o.maxConns, "max-connections", 100, "max_connections of each node")
	flag.StringVar(&o.webhook, "webhook", "", "auth webhook URL (e.g. http://127.0.0.1:8090/auth from examples/auth-webhook); default allow all")
	flag.BoolVar(&o.relay, "relay", true, "cluster_relay")
	flag.BoolVar(&o.affinity, "affinity", true, "default_cluster_affinity")
	flag.BoolVar(&o.fast, "fast", false, "fast failure detection (loopback and tests); always on with three nodes in one process")
	flag.BoolVar(&o.loopback, "loopback", false, "one node: offer loopback ICE candidates only (all nodes on one machine)")
	flag.StringVar(&o.publicIP, "public-ip", "", "one node: public address to put in ICE candidates (1:1 NAT)")
	flag.IntVar(&o.udpPort, "udp-port", 0, "one node: a single UDP port for all WebRTC traffic (0: ephemeral ports)")
	flag.IntVar(&o.minPort, "cluster-min-port", cluster.DefaultListenMinPort, "cluster_listen_min_port")
	flag.IntVar(&o.maxPort, "cluster-max-port", cluster.DefaultListenMaxPort, "cluster_listen_max_port (the relay uses it)")
	flag.StringVar(&o.adminToken, "admin-token", "", "bearer token required by the admin API (/api)")
	flag.StringVar(&o.origins, "origins", "", "comma-separated web origins (host:port patterns, e.g. localhost:3000 or *.example.com) whose pages may open signaling here, beside the cluster's own nodes' (three nodes: the three; one node: the -init nodes'). A refused page is logged once with the flag to use")
	flag.BoolVar(&o.temporary, "temporary", false, "one node: a temporary node (cluster_temporary_node): joins with -register, leaves the cluster when it stops")
	flag.StringVar(&o.eventWebhook, "event-webhook", "", "URL receiving the event webhooks (connection.created, .updated, .destroyed, .failed, session.created, .destroyed)")
	flag.StringVar(&o.mlineReuse, "mline-reuse", "any", "which inactive m-lines a new track may reuse: any (the SDP stays bounded; for browsers and Sora's SDKs), once (safe for pion clients too), never")
	flag.StringVar(&o.logLevel, "log", "warn", "log level: debug, info, warn, error")
	flag.Parse()

	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		fmt.Fprintln(os.Stderr, "minimal-cluster: -log:", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if o.name != "" {
		err = runOne(ctx, o, log)
	} else {
		err = runThree(ctx, o, log)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Error("minimal-cluster", "err", err)
		os.Exit(1)
	}
}

// node is one running node: its Node and HTTP server.
type node struct {
	*shoal.Node
	srv  *http.Server
	ln   net.Listener
	hook *signaling.EventWebhook // nil without -event-webhook
}

// close stops the node, then its event webhook.
func (n *node) close() {
	n.Close()
	if n.hook != nil {
		n.hook.Close()
	}
}

// nodeConfig is the configuration of one node from the flags.
func nodeConfig(o options, name string, key []byte, dataDir string, log *slog.Logger) (shoal.Config, error) {
	cfg := shoal.DefaultConfig()
	cfg.NodeName = name
	cfg.Cluster = true
	cfg.Relay = o.relay
	cfg.DefaultAffinity = o.affinity
	cfg.MaxConnections = o.maxConns
	cfg.ClusterKey = key
	cfg.DataDir = dataDir
	cfg.ListenMinPort, cfg.ListenMaxPort = o.minPort, o.maxPort
	cfg.Version = "minimal-cluster"
	cfg.Logger = log // the node adds node=<name> to every line
	if o.fast {
		cfg.Timing = cluster.FastTiming()
		cfg.RelayLink = relay.FastConfig(relay.Config{})
	}
	cfg.ExternalSignalingURL = o.signalingURL
	cfg.ExternalAPIURL = o.apiURL
	cfg.Authenticator = signaling.AllowAll
	if o.webhook != "" {
		cfg.Authenticator = &signaling.Webhook{URL: o.webhook}
	}
	cfg.Admin.Token = o.adminToken
	cfg.Temporary = o.temporary
	if o.origins != "" {
		cfg.Signaling.OriginPatterns = strings.Split(o.origins, ",")
	}
	if o.loopback {
		cfg.SFU = sfu.LocalConfig(nil)
	}
	switch o.mlineReuse {
	case "any", "": // "": options built in code, as the tests do
		cfg.SFU.MLineReuse = sfu.ReuseAny
	case "once":
		cfg.SFU.MLineReuse = sfu.ReuseOnce
	case "never":
		cfg.SFU.MLineReuse = sfu.ReuseNever
	default:
		return cfg, fmt.Errorf("-mline-reuse %q: want any, once or never", o.mlineReuse)
	}
	cfg.SFU.Network.UDPPort = o.udpPort
	if o.publicIP != "" {
		cfg.SFU.Network.NAT1To1IPs = []string{o.publicIP}
	}
	if o.eventWebhook != "" { // last: nothing may fail after it starts
		wh, err := signaling.NewEventWebhook(signaling.EventWebhookConfig{URL: o.eventWebhook, NodeName: name,
			Version: cfg.Version, Logger: log.With("node", name)})
		if err != nil {
			return cfg, err
		}
		cfg.Signaling.Events = wh // closed by node.close, or by startNode when it fails
	}
	return cfg, nil
}

// startNode builds and starts a node and its HTTP server (page at /, the
// live cluster page at /cluster.html, signaling at /signaling, admin API
// at /api, Prometheus metrics at /metrics).
func startNode(ctx context.Context, cfg shoal.Config, listen string) (*node, error) {
	hook, _ := cfg.Signaling.Events.(*signaling.EventWebhook)
	n, err := shoal.New(cfg)
	if err != nil {
		if hook != nil {
			hook.Close()
		}
		return nil, err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		n.Close()
		if hook != nil {
			hook.Close()
		}
		return nil, err
	}
	if err := n.Start(ctx); err != nil {
		ln.Close()
		n.Close()
		if hook != nil {
			hook.Close()
		}
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/", web.Handler())
	mux.Handle("/cluster.json", web.StatusHandler(n)) // read by /cluster.html
	mux.Handle("/metrics", n.MetricsHandler())
	mux.Handle("/signaling", newOriginGuard(n.SignalingHandler(), cfg.Signaling.OriginPatterns, cfg.Logger.With("node", cfg.NodeName)))
	mux.Handle("/api", web.AdminHandler(n)) // the admin API (POST /) at /api
	return &node{Node: n, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, ln: ln, hook: hook}, nil
}

// bindHint says what to do about a socket that could not be bound.
func bindHint(err error, host netip.Addr) string {
	switch {
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return fmt.Sprintf(" (on macOS, add the address first: sudo ifconfig lo0 alias %v)", host)
	case errors.Is(err, syscall.EADDRINUSE):
		// The cluster's ports (49010-49020 by default) lie in Linux's
		// ephemeral range: a connection of any program may hold one, or
		// leave it in TIME_WAIT for a minute.
		return " (another process, or a recent connection in TIME_WAIT, holds the port: wait a minute, pick others with -http-port or -cluster-min-port/-cluster-max-port, or reserve them: sysctl -w net.ipv4.ip_local_reserved_ports=49010-49020)"
	}
	return ""
}

// serve runs the nodes' HTTP servers until ctx ends, or a server or a part
// of a node fails, then stops them and the nodes.
func serve(ctx context.Context, nodes []*node, log *slog.Logger) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, n := range nodes {
		g.Go(func() error {
			if err := n.srv.Serve(n.ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
		g.Go(func() error {
			select {
			case <-gctx.Done():
				return nil
			case <-n.Done(): // a part of the node (its relay) stopped on its own
				if err := n.Err(); !errors.Is(err, shoal.ErrNodeClosed) {
					return fmt.Errorf("node %s: %w", n.Name(), err)
				}
				return nil
			}
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		log.Info("stopping")
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, n := range nodes {
			n.close() // ends the WebSocket sessions, which Shutdown does not wait for
			n.srv.Shutdown(sctx)
		}
		return nil
	})
	err := g.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func tempDataDir(o options) (string, func(), error) {
	if o.dataDir != "" {
		return o.dataDir, func() {}, os.MkdirAll(o.dataDir, 0o700)
	}
	d, err := os.MkdirTemp("", "shoal-minimal-cluster-")
	return d, func() { os.RemoveAll(d) }, err
}

// runThree runs three nodes in this process on 127.0.0.1-3.
func runThree(ctx context.Context, o options, log *slog.Logger) error {
	o.fast, o.loopback = true, true
	if o.temporary {
		return errors.New("-temporary: a temporary node runs alone: add -name, -key and -register (the three-node mode prints the command)")
	}
	key := make([]byte, 32)
	rand.Read(key)
	if o.key != "" {
		k, err := hex.DecodeString(o.key)
		if err != nil || len(k) == 0 {
			return fmt.Errorf("-key: want the cluster key in hex: %v", err)
		}
		key = k
	}
	data, cleanup, err := tempDataDir(o)
	if err != nil {
		return err
	}
	defer cleanup()
	var nodes []*node
	defer func() {
		for _, n := range nodes {
			n.close()
		}
	}()
	var names, origins []string
	for i := 1; i <= 3; i++ {
		origins = append(origins, netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, byte(i)}), uint16(o.httpPort)).String())
	}
	if o.origins != "" {
		origins = append(origins, strings.Split(o.origins, ",")...) // the user's pages too
	}
	o.origins = strings.Join(origins, ",")
	for i := 1; i <= 3; i++ {
		host := netip.AddrFrom4([4]byte{127, 0, 0, byte(i)})
		name := fmt.Sprintf("node%d@%v", i, host)
		oi := o
		hp := netip.AddrPortFrom(host, uint16(o.httpPort)).String()
		oi.signalingURL, oi.apiURL = "ws://"+hp+"/signaling", "http://"+hp+"/api"
		cfg, err := nodeConfig(oi, name, key, filepath.Join(data, fmt.Sprintf("node%d", i)), log)
		if err != nil {
			return err
		}
		n, err := startNode(ctx, cfg, hp)
		if err != nil {
			return fmt.Errorf("start %s: %w%s", name, err, bindHint(err, host))
		}
		nodes = append(nodes, n)
		names = append(names, name)
	}
	ictx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := nodes[0].InitCluster(ictx, names); err != nil && !errors.Is(err, cluster.ErrAlreadyInitialized) {
		return fmt.Errorf("InitCluster: %w", err)
	}
	for _, n := range nodes {
		if err := waitReady(ictx, n.Node); err != nil {
			return err
		}
	}
	fmt.Println("Shoal minimal cluster: three nodes are up. Open a page per node (same channel) in your browser:")
	for _, n := range nodes {
		fmt.Printf("  %-20s http://%s/\n", n.Name(), n.ln.Addr())
	}
	fmt.Printf("Live cluster page: http://%s/cluster.html   Metrics: http://%s/metrics\n", nodes[0].ln.Addr(), nodes[0].ln.Addr())
	fmt.Printf("Scale out with a temporary node (Ctrl-C there scales in):\n  go run ./examples/minimal-cluster -name node4@127.0.0.4 -key %x -register %s -temporary -fast -loopback -http-port %d -cluster-min-port %d -cluster-max-port %d\n",
		key, names[0], o.httpPort, o.minPort, o.maxPort)
	fmt.Println("Ctrl-C stops the cluster.")
	return serve(ctx, nodes, log)
}

func waitReady(ctx context.Context, n *shoal.Node) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for !n.Ready() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not join the cluster's majority: %w", n.Name(), ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// runOne runs one node, for a deployment with one node per process.
func runOne(ctx context.Context, o options, log *slog.Logger) error {
	nn, err := cluster.ParseNodeName(o.name)
	if err != nil {
		return err
	}
	key, err := hex.DecodeString(o.key)
	if err != nil || len(key) == 0 {
		return fmt.Errorf("-key: want the cluster key in hex (e.g. from: openssl rand -hex 32): %v", err)
	}
	hostPort := net.JoinHostPort(nn.Host, fmt.Sprint(o.httpPort))
	if o.temporary && o.register == "" {
		return errors.New("-temporary: a temporary node joins a running cluster: add -register CONTACT_NODE_NAME")
	}
	// The cluster's nodes' pages (a page is redirected between nodes), and
	// the user's.
	var origins []string
	for _, name := range strings.Split(o.init+","+o.register, ",") {
		if nn, err := cluster.ParseNodeName(name); err == nil {
			origins = append(origins, net.JoinHostPort(nn.Host, fmt.Sprint(o.httpPort)))
		}
	}
	if o.origins != "" {
		origins = append(origins, strings.Split(o.origins, ",")...)
	}
	o.origins = strings.Join(origins, ",")
	if o.listen == "" {
		o.listen = hostPort
	}
	if o.signalingURL == "" {
		o.signalingURL = "ws://" + hostPort + "/signaling"
	}
	if o.apiURL == "" {
		o.apiURL = "http://" + hostPort + "/api"
	}
	dataDir := o.dataDir
	if dataDir == "" {
		d, cleanup, err := tempDataDir(o)
		if err != nil {
			return err
		}
		defer cleanup()
		dataDir = d
	}
	cfg, err := nodeConfig(o, o.name, key, dataDir, log)
	if err != nil {
		return err
	}
	n, err := startNode(ctx, cfg, o.listen)
	if err != nil {
		return err
	}
	defer n.close()
	fmt.Printf("%s: page http://%s/ signaling %s api %s\n", o.name, n.ln.Addr(), o.signalingURL, o.apiURL)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return serve(gctx, []*node{n}, log) })
	g.Go(func() error {
		switch {
		case o.init != "":
			return retry(gctx, log, "InitCluster", func(ctx context.Context) error {
				_, err := n.InitCluster(ctx, strings.Split(o.init, ","))
				if errors.Is(err, cluster.ErrAlreadyInitialized) {
					return nil
				}
				return err
			})
		case o.register != "":
			return retry(gctx, log, "RegisterClusterNode", func(ctx context.Context) error {
				_, err := n.RegisterClusterNode(ctx, o.register)
				if errors.Is(err, cluster.ErrAlreadyInitialized) {
					return nil
				}
				return err
			})
		}
		return nil
	})
	return g.Wait()
}

// retry runs op until it succeeds or ctx ends: the other nodes may not be up
// yet.
func retry(ctx context.Context, log *slog.Logger, what string, op func(context.Context) error) error {
	for {
		octx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := op(octx)
		cancel()
		if err == nil {
			log.Info(what + " done")
			return nil
		}
		log.Info(what+" failed; retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}
