package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/shoal-sfu/shoal/affinity"
)

// Default node-to-node port range (cluster_listen_min_port,
// cluster_listen_max_port).
const (
	DefaultListenMinPort = 49010
	DefaultListenMaxPort = 49020
	// DefaultAffinityThreshold is cluster_affinity_threshold's default.
	DefaultAffinityThreshold = 20
)

// Config configures one node. The zero value, with NodeName set, is a plain
// single SFU (Cluster false). The comments give each setting's name in
// Sora's configuration; docs/cluster.md describes them.
type Config struct {
	// NodeName is node_name, NAME@HOST (see ParseNodeName). HOST is where
	// other nodes reach this one unless AdvertiseAddr says otherwise.
	NodeName string
	// Cluster turns clustering on (`cluster`).
	Cluster bool
	// ExternalSignalingURL and ExternalAPIURL are this node's public URLs,
	// required when Cluster is on.
	ExternalSignalingURL string
	ExternalAPIURL       string
	// Relay is cluster_relay. Set it explicitly: the zero value is false,
	// while Sora's default is true (see DefaultConfig).
	Relay bool
	// DefaultAffinity is default_cluster_affinity (see DefaultConfig).
	DefaultAffinity bool
	// AffinityThreshold is cluster_affinity_threshold; 0 means 20.
	AffinityThreshold int
	// ListenMinPort and ListenMaxPort bound the node-to-node ports; 0 means
	// 49010 and 49020. The node takes the first free port for gossip (TCP and
	// UDP) and the next free one for Raft and the cluster RPC (TCP). Every
	// node of a cluster must use the same range: a contact node is found by
	// trying the ports of the range on its HOST.
	ListenMinPort, ListenMaxPort int
	// BindAddr is the address to listen on; zero means the advertise address.
	BindAddr netip.Addr
	// AdvertiseAddr is the address other nodes use; zero means HOST of
	// NodeName when it is an IP address, else it is resolved at Start.
	AdvertiseAddr netip.Addr
	// Temporary is cluster_temporary_node.
	Temporary bool
	// MaxConnections is max_connections, this node's capacity: placement
	// serves at most this many connections here (more while other nodes
	// have failed, docs/placement.md). Required (above 0) when Cluster is
	// on; with Cluster off, 0 means no limit.
	MaxConnections int
	// MaxNodes is max_nodes, the most nodes the cluster may have; 0 means
	// no limit.
	MaxNodes int
	// ClusterKey encrypts gossip and authenticates and encrypts node-to-node
	// traffic: 16, 24 or 32 bytes, the same on every node. Required when
	// Cluster is on.
	ClusterKey []byte
	// DataDir keeps a regular node's membership (Raft log and snapshots,
	// gossip snapshot) and its mode (mode.json) across restarts; with
	// Cluster off, only the mode. Empty keeps them in memory: the node then
	// does not rejoin by itself after a restart, and starts normal.
	// Temporary nodes keep nothing on disk whatever it says.
	DataDir string
	// Version is reported in ListClusterNodes.
	Version string
	// ClusterID names this cluster among the clusters of a multi-cluster
	// configuration (docs/multicluster.md): short (at most
	// MaxClusterIDLen bytes), printable, no comma, no space. Every node of
	// a cluster has the same. Empty is allowed only while the node takes
	// part in no multi-cluster configuration.
	ClusterID string
	// ServiceID keeps services apart that share a gossip channel or a
	// multi-cluster key: nodes whose ServiceID differs ignore each other
	// (gossip refuses to merge them). At most MaxServiceIDLen bytes,
	// printable, no space; empty is a service id like any other.
	ServiceID string
	// Timing sets failure detection and consensus timing; the zero value
	// means ProductionTiming().
	Timing Timing
	// Faults, when set, routes all node-to-node traffic through a
	// fault-injecting network for tests. Nil in production.
	Faults *FaultNet
	// Logger receives the node's logs, serf's, memberlist's and raft's;
	// nil means slog.Default(). The node adds node=<NodeName> and
	// component=cluster (or serf, memberlist, raft) to every line: a
	// Logger carrying node= itself would name it twice.
	Logger *slog.Logger

	// confChangeFault, for tests, is called before each change of the
	// Raft configuration that housekeeping makes, with its description;
	// an error fails the change without it reaching Raft.
	confChangeFault func(change string) error
}

