package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/shoal-sfu/shoal"
	"github.com/shoal-sfu/shoal/cluster"
	"github.com/shoal-sfu/shoal/cluster/multicluster"
	"github.com/shoal-sfu/shoal/cluster/multicluster/redischannel"
	"github.com/shoal-sfu/shoal/examples/minimal-cluster/web"
	"github.com/shoal-sfu/shoal/relay"
	"github.com/shoal-sfu/shoal/sfu"
	"github.com/shoal-sfu/shoal/signaling"
)

type options struct {
	httpPort, minPort int
	redis             string
	logLevel          string
	// one node per process
	name, clusterID, key, mcKey, init, seeds string
	// regions: cluster id → the third octet of its 127.0.x.y addresses
	regions []region
}

type region struct {
	id  string
	ips []netip.Addr
}

func defaultRegions() []region {
	mk := func(id string, octet byte) region {
		r := region{id: id}
		for i := byte(1); i <= 3; i++ {
			r.ips = append(r.ips, netip.AddrFrom4([4]byte{127, 0, octet, i}))
		}
		return r
	}
	return []region{mk("tokyo", 1), mk("frankfurt", 2)}
}

func main() {
	o := options{regions: defaultRegions()}
	flag.IntVar(&o.httpPort, "http-port", 5000, "HTTP port of each node (page, /signaling, /api, /multicluster.json)")
	flag.IntVar(&o.minPort, "cluster-min-port", 49010, "first of each node's ports: cluster (min..min+3, the relay at min+3), gossip between regions (min+4), inter-cluster relay (min+5)")
	flag.StringVar(&o.redis, "redis", "", "comma-separated Redis URLs to use as gossip channels (default: one in memory)")
	flag.StringVar(&o.logLevel, "log", "warn", "log level: debug, info, warn, error")
	flag.StringVar(&o.name, "name", "", "run one node per process: its node_name, NAME@IP (then -cluster-id, -key and -mc-key are required)")
	flag.StringVar(&o.clusterID, "cluster-id", "", "one node: its cluster's id")
	flag.StringVar(&o.key, "key", "", "one node: the cluster key, hex")
	flag.StringVar(&o.mcKey, "mc-key", "", "one node: the multi-cluster key, hex, the same in every cluster")
	flag.StringVar(&o.init, "init", "", "one node: run InitCluster with these comma-separated node names once they are all up")
	flag.StringVar(&o.seeds, "seeds", "", "one node: comma-separated gossip addresses (IP:PORT) of nodes of other clusters")
	flag.Parse()
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		fmt.Fprintln(os.Stderr, "multi-cluster: -log:", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	runner := run
	if o.name != "" {
		runner = runOne
	}
	if err := runner(ctx, o, log, os.Stdout); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("multi-cluster", "err", err)
		os.Exit(1)
	}
}

// node is one running node and its HTTP server.
type node struct {
	*shoal.Node
	srv *http.Server
	ln  net.Listener
}

