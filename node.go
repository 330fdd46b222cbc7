package shoal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/shoal-sfu/shoal/affinity"
	"github.com/shoal-sfu/shoal/cluster"
	"github.com/shoal-sfu/shoal/relay"
	"github.com/shoal-sfu/shoal/sfu"
	"github.com/shoal-sfu/shoal/signaling"
	"github.com/shoal-sfu/shoal/signaling/wire"
)

// Config configures a Node: the SPEC §2 settings (through the embedded
// cluster.Config: NodeName, Cluster, ExternalSignalingURL, ExternalAPIURL,
// Relay, DefaultAffinity, AffinityThreshold, ListenMinPort, ListenMaxPort,
// Temporary, MaxConnections, MaxNodes, ClusterKey, DataDir, Logger, ...) and
// the configuration of each part. Fields of the parts that the Node fills
// itself (names, loggers, the links between parts) are overwritten.
type Config struct {
	cluster.Config

	// Authenticator decides every connect. Required: use
	// signaling.AllowAll in development, a signaling.Webhook or your own
	// signaling.AuthFunc in production.
	Authenticator signaling.Authenticator

	// SFU configures the media core; its Network settings matter most (UDP
	// port, NAT addresses). Its MaxConnections is a hard limit of its own:
	// leave it 0 so that placement, which knows the capacity a node takes
	// over from failed nodes (SPEC §4), decides. Logger nil means Logger.
	SFU sfu.Config

	// RelayPort is the TCP and UDP port of the relay, the same on every
	// node of the cluster: a node reaches another's relay at the HOST of
	// its node_name (resolved if it is a DNS name) on this port. 0 means
	// ListenMaxPort (49020 by default: the top of the node-to-node range,
	// whose bottom ports the membership uses).
	RelayPort int
	// RelayLink tunes the relay's links (buffers, heartbeats, backoff);
	// NodeName, ClusterKey, Local, Logger and ListenAddr are filled by the
	// Node. relay.FastConfig(relay.Config{}) suits loopback tests.
	RelayLink relay.Config

	// Signaling tunes the signaling server (timeouts, origins); NodeName,
	// Authenticator, Media, Cluster and Logger are filled by the Node.
	Signaling signaling.Config
	// Admin tunes the admin API (bearer token, CORS, the HTTP client that
	// asks the other nodes holding a channel); NodeName, Channels and
	// Logger are filled by the Node. Every node needs the same Token: the
	// nodes call each other's admin APIs with it.
	Admin signaling.AdminConfig
}

// DefaultConfig returns a Config with the seed's defaults (cluster.DefaultConfig:
// relay and affinity on, threshold 20, ports 49010-49020, production timing).
func DefaultConfig() Config {
	return Config{Config: cluster.DefaultConfig()}
}

// ErrNodeClosed is returned by calls on a closed Node; it wraps net.ErrClosed.
var ErrNodeClosed = fmt.Errorf("shoal: node closed: %w", net.ErrClosed)

// Node is one SFU node with every part joined: membership (cluster),
// placement (affinity, run by signaling), the relay, signaling and the SFU.
// Mount SignalingHandler and AdminHandler on an HTTP server of your own.
//
// Everything a Node does can be wired by hand from the packages; see the
// package documentation and examples/minimal-cluster.
type Node struct {
	cfg    Config
	log    *slog.Logger
	member *cluster.Node
	sfu    *sfu.SFU
	relay  *relay.Relay // nil with cluster or relay off
	sig    *signaling.Server
	admin  http.Handler

	reconcileMu sync.Mutex // held through reconcile

	mu       sync.Mutex
	started  bool
	closed   bool
	cancel   context.CancelFunc // ends the relay's Run
	relayErr chan error         // Run's result
	unsub    func()
	peers    map[string]netip.AddrPort  // relay peers set
	relayed  map[string]map[string]bool // channel -> peers opened
}