// Limits of Config.ClusterID and Config.ServiceID: both travel in every
// gossip message between clusters.
const (
	MaxClusterIDLen = 32
	MaxServiceIDLen = 64
)

// CheckClusterID says what is wrong with a cluster id, or nil. It is an
// ErrInvalid (errors.Is). Empty is wrong: callers that allow it check
// before.
func CheckClusterID(id string) error {
	if id == "" {
		return &invalidError{errors.New("cluster: cluster id is empty")}
	}
	if len(id) > MaxClusterIDLen {
		return &invalidError{fmt.Errorf("cluster: cluster id %q is %d bytes, at most %d", id, len(id), MaxClusterIDLen)}
	}
	return checkIDChars("cluster id", id, true)
}

// CheckServiceID says what is wrong with a service id, or nil (an
// ErrInvalid).
func CheckServiceID(id string) error {
	if len(id) > MaxServiceIDLen {
		return &invalidError{fmt.Errorf("cluster: service id %q is %d bytes, at most %d", id, len(id), MaxServiceIDLen)}
	}
	return checkIDChars("service id", id, false)
}

func checkIDChars(what, id string, noComma bool) error {
	for _, c := range []byte(id) {
		if c <= ' ' || c >= 0x7f {
			return &invalidError{fmt.Errorf("cluster: %s %q: only printable ASCII without spaces is allowed, not %q", what, id, c)}
		}
		if noComma && c == ',' {
			return &invalidError{fmt.Errorf("cluster: %s %q must not contain a comma", what, id)}
		}
	}
	return nil
}

// DefaultConfig returns a Config with Sora's defaults: relay and
// affinity on, threshold 20, ports 49010-49020, production timing.
func DefaultConfig() Config {
	return Config{
		Relay:             true,
		DefaultAffinity:   true,
		AffinityThreshold: DefaultAffinityThreshold,
		ListenMinPort:     DefaultListenMinPort,
		ListenMaxPort:     DefaultListenMaxPort,
		Timing:            ProductionTiming(),
	}
}

// Timing holds the timers of failure detection, gossip and consensus.
type Timing struct {
	// ProbeInterval, ProbeTimeout and SuspicionMult drive memberlist's
	// failure detector.
	ProbeInterval time.Duration
	ProbeTimeout  time.Duration
	SuspicionMult int
	// AwarenessMaxMultiplier bounds how much memberlist slows the probes of
	// a node that sees many failures (Lifeguard); a node cut off from the
	// others is that node, so this bounds how late it learns it is in the
	// minority.
	AwarenessMaxMultiplier int
	// GossipInterval is memberlist's gossip period.
	GossipInterval time.Duration
	// GossipToTheDeadTime is how long gossip still reaches failed nodes,
	// which speeds up healing after a partition.
	GossipToTheDeadTime time.Duration
	// PushPullInterval is memberlist's full state sync period.
	PushPullInterval time.Duration
	// ReconnectInterval is how often serf tries to reach failed nodes.
	ReconnectInterval time.Duration
	// ReconnectTimeout is how long a failed node is kept before it is
	// forgotten by gossip.
	ReconnectTimeout time.Duration
	// TemporaryReapTimeout is how long a temporary node that failed
	// without leaving (it crashed, or is cut off) stays listed, as not
	// connected, before the leader erases it; never less than the time a
	// cut-off node takes to stop serving (the release of a failed node's
	// claims waits as long: 5.4 s with FastTiming, 15 s with
	// ProductionTiming). One back before then is re-admitted by itself;
	// one back after must register again.
	TemporaryReapTimeout time.Duration
	// LeavePropagateDelay lets a leaving node's intent spread before it stops.
	LeavePropagateDelay time.Duration
	// HeartbeatTimeout, ElectionTimeout, LeaderLeaseTimeout and
	// CommitTimeout are Raft's.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	// LoadInterval coalesces load publications: at most one push per
	// interval; LoadRefresh re-sends the full load even without change.
	LoadInterval time.Duration
	LoadRefresh  time.Duration
	// Tick is the period of the background reconciliation (view rebuild,
	// leader housekeeping).
	Tick time.Duration
	// RPCTimeout bounds one node-to-node request.
	RPCTimeout time.Duration
}

