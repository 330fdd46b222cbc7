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

	"golang.org/x/sync/errgroup"

	"github.com/shoal-sfu/shoal/affinity"
	"github.com/shoal-sfu/shoal/cluster"
	"github.com/shoal-sfu/shoal/internal/lifecycle"
	"github.com/shoal-sfu/shoal/relay"
	"github.com/shoal-sfu/shoal/sfu"
	"github.com/shoal-sfu/shoal/signaling"
)

// Config configures a Node: the cluster settings (through the embedded
// cluster.Config: NodeName, Cluster, ExternalSignalingURL, ExternalAPIURL,
// Relay, DefaultAffinity, AffinityThreshold, ListenMinPort, ListenMaxPort,
// Temporary, MaxConnections, MaxNodes, ClusterKey, DataDir, Logger, ...;
// docs/cluster.md says what each does) and the configuration of each part.
// Fields of the parts that the Node fills itself (names, loggers, the links
// between parts) are overwritten.
type Config struct {
	cluster.Config

	// Authenticator decides every connect. Required: use
	// signaling.AllowAll in development, a signaling.Webhook or your own
	// signaling.AuthFunc in production.
	Authenticator signaling.Authenticator

	// SFU configures the media core; its Network settings matter most (UDP
	// port, NAT addresses). Its MaxConnections is a hard limit of its own:
	// leave it 0 so that placement, which knows the capacity a node takes
	// over from failed nodes (docs/placement.md), decides. Logger nil means
	// Logger.
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
	// asks the other nodes holding a channel); NodeName, Channels, Stats
	// and Logger are filled by the Node. Every node needs the same Token: the
	// nodes call each other's admin APIs with it.
	Admin signaling.AdminConfig

	// SelfBlock sets how the node blocks itself on a local fault (a relay
	// that stays down, a data directory it cannot write, a failed media
	// socket; docs/cluster.md).
	SelfBlock SelfBlockConfig

	// MultiCluster joins the cluster to clusters in other regions that
	// share channels (docs/multicluster.md); off unless its Key is set.
	MultiCluster MultiClusterConfig
}

// DefaultConfig returns a Config with Sora's defaults (cluster.DefaultConfig:
// relay and affinity on, threshold 20, ports 49010-49020, production timing).
func DefaultConfig() Config {
	return Config{Config: cluster.DefaultConfig()}
}

// ErrNodeClosed is returned by calls on a closed Node, and by Err after
// Close; it wraps net.ErrClosed.
var ErrNodeClosed = fmt.Errorf("shoal: node closed: %w", net.ErrClosed)

// Node is one SFU node with every part joined: membership (cluster),
// placement (affinity, run by signaling), the relay, signaling and the SFU.
// Mount SignalingHandler and AdminHandler on an HTTP server of your own.
//
// Its lifecycle is net/http's: New starts nothing; Start binds and starts
// the parts; Done and Err report a part that stops on its own after Start
// (as http.Server.Serve returns the error that ended it); Close stops
// everything and returns that error too.
//
// Everything a Node does can be wired by hand from the packages; see the
// package documentation and examples/minimal-cluster.
type Node struct {
	cfg    Config
	log    *slog.Logger
	member *cluster.Node
	sfu    *sfu.SFU
	relay  *relay.Relay  // nil with cluster or relay off
	mc     *multiCluster // nil with multi-cluster off
	sig    *signaling.Server
	admin  http.Handler

	state lifecycle.State
	// life ends first thing in Close; it bounds reconcile's DNS lookups.
	life context.Context
	stop context.CancelCauseFunc
	// group owns the goroutines serving the parts (the relay's Serve). Its
	// context, served, ends when Close stops the parts (stopParts, after
	// the signaling sessions are closed) or when a part stops on its own;
	// its cause is Err.
	group     *errgroup.Group
	served    context.Context
	stopParts context.CancelCauseFunc

	reconcileMu sync.Mutex // held through reconcile

	mu      sync.Mutex // guards what follows, and orders reconcile against Close
	unsub   func()
	peers   map[string]netip.AddrPort  // relay peers set
	relayed map[string]map[string]bool // channel -> peers opened

	media mediaTotals // the SFU's counters as totals (stats.go)
}