// New validates cfg and builds the parts of a node. It starts nothing: call
// Start.
func New(cfg Config) (*Node, error) {
	if cfg.Authenticator == nil {
		return nil, errors.New("shoal: Config.Authenticator is required (signaling.AllowAll allows every connect, for development only)")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	log := cfg.Logger
	if cfg.RelayPort < 0 || cfg.RelayPort > 65535 {
		return nil, fmt.Errorf("shoal: RelayPort %d is out of range 0-65535", cfg.RelayPort)
	}
	member, err := cluster.New(cfg.Config)
	if err != nil {
		return nil, err
	}
	name, err := cluster.ParseNodeName(cfg.NodeName)
	if err != nil {
		return nil, err
	}
	if cfg.SFU.Logger == nil {
		cfg.SFU.Logger = log.With("part", "sfu")
	}
	s, err := sfu.New(cfg.SFU)
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: log, member: member, sfu: s,
		peers: map[string]netip.AddrPort{}, relayed: map[string]map[string]bool{}}

	if cfg.Cluster && cfg.Relay {
		rc := cfg.RelayLink
		rc.NodeName = cfg.NodeName
		rc.ClusterKey = cfg.ClusterKey
		rc.Local = relay.NewSFULocal(s, log.With("part", "relay"))
		rc.Logger = log.With("part", "relay")
		ip := cfg.BindAddr
		if !ip.IsValid() {
			ip = cfg.AdvertiseAddr
		}
		if !ip.IsValid() {
			ip = name.Addr // zero (all addresses) for a DNS HOST
		}
		rc.ListenAddr = netip.AddrPortFrom(ip, uint16(n.relayPort()))
		if n.relay, err = relay.New(rc); err != nil {
			return nil, err
		}
	}

	sc := cfg.Signaling
	sc.Logger = log.With("part", "signaling")
	sc.NodeName = cfg.NodeName
	sc.Authenticator = cfg.Authenticator
	sc.Media = NewMedia(s)
	sc.Cluster = nil
	if cfg.Cluster {
		sc.Cluster = member
	}
	if n.sig, err = signaling.New(sc); err != nil {
		return nil, err
	}
	ac := cfg.Admin
	ac.Logger = log.With("part", "admin")
	ac.NodeName = cfg.NodeName
	ac.Channels = n.sig
	if n.admin, err = signaling.NewAdminHandler[cluster.NodeStatus, cluster.ChannelStatus](member, ac); err != nil {
		return nil, err
	}
	return n, nil
}

func (n *Node) relayPort() int {
	if n.cfg.RelayPort != 0 {
		return n.cfg.RelayPort
	}
	if n.cfg.ListenMaxPort != 0 {
		return n.cfg.ListenMaxPort
	}
	return cluster.DefaultListenMaxPort
}

// Start binds the relay's port, starts the membership (a regular node with
// an earlier DataDir rejoins its cluster) and begins following the cluster:
// relay peers and relayed channels follow the channel owners, and on losing
// the majority every connection of the node is closed (new ones are refused
// by placement until the majority is back). ctx bounds the start only.
// After a failed Start, call Close.
func (n *Node) Start(ctx context.Context) error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return ErrNodeClosed
	}
	if n.started {
		n.mu.Unlock()
		return errors.New("shoal: Start called twice")
	}
	n.started = true
	n.mu.Unlock()
	if err := n.start(ctx); err != nil {
		return err
	}
	n.reconcile() // the state before the first event
	return nil
}

func (n *Node) start(ctx context.Context) error {
	if n.relay != nil {
		// The relay binds first, so that the membership, which takes the
		// first free ports of the same range, keeps off its port.
		rctx, cancel := context.WithCancel(context.Background())
		relayErr := make(chan error, 1)
		n.mu.Lock()
		n.cancel, n.relayErr = cancel, relayErr
		n.mu.Unlock()
		go func() { relayErr <- n.relay.Run(rctx) }()
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for !n.relay.Addr().IsValid() {
			select {
			case err := <-relayErr:
				relayErr <- err
				return fmt.Errorf("shoal: start relay: %w", err)
			case <-ctx.Done():
				return fmt.Errorf("shoal: start relay: %w", ctx.Err())
			case <-t.C:
			}
		}
	}
	if err := n.member.Start(ctx); err != nil {
		return err
	}
	if n.cfg.Cluster {
		unsub := n.member.Subscribe(n.onEvent)
		n.mu.Lock()
		closed := n.closed
		n.unsub = unsub
		n.mu.Unlock()
		if closed {
			unsub()
			return ErrNodeClosed
		}
	}
	return nil
}

// onEvent follows the cluster: called from the membership's subscription
// goroutine (in order, never concurrently), and once from Start.
func (n *Node) onEvent(ev cluster.Event) {
	if ev.Kind == cluster.EventMajority && !ev.InMajority {
		// SPEC §3.7: a node outside the majority drops its connections;
		// placement refuses new ones while the view says so.
		c, _ := n.sig.DisconnectAll(wire.CloseRefused, "NOT-IN-MAJORITY")
		n.log.Warn("left the cluster majority: connections closed", "connections", c)
	}
	n.reconcile()
}

// reconcile makes the relay's peers and channels match the view: every other
// node is a peer; a channel is relayed with each other owner of its session
// while this node is an owner too; a session that ended closes its relay.
// The decisions are planPeers and planChannels (relayplan.go); here are the
// I/O around them: the peers' addresses are resolved before n.mu is taken,
// and the plans are applied under it.
func (n *Node) reconcile() {
	if n.relay == nil {
		return
	}
	n.reconcileMu.Lock() // one reconcile at a time, so that views apply in order
	defer n.reconcileMu.Unlock()
	v := n.member.Snapshot()
	self := n.cfg.NodeName
	addrs := n.resolvePeers(otherNodes(&v, self))
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return
	}
	n.applyPeers(planPeers(&v, self, addrs, n.peers))
	n.applyChannels(planChannels(&v, self, n.peers, n.relayed))
}

// resolvePeers returns the relay address of each named node that has one;
// a node whose address cannot be found is logged and left out.
func (n *Node) resolvePeers(names []string) map[string]netip.AddrPort {
	addrs := make(map[string]netip.AddrPort, len(names))
	for _, name := range names {
		ap, err := n.peerAddr(name)
		if err != nil {
			n.log.Warn("relay: cannot address peer", "node", name, "err", err)
			continue
		}
		addrs[name] = ap
	}
	return addrs
}