// run starts the regions, joins them, prints the pages and serves until
// ctx ends.
func run(ctx context.Context, o options, log *slog.Logger, out interface{ Write([]byte) (int, error) }) error {
	var chans []multicluster.GossipChannel
	if o.redis != "" {
		for _, u := range strings.Split(o.redis, ",") {
			c, err := redischannel.New(u, "multi-cluster-example")
			if err != nil {
				return err
			}
			defer c.Close()
			chans = append(chans, c)
		}
	} else {
		chans = append(chans, multicluster.NewMemoryChannel("memory"))
	}
	mcKey := make([]byte, 32)
	rand.Read(mcKey)
	var nodes []*node
	defer func() {
		for _, n := range nodes {
			n.Close()
			n.srv.Close()
		}
	}()
	var seeds []string
	for _, r := range o.regions {
		key := make([]byte, 32)
		rand.Read(key) // each region its own cluster key
		var names []string
		var first *node
		for _, ip := range r.ips {
			name := fmt.Sprintf("%s%d@%v", r.id, len(names)+1, ip)
			n, err := startNode(ctx, o, r, name, ip, key, mcKey, chans, seeds, log)
			if err != nil {
				return fmt.Errorf("start %s: %w", name, err)
			}
			nodes = append(nodes, n)
			names = append(names, name)
			if first == nil {
				first = n
			}
		}
		if _, err := first.InitCluster(ctx, names); err != nil {
			return fmt.Errorf("InitCluster %s: %w", r.id, err)
		}
		seeds = append(seeds, first.GossipAddr())
	}
	var ids []string
	for _, r := range o.regions {
		ids = append(ids, r.id)
	}
	if _, err := nodes[0].SetMultiClusterConfiguration(ids, "examples/multi-cluster"); err != nil {
		return err
	}
	errc := make(chan error, len(nodes))
	for _, n := range nodes {
		go func() {
			if err := n.srv.Serve(n.ln); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	fmt.Fprintln(out, "Two regions, one channel: open a page of each region, same channel, and Connect.")
	for i, n := range nodes {
		fmt.Fprintf(out, "  %-10s %s  http://%s/?channel=sora\n", o.regions[i/3].id, n.Name(), n.ln.Addr())
	}
	fmt.Fprintf(out, "Gateways, configuration and channels: http://%s/multicluster.json\n", nodes[0].ln.Addr())
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		return err
	}
}

// runOne runs one node of a region in this process (-name): the other
// nodes of its cluster run the same command with their own -name, one of
// them with -init; the clusters find each other through -redis or -seeds.
// The configuration is set through the admin API
// (Shoal_20261202.SetMultiClusterConfiguration).
func runOne(ctx context.Context, o options, log *slog.Logger, out interface{ Write([]byte) (int, error) }) error {
	nn, err := cluster.ParseNodeName(o.name)
	if err != nil {
		return err
	}
	if !nn.Addr.IsValid() {
		return fmt.Errorf("-name %s: HOST must be an IP address", o.name)
	}
	key, err := hex.DecodeString(o.key)
	if err != nil || len(key) == 0 {
		return fmt.Errorf("-key: want the cluster key in hex (%v)", err)
	}
	mcKey, err := hex.DecodeString(o.mcKey)
	if err != nil || len(mcKey) == 0 {
		return fmt.Errorf("-mc-key: want the multi-cluster key in hex (%v)", err)
	}
	var chans []multicluster.GossipChannel
	for _, u := range strings.Split(o.redis, ",") {
		if u == "" {
			continue
		}
		c, err := redischannel.New(u, "multi-cluster-example")
		if err != nil {
			return err
		}
		defer c.Close()
		chans = append(chans, c)
	}
	var seeds []string
	if o.seeds != "" {
		seeds = strings.Split(o.seeds, ",")
	}
	n, err := startNode(ctx, o, region{id: o.clusterID, ips: []netip.Addr{nn.Addr}}, o.name, nn.Addr, key, mcKey, chans, seeds, log)
	if err != nil {
		return err
	}
	defer func() { n.Close(); n.srv.Close() }()
	errc := make(chan error, 1)
	go func() {
		if err := n.srv.Serve(n.ln); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	if o.init != "" {
		go func() {
			for ctx.Err() == nil {
				ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := n.InitCluster(ictx, strings.Split(o.init, ","))
				cancel()
				if err == nil || errors.Is(err, cluster.ErrAlreadyInitialized) {
					return
				}
				time.Sleep(time.Second) // the others are still starting
			}
		}()
	}
	fmt.Fprintf(out, "%s: http://%s/?channel=sora\n", o.name, n.ln.Addr())
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		return err
	case <-n.Done():
		return n.Err()
	}
}

func startNode(ctx context.Context, o options, r region, name string, ip netip.Addr, key, mcKey []byte,
	chans []multicluster.GossipChannel, seeds []string, log *slog.Logger) (*node, error) {
	ln, err := net.Listen("tcp", netip.AddrPortFrom(ip, uint16(o.httpPort)).String())
	if err != nil {
		return nil, err
	}
	base := "http://" + ln.Addr().String()
	cfg := shoal.DefaultConfig()
	cfg.NodeName = name
	cfg.Cluster = true
	cfg.ClusterID, cfg.ServiceID = r.id, "multi-cluster-example"
	cfg.MaxConnections = 100
	cfg.ClusterKey = key
	cfg.ListenMinPort, cfg.ListenMaxPort = o.minPort, o.minPort+3
	cfg.Timing = cluster.FastTiming()
	cfg.RelayLink = relay.FastConfig(relay.Config{})
	cfg.ExternalSignalingURL, cfg.ExternalAPIURL = "ws"+strings.TrimPrefix(base, "http")+"/signaling", base+"/api"
	cfg.Authenticator = signaling.AllowAll
	if o.name == "" {
		cfg.SFU = sfu.LocalConfig(nil) // every node on this machine: loopback candidates
	}
	cfg.Logger = log
	var origins []string
	for _, rr := range defaultRegions() {
		for _, x := range rr.ips {
			origins = append(origins, netip.AddrPortFrom(x, uint16(o.httpPort)).String())
		}
	}
	cfg.Signaling.OriginPatterns = origins
	cfg.MultiCluster = shoal.MultiClusterConfig{Key: mcKey, GossipPort: o.minPort + 4, RelayPort: o.minPort + 5,
		Channels: chans, Seeds: seeds, SyncInterval: 5 * time.Second,
		Agent: func(c *multicluster.AgentConfig) { c.Tune = multicluster.FastTune }}
	n, err := shoal.New(cfg)
	if err != nil {
		ln.Close()
		return nil, err
	}
	if err := n.Start(ctx); err != nil {
		ln.Close()
		n.Close()
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/", web.Handler())
	mux.Handle("/signaling", n.SignalingHandler())
	mux.Handle("/api", web.AdminHandler(n)) // the admin API (POST /) at /api
	mux.Handle("/multicluster.json", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := status(n)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(st)
	}))
	return &node{Node: n, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, ln: ln}, nil
}

// multiStatus is /multicluster.json.
type multiStatus struct {
	Node          string                            `json:"node"`
	Gateway       bool                              `json:"gateway"`
	Configuration *multicluster.Configuration       `json:"configuration"`
	Gateways      []multicluster.Gateway            `json:"gateways"`
	Channels      map[string][]shoal.ChannelCluster `json:"channels"`
}

func status(n *shoal.Node) multiStatus {
	c, _ := n.GetMultiClusterConfiguration()
	gws, _ := n.ListGateways()
	st := multiStatus{Node: n.Name(), Gateway: n.IsGateway(), Configuration: c, Gateways: gws,
		Channels: map[string][]shoal.ChannelCluster{}}
	for _, g := range gws {
		for _, ch := range g.Channels {
			if _, ok := st.Channels[ch]; !ok {
				st.Channels[ch], _ = n.ListChannelClusters(ch)
			}
		}
	}
	return st
}