// ProductionTiming returns timing for a LAN (memberlist's LAN profile,
// Raft's defaults).
func ProductionTiming() Timing {
	return Timing{
		ProbeInterval:          time.Second,
		ProbeTimeout:           500 * time.Millisecond,
		SuspicionMult:          4,
		AwarenessMaxMultiplier: 8,
		GossipInterval:         200 * time.Millisecond,
		GossipToTheDeadTime:    30 * time.Second,
		PushPullInterval:       30 * time.Second,
		ReconnectInterval:      5 * time.Second,
		ReconnectTimeout:       24 * time.Hour,
		TemporaryReapTimeout:   5 * time.Minute,
		LeavePropagateDelay:    time.Second,
		HeartbeatTimeout:       time.Second,
		ElectionTimeout:        time.Second,
		LeaderLeaseTimeout:     500 * time.Millisecond,
		CommitTimeout:          50 * time.Millisecond,
		LoadInterval:           200 * time.Millisecond,
		LoadRefresh:            10 * time.Second,
		Tick:                   time.Second,
		RPCTimeout:             5 * time.Second,
	}
}

// FastTiming returns timing for tests on loopback: failures are detected
// within about a second and partitions heal within about as long.
func FastTiming() Timing {
	return Timing{
		ProbeInterval:          200 * time.Millisecond,
		ProbeTimeout:           150 * time.Millisecond,
		SuspicionMult:          2,
		AwarenessMaxMultiplier: 2,
		GossipInterval:         50 * time.Millisecond,
		GossipToTheDeadTime:    3 * time.Second,
		PushPullInterval:       2 * time.Second,
		ReconnectInterval:      300 * time.Millisecond,
		ReconnectTimeout:       10 * time.Minute,
		TemporaryReapTimeout:   5 * time.Second,
		LeavePropagateDelay:    100 * time.Millisecond,
		HeartbeatTimeout:       400 * time.Millisecond,
		ElectionTimeout:        400 * time.Millisecond,
		LeaderLeaseTimeout:     200 * time.Millisecond,
		CommitTimeout:          5 * time.Millisecond,
		LoadInterval:           20 * time.Millisecond,
		LoadRefresh:            time.Second,
		Tick:                   100 * time.Millisecond,
		RPCTimeout:             2 * time.Second,
	}
}

// NodeName is a parsed node_name.
type NodeName struct {
	Name string
	Host string
	// Addr is Host as an IP address, when it is one.
	Addr netip.Addr
}

// String returns NAME@HOST.
func (n NodeName) String() string { return n.Name + "@" + n.Host }

// ParseNodeName parses and checks a node_name, NAME@HOST: NAME matches
// [0-9A-Za-z_\-]+ and HOST is an IP address or a host name containing a dot.
// Its error says what is wrong and is an ErrInvalid (errors.Is).
func ParseNodeName(s string) (NodeName, error) {
	nn, err := parseNodeName(s)
	if err != nil {
		return NodeName{}, &invalidError{err}
	}
	return nn, nil
}

// invalidError is an error that is also an ErrInvalid, with its message.
type invalidError struct{ err error }

func (e *invalidError) Error() string   { return e.err.Error() }
func (e *invalidError) Unwrap() []error { return []error{e.err, ErrInvalid} }

func parseNodeName(s string) (NodeName, error) {
	name, host, ok := strings.Cut(s, "@")
	if !ok {
		return NodeName{}, fmt.Errorf("cluster: node_name %q: want NAME@HOST", s)
	}
	if name == "" {
		return NodeName{}, fmt.Errorf("cluster: node_name %q: NAME is empty", s)
	}
	for _, c := range name {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == '-') {
			return NodeName{}, fmt.Errorf("cluster: node_name %q: NAME may hold only letters, digits, '_' and '-', not %q", s, c)
		}
	}
	if host == "" {
		return NodeName{}, fmt.Errorf("cluster: node_name %q: HOST is empty", s)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return NodeName{}, fmt.Errorf("cluster: node_name %q: HOST must not carry a zone", s)
		}
		return NodeName{Name: name, Host: host, Addr: a}, nil
	}
	if !strings.Contains(host, ".") {
		return NodeName{}, fmt.Errorf("cluster: node_name %q: host must contain a dot or be an IP address", s)
	}
	for _, label := range strings.Split(strings.TrimSuffix(host, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return NodeName{}, fmt.Errorf("cluster: node_name %q: HOST %q is not a valid host name", s, host)
		}
		for _, c := range label {
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-') {
				return NodeName{}, fmt.Errorf("cluster: node_name %q: HOST %q is not a valid host name", s, host)
			}
		}
	}
	return NodeName{Name: name, Host: host}, nil
}