// New validates cfg and builds the parts of a node. It starts nothing: call
// Start. Each part's logs carry its "component" attribute (cluster, sfu,
// relay, signaling, admin-api; the Node's own carry component=node) and
// node=<NodeName>, once: give a Logger that does not carry node= itself.
func New(cfg Config) (*Node, error) {
	if cfg.Authenticator == nil {
		return nil, errors.New("shoal: Config.Authenticator is required (signaling.AllowAll allows every connect, for development only)")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	// Every line names the node once: the cluster and the relay add
	// node= themselves (cfg.Logger goes to them as it is), the other parts
	// get it here.
	log := cfg.Logger.With("node", cfg.NodeName)
	if cfg.RelayPort < 0 || cfg.RelayPort > 65535 {
		return nil, fmt.Errorf("shoal: RelayPort %d is out of range 0-65535", cfg.RelayPort)
	}
	if _, err := cfg.SelfBlock.withDefaults(); err != nil {
		return nil, err
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
		cfg.SFU.Logger = log
	}
	s, err := sfu.New(cfg.SFU)
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: log.With("component", "node"), member: member, sfu: s,
		peers: map[string]netip.AddrPort{}, relayed: map[string]map[string]bool{}}
	n.life, n.stop = context.WithCancelCause(context.Background())
	parts, stopParts := context.WithCancelCause(context.Background())
	n.group, n.served = errgroup.WithContext(parts)
	n.stopParts = stopParts

	if n.mc, err = newMultiCluster(n, name); err != nil {
		return nil, err
	}
	if cfg.Cluster && cfg.Relay {
		rc := cfg.RelayLink
		rc.NodeName, rc.ClusterKey, rc.Logger = cfg.NodeName, cfg.ClusterKey, cfg.Logger
		rc.Local = n.mc.wrapIntra(relay.NewSFULocal(s, log))
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
		n.mc.setIntra(n.relay)
	}

	sc := cfg.Signaling
	sc.Logger, sc.NodeName, sc.Authenticator, sc.Media = log, cfg.NodeName, cfg.Authenticator, NewMedia(s)
	// The membership is the server's Cluster even with cluster off: its
	// view then holds this node alone, so that placement applies the "no
	// cluster" column (max_connections, modes) and signaling holds
	// max_connections as a hard limit.
	sc.Cluster = member
	if n.sig, err = signaling.New(sc); err != nil {
		return nil, err
	}
	ac := cfg.Admin
	ac.Logger, ac.NodeName, ac.Channels = log, cfg.NodeName, n.sig
	ac.Stats = nodeStats{n}
	if n.admin, err = signaling.NewAdminHandler[cluster.NodeStatus, cluster.ChannelStatus](member, ac); err != nil {
		return nil, err
	}
	n.admin = multiClusterAdmin{n: n, next: n.admin}
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
// After a failed Start, call Close. Start runs once: again, it fails with
// an error wrapping lifecycle.ErrStarted, and after Close with
// ErrNodeClosed.
func (n *Node) Start(ctx context.Context) error {
	if err := n.state.Start("shoal: node"); err != nil {
		if errors.Is(err, net.ErrClosed) {
			return ErrNodeClosed
		}
		return err
	}
	if err := n.start(ctx); err != nil {
		return err
	}
	n.reconcile() // the state before the first event
	n.watchFaults()
	return nil
}

func (n *Node) start(ctx context.Context) error {
	if n.relay != nil {
		// The relay binds first, so that the membership, which takes the
		// first free ports of the same range, keeps off its port.
		if err := n.relay.Listen(); err != nil {
			return fmt.Errorf("shoal: start relay: %w", err)
		}
		if err := n.serve("relay", n.relay.Serve); err != nil {
			return err
		}
	}
	if err := n.member.Start(ctx); err != nil {
		return err
	}
	if err := n.mc.start(ctx); err != nil {
		return err
	}
	if n.cfg.Cluster {
		unsub := n.member.Subscribe(n.onEvent)
		n.mu.Lock()
		closed := n.state.Closed()
		n.unsub = unsub
		n.mu.Unlock()
		if closed {
			unsub()
			return ErrNodeClosed
		}
	}
	return nil
}

// serve runs a part's serving loop in the node's group until Close. A loop
// that returns before Close has stopped on its own: that is logged at Error
// and becomes the node's Err (its Done closes), and Close returns it.
func (n *Node) serve(component string, loop func(context.Context) error) error {
	n.mu.Lock() // Close waits for the group only after it has this lock
	defer n.mu.Unlock()
	if n.state.Closed() {
		return ErrNodeClosed
	}
	n.group.Go(func() error {
		err := loop(n.served)
		if n.life.Err() != nil {
			return err // stopped by Close; an error on the way out is still reported by Close
		}
		if err == nil {
			err = errors.New("stopped")
		}
		err = fmt.Errorf("shoal: %s: %w", component, err)
		n.log.Error("a part of the node stopped on its own; Close the node", "err", err)
		return err
	})
	return nil
}

// Done returns a channel that is closed when the node stops serving: at
// Close, or when one of its parts stops on its own after Start (the
// relay's sockets fail, say). The parts still running go on until Close.
func (n *Node) Done() <-chan struct{} { return n.served.Done() }

// Err returns nil while Done is open. After, it says why the node stopped:
// the error of the part that stopped on its own (which Close returns too),
// or ErrNodeClosed after a Close with every part well.
func (n *Node) Err() error { return context.Cause(n.served) }

// Name returns the node's node_name.
func (n *Node) Name() string { return n.cfg.NodeName }

// SignalingHandler returns the WebSocket signaling handler to mount where
// the node's external_signaling_url points (e.g. /signaling).
func (n *Node) SignalingHandler() http.Handler { return n.sig }

// AdminHandler returns the admin API (POST / with x-sora-target) to mount
// where the node's external_api_url points.
func (n *Node) AdminHandler() http.Handler { return n.admin }

// Membership returns the node's cluster membership, for the cluster
// operations in Go (InitCluster, RegisterClusterNode, ListClusterNodes, ...).
func (n *Node) Membership() *cluster.Node { return n.member }

// SFU returns the node's media core.
func (n *Node) SFU() *sfu.SFU { return n.sfu }

// Relay returns the node's relay, or nil when cluster or relay is off.
func (n *Node) Relay() *relay.Relay { return n.relay }

// Signaling returns the node's signaling server (its connections, and
// DisconnectChannel).
func (n *Node) Signaling() *signaling.Server { return n.sig }

// InitCluster builds a cluster of exactly the named regular nodes, or
// rebuilds one whose majority is lost for good (docs/cluster.md); see
// cluster.Node.InitCluster.
func (n *Node) InitCluster(ctx context.Context, nodeNames []string) ([]string, error) {
	return n.member.InitCluster(ctx, nodeNames)
}

// RegisterClusterNode adds this node to the cluster of the contact node
// (docs/cluster.md); see cluster.Node.RegisterClusterNode.
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
// again) and closes the SFU. It returns their errors, and that of a part
// that had stopped on its own (Err). Safe to call twice: the second call
// returns nil.
func (n *Node) Close() error {
	if first, _ := n.state.Close(); !first {
		return nil
	}
	n.stop(ErrNodeClosed) // ends reconcile's DNS lookups, so that unsub returns soon
	n.mu.Lock()           // an apply of reconcile, or a serve, in progress ends first
	unsub := n.unsub
	n.mu.Unlock()
	if unsub != nil {
		unsub()
	}
	errs := []error{n.sig.Close()}
	errs = append(errs, n.mc.close())
	n.stopParts(ErrNodeClosed)
	if n.relay != nil {
		errs = append(errs, n.relay.Close())
	}
	errs = append(errs, n.group.Wait(), n.member.Close(), n.sfu.Close())
	return errors.Join(errs...)
}