// applyPeers sets and removes the relay's peers as p says; n.mu is held.
// A peer the relay refuses is left out of n.peers, so that no channel is
// opened with it.
func (n *Node) applyPeers(p peerPlan) {
	for _, pa := range p.set {
		if err := n.relay.SetPeer(pa.name, pa.addr); err != nil {
			n.log.Warn("relay: set peer", "node", pa.name, "err", err)
			continue
		}
		n.peers[pa.name] = pa.addr
	}
	for _, name := range p.remove {
		n.relay.RemovePeer(name)
		delete(n.peers, name)
		for _, peers := range n.relayed {
			delete(peers, name) // opened again if the node comes back
		}
	}
}

// applyChannels opens and closes relayed channels as p says; n.mu is held.
func (n *Node) applyChannels(p channelPlan) {
	for _, cp := range p.open {
		if err := n.relay.OpenChannel(cp.channel, cp.peer); err != nil {
			n.log.Warn("relay: open channel", "channel", cp.channel, "peer", cp.peer, "err", err)
			continue
		}
		if n.relayed[cp.channel] == nil {
			n.relayed[cp.channel] = map[string]bool{}
		}
		n.relayed[cp.channel][cp.peer] = true
		n.log.Debug("relay: channel opened", "channel", cp.channel, "peer", cp.peer)
	}
	for _, ch := range p.close {
		if err := n.relay.CloseChannel(ch); err != nil && !errors.Is(err, relay.ErrNotRelayed) {
			n.log.Warn("relay: close channel", "channel", ch, "err", err)
		}
		delete(n.relayed, ch)
	}
}

// peerAddr is where a node's relay listens: the HOST of its node_name on the
// cluster's relay port.
func (n *Node) peerAddr(node string) (netip.AddrPort, error) {
	nn, err := cluster.ParseNodeName(node)
	if err != nil {
		return netip.AddrPort{}, err
	}
	ip := nn.Addr
	if !ip.IsValid() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", nn.Host)
		if err != nil || len(ips) == 0 {
			return netip.AddrPort{}, fmt.Errorf("resolve %s: %w", nn.Host, err)
		}
		ip = ips[0].Unmap()
	}
	return netip.AddrPortFrom(ip, uint16(n.relayPort())), nil
}

// Name returns the node's node_name.
func (n *Node) Name() string { return n.cfg.NodeName }

// SignalingHandler returns the WebSocket signaling handler to mount where
// the node's external_signaling_url points (e.g. /signaling).
func (n *Node) SignalingHandler() http.Handler { return n.sig }

// AdminHandler returns the admin API (POST / with x-sora-target) to mount
// where the node's external_api_url points.
func (n *Node) AdminHandler() http.Handler { return n.admin }

// Membership returns the node's cluster membership, for the seed's cluster
// operations in Go (InitCluster, RegisterClusterNode, ListClusterNodes, ...).
func (n *Node) Membership() *cluster.Node { return n.member }

// SFU returns the node's media core.
func (n *Node) SFU() *sfu.SFU { return n.sfu }

// Relay returns the node's relay, or nil when cluster or relay is off.
func (n *Node) Relay() *relay.Relay { return n.relay }

// Signaling returns the node's signaling server (its connections, and
// DisconnectChannel).
func (n *Node) Signaling() *signaling.Server { return n.sig }

// InitCluster builds a cluster of exactly the named regular nodes (SPEC
// §3.2); see cluster.Node.InitCluster.
func (n *Node) InitCluster(ctx context.Context, nodeNames []string) ([]string, error) {
	return n.member.InitCluster(ctx, nodeNames)
}

// RegisterClusterNode adds this node to the cluster of the contact node (SPEC
// §3.3); see cluster.Node.RegisterClusterNode.
func (n *Node) RegisterClusterNode(ctx context.Context, contact string) ([]string, error) {
	return n.member.RegisterClusterNode(ctx, contact)
}

// Ready reports whether the node serves clients: always with cluster off,
// else once it is a member of the cluster's majority.
func (n *Node) Ready() bool {
	v := n.member.Snapshot()
	return !n.cfg.Cluster || v.InMajority
}

// View returns the node's current view of the cluster.
func (n *Node) View() affinity.View { return n.member.Snapshot() }

// Close ends every client session, stops the relay, leaves the cluster (a
// regular node stays a member and rejoins from its DataDir when it starts
// again) and closes the SFU. Safe to call twice.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	unsub, cancel, relayErr := n.unsub, n.cancel, n.relayErr
	n.mu.Unlock()

	if unsub != nil {
		unsub()
	}
	errs := []error{n.sig.Close()}
	if n.relay != nil {
		errs = append(errs, n.relay.Close())
		if cancel != nil {
			cancel()
			if err := <-relayErr; err != nil {
				errs = append(errs, err)
			}
		}
	}
	errs = append(errs, n.member.Close(), n.sfu.Close())
	return errors.Join(errs...)
}