// withDefaults returns c with zero values replaced by defaults.
func (c Config) withDefaults() Config {
	if c.AffinityThreshold == 0 {
		c.AffinityThreshold = DefaultAffinityThreshold
	}
	if c.ListenMinPort == 0 && c.ListenMaxPort == 0 {
		c.ListenMinPort, c.ListenMaxPort = DefaultListenMinPort, DefaultListenMaxPort
	}
	if c.Timing == (Timing{}) {
		c.Timing = ProductionTiming()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// validate checks c (after withDefaults) and returns every problem found.
func (c Config) validate() (NodeName, error) {
	var errs []error
	nn, err := ParseNodeName(c.NodeName)
	if err != nil {
		errs = append(errs, err)
	}
	if c.AffinityThreshold < 0 {
		errs = append(errs, fmt.Errorf("cluster: cluster_affinity_threshold %d is negative", c.AffinityThreshold))
	}
	if c.MaxConnections < 0 {
		errs = append(errs, fmt.Errorf("cluster: max_connections %d is negative", c.MaxConnections))
	}
	if c.MaxNodes < 0 {
		errs = append(errs, fmt.Errorf("cluster: max_nodes %d is negative", c.MaxNodes))
	}
	if c.ClusterID != "" {
		if err := CheckClusterID(c.ClusterID); err != nil {
			errs = append(errs, err)
		}
	}
	if err := CheckServiceID(c.ServiceID); err != nil {
		errs = append(errs, err)
	}
	if c.Cluster {
		if c.MaxConnections == 0 {
			errs = append(errs, errors.New("cluster: max_connections (Config.MaxConnections) is 0: with cluster on it is the node's capacity, which placement needs to serve anyone; set it above 0"))
		}
		if c.ListenMinPort < 1 || c.ListenMinPort > 65535 {
			errs = append(errs, fmt.Errorf("cluster: cluster_listen_min_port %d is out of range 1-65535", c.ListenMinPort))
		}
		if c.ListenMaxPort < 1 || c.ListenMaxPort > 65535 {
			errs = append(errs, fmt.Errorf("cluster: cluster_listen_max_port %d is out of range 1-65535", c.ListenMaxPort))
		}
		if c.ListenMaxPort < c.ListenMinPort+1 {
			errs = append(errs, fmt.Errorf("cluster: cluster_listen_max_port %d must be at least cluster_listen_min_port+1 (%d): a node needs two ports", c.ListenMaxPort, c.ListenMinPort+1))
		}
		if c.ExternalSignalingURL == "" {
			errs = append(errs, errors.New("cluster: external_signaling_url is required when cluster is on"))
		}
		if c.ExternalAPIURL == "" {
			errs = append(errs, errors.New("cluster: external_api_url is required when cluster is on"))
		}
		switch len(c.ClusterKey) {
		case 16, 24, 32:
		default:
			errs = append(errs, fmt.Errorf("cluster: cluster key is %d bytes, want 16, 24 or 32", len(c.ClusterKey)))
		}
		t := c.Timing
		if t.ProbeInterval <= 0 || t.ProbeTimeout <= 0 || t.SuspicionMult <= 0 || t.AwarenessMaxMultiplier <= 0 || t.GossipInterval <= 0 ||
			t.PushPullInterval <= 0 || t.ReconnectInterval <= 0 || t.ReconnectTimeout <= 0 || t.TemporaryReapTimeout <= 0 ||
			t.HeartbeatTimeout <= 0 || t.ElectionTimeout <= 0 || t.LeaderLeaseTimeout <= 0 || t.CommitTimeout <= 0 ||
			t.LoadInterval <= 0 || t.LoadRefresh <= 0 || t.Tick <= 0 || t.RPCTimeout <= 0 {
			errs = append(errs, errors.New("cluster: Timing has a zero or negative field; start from ProductionTiming() or FastTiming()"))
		}
	}
	return nn, errors.Join(errs...)
}

func (c Config) settings() affinity.Settings {
	return affinity.Settings{
		Cluster:           c.Cluster,
		Relay:             c.Relay,
		DefaultAffinity:   c.DefaultAffinity,
		AffinityThreshold: c.AffinityThreshold,
	}
}
