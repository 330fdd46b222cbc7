package shoal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/shoal-sfu/shoal/affinity"
	"github.com/shoal-sfu/shoal/cluster"
	"github.com/shoal-sfu/shoal/cluster/multicluster"
	"github.com/shoal-sfu/shoal/relay"
)

// MultiClusterConfig joins the node's cluster to other clusters that
// share channels (docs/multicluster.md). Multi-cluster is on when Key is
// set; it needs Cluster and Relay on and a ClusterID.
type MultiClusterConfig struct {
	// Key is the multi-cluster key, the same in every cluster of the
	// configuration and different from any cluster key: 16, 24 or 32
	// bytes. It encrypts the gossip between clusters and authenticates
	// and encrypts the relay between gateways. Nil: multi-cluster off.
	Key []byte
	// GossipPort (TCP and UDP) and RelayPort (TCP and UDP, the
	// inter-cluster relay) are the same on every node of the cluster, at
	// the HOST of each node_name. Both required.
	GossipPort, RelayPort int
	// Channels are the gossip channels (redischannel, say): read at start
	// to find the other clusters, written by the gateways.
	Channels []multicluster.GossipChannel
	// Seeds are gossip addresses (HOST:PORT) of nodes of other clusters to
	// join at start, besides what the channels list.
	Seeds []string
	// MaxGateways is how many of its active nodes a cluster designates as
	// gateways; 0 means 10.
	MaxGateways int
	// Zone is this node's zone (an availability zone, a rack): gateways
	// are spread across zones.
	Zone string
	// SyncInterval is the mean period of the background gossip exchange;
	// 0 means 30 s.
	SyncInterval time.Duration
	// Tick is how often the node checks its gateways and bridges without
	// a change to wake it; 0 means 1 s.
	Tick time.Duration
	// Agent, when set, adjusts the gossip agent's configuration last
	// (tests shorten memberlist's timers or drop pushes).
	Agent func(*multicluster.AgentConfig)
}

// multiCluster is a Node's part in a multi-cluster configuration: its
// gossip agent, its inter-cluster relay and the bridge between that relay
// and the cluster's own.
type multiCluster struct {
	n      *Node
	cfg    MultiClusterConfig
	log    *slog.Logger
	agent  *multicluster.Agent
	inter  *relay.Relay
	bridge *bridge
	self   netip.Addr // advertised address

	wake   chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex // guards what follows (reconcile's state)
	gateway bool
	peers   map[string]netip.AddrPort  // inter relay peers
	bridged map[string]map[string]bool // channel → remote gateway nodes opened with
	claimed map[string]bool            // channels claimed for bridging
	gws     []string                   // this cluster's gateways, last computed
}

func (c *MultiClusterConfig) enabled() bool { return len(c.Key) > 0 }

func newMultiCluster(n *Node, name cluster.NodeName) (*multiCluster, error) {
	cfg := n.cfg.MultiCluster
	if !cfg.enabled() {
		return nil, nil
	}
	var errs []error
	if !n.cfg.Cluster || !n.cfg.Relay {
		errs = append(errs, errors.New("shoal: multi-cluster needs Cluster and Relay on"))
	}
	if err := cluster.CheckClusterID(n.cfg.ClusterID); err != nil {
		errs = append(errs, fmt.Errorf("shoal: multi-cluster needs a ClusterID: %w", err))
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"GossipPort", cfg.GossipPort}, {"RelayPort", cfg.RelayPort}} {
		if p.v < 1 || p.v > 65535 {
			errs = append(errs, fmt.Errorf("shoal: MultiCluster.%s %d is out of range 1-65535", p.name, p.v))
		}
	}
	if cfg.GossipPort == cfg.RelayPort && cfg.GossipPort != 0 {
		errs = append(errs, errors.New("shoal: MultiCluster.GossipPort and RelayPort must differ"))
	}
	if cfg.MaxGateways < 0 {
		errs = append(errs, fmt.Errorf("shoal: MultiCluster.MaxGateways %d is negative", cfg.MaxGateways))
	}
	if cfg.Tick < 0 {
		errs = append(errs, fmt.Errorf("shoal: MultiCluster.Tick %v is negative", cfg.Tick))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cfg.Tick == 0 {
		cfg.Tick = time.Second
	}
	ip := n.cfg.AdvertiseAddr
	if !ip.IsValid() {
		ip = name.Addr
	}
	if !ip.IsValid() {
		return nil, fmt.Errorf("shoal: multi-cluster needs an IP address: set AdvertiseAddr (node_name HOST %q is a DNS name)", name.Host)
	}
	bind := n.cfg.BindAddr
	if !bind.IsValid() {
		bind = ip
	}
	m := &multiCluster{n: n, cfg: cfg, log: n.log.With("component", "multicluster"), bridge: newBridge(), self: ip,
		wake: make(chan struct{}, 1), peers: map[string]netip.AddrPort{}, bridged: map[string]map[string]bool{},
		claimed: map[string]bool{}}
	ac := multicluster.AgentConfig{Service: n.cfg.ServiceID, ClusterID: n.cfg.ClusterID, NodeName: n.cfg.NodeName,
		Zone: cfg.Zone, Key: cfg.Key, BindAddr: netip.AddrPortFrom(bind, uint16(cfg.GossipPort)), AdvertiseAddr: ip,
		Seeds: cfg.Seeds, Channels: cfg.Channels, SyncInterval: cfg.SyncInterval,
		OnChange: func(multicluster.Data) { m.poke() }, Logger: n.cfg.Logger.With("node", n.cfg.NodeName)}
	if cfg.Agent != nil {
		cfg.Agent(&ac)
	}
	var err error
	if m.agent, err = multicluster.NewAgent(ac); err != nil {
		return nil, err
	}
	rc := n.cfg.RelayLink
	rc.NodeName, rc.ClusterKey, rc.Logger = n.cfg.NodeName, cfg.Key, n.cfg.Logger.With("relay", "inter-cluster")
	rc.Local = m.bridge.local(sideInter, relay.NewSFULocal(n.sfu, n.log))
	rc.ListenAddr = netip.AddrPortFrom(bind, uint16(cfg.RelayPort))
	rc.OnLinkChange = nil
	if m.inter, err = relay.New(rc); err != nil {
		return nil, err
	}
	m.bridge.relays[sideInter] = m.inter
	return m, nil
}

// wrapIntra wraps the Local of the cluster's own relay (nil m: as it is).
func (m *multiCluster) wrapIntra(l relay.Local) relay.Local {
	if m == nil {
		return l
	}
	return m.bridge.local(sideIntra, l)
}

func (m *multiCluster) setIntra(r *relay.Relay) {
	if m != nil {
		m.bridge.relays[sideIntra] = r
	}
}

// start binds the inter-cluster relay and the gossip, and starts following
// the cluster.
func (m *multiCluster) start(ctx context.Context) error {
	if m == nil {
		return nil
	}
	if err := m.inter.Listen(); err != nil {
		return fmt.Errorf("shoal: start inter-cluster relay: %w", err)
	}
	if err := m.n.serve("inter-cluster relay", m.inter.Serve); err != nil {
		return err
	}
	if err := m.agent.Start(ctx); err != nil {
		return err
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	unsub := m.n.member.Subscribe(func(cluster.Event) { m.poke() })
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer unsub()
		m.loop()
	}()
	return nil
}

func (m *multiCluster) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

func (m *multiCluster) loop() {
	t := time.NewTicker(m.cfg.Tick)
	defer t.Stop()
	for {
		m.reconcile()
		select {
		case <-m.ctx.Done():
			return
		case <-m.wake:
		case <-t.C:
		}
	}
}

// close stops the loop, marks this node's entry inactive (pushed once),
// and stops the gossip and the inter-cluster relay.
func (m *multiCluster) close() error {
	if m == nil {
		return nil
	}
	if m.cancel != nil {
		m.cancel()
		m.wg.Wait()
		m.agent.SetSelf(false, "", nil)
		time.Sleep(50 * time.Millisecond) // lets the push go out
	}
	return errors.Join(m.agent.Close(), m.inter.Close())
}

// gateways computes this cluster's gateways from the view: its connected
// nodes in normal mode, with the zones gossip gives.
func (m *multiCluster) gateways(v *affinity.View) []string {
	zones := map[string]string{}
	for _, mb := range m.agent.Members() {
		if mb.ClusterID == m.n.cfg.ClusterID {
			zones[mb.Name] = mb.Zone
		}
	}
	var cands []multicluster.Candidate
	for _, nd := range v.Nodes {
		cands = append(cands, multicluster.Candidate{Name: nd.Name, Zone: zones[nd.Name],
			Active: nd.Connected && nd.Mode == affinity.ModeNormal})
	}
	return multicluster.ChooseGateways(cands, m.cfg.MaxGateways)
}

// reconcile makes the node's part match the view and the gossip: its
// gateway entry, the entries of this cluster's gone gateways, and, on a
// gateway, the channels it bridges: claimed in the cluster (so that the
// nodes with clients relay them to it) and opened on the inter-cluster
// relay with the bridging gateway of each other joined cluster that lists
// them.
func (m *multiCluster) reconcile() {
	v := m.n.member.Snapshot()
	self, cid := m.n.cfg.NodeName, m.n.cfg.ClusterID
	gws := m.gateways(&v)
	d := m.agent.Data()
	isGW := v.InMajority && slices.Contains(gws, self)
	joined := d.Config.Has(cid)

	// Gateways of this cluster no longer among gws: the first gateway
	// writes them inactive.
	if isGW && len(gws) > 0 && gws[0] == self {
		for addr, g := range d.Gateways {
			if g.ClusterID == cid && g.Status == multicluster.Active && !slices.Contains(gws, g.Node) && g.Node != self {
				m.agent.MarkInactive(addr)
			}
		}
	}

	me := v.NodeIndex(self)
	var mine []string // channels with clients in this cluster that this node bridges
	if isGW && joined {
		for ch, s := range v.Sessions {
			if multicluster.Bridge(ch, gws) == self && hasClients(s, me) {
				mine = append(mine, ch)
			}
		}
	}
	relayAddr := netip.AddrPortFrom(m.self, uint16(m.cfg.RelayPort)).String()
	m.agent.SetSelf(isGW, relayAddr, mine)

	// The remote bridge of each of mine: an active gateway of another
	// joined cluster that lists the channel.
	want := map[string]map[string]netip.AddrPort{} // channel → remote node → relay address
	for _, g := range d.Gateways {
		if g.Status != multicluster.Active || g.ClusterID == cid || !d.Config.Has(g.ClusterID) || g.Relay == "" {
			continue
		}
		ap, err := netip.ParseAddrPort(g.Relay)
		if err != nil {
			continue
		}
		for _, ch := range g.Channels {
			if slices.Contains(mine, ch) {
				if want[ch] == nil {
					want[ch] = map[string]netip.AddrPort{}
				}
				want[ch][g.Node] = ap
			}
		}
	}
	m.apply(&v, me, gws, isGW, want)
}

// hasClients: a session has clients in this cluster when a node other
// than this one holds part of it, or this one has connections in it (a
// bridge's own claim alone is not a client).
func hasClients(s affinity.Session, me int) bool {
	for _, o := range s.Owners {
		if o.Node != me || o.Connections > 0 {
			return true
		}
	}
	return false
}

// apply claims, opens and closes what want says; m.mu is taken.
func (m *multiCluster) apply(v *affinity.View, me int, gws []string, isGW bool, want map[string]map[string]netip.AddrPort) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gateway, m.gws = isGW, gws
	// Peers: every remote bridge wanted.
	peers := map[string]netip.AddrPort{}
	for _, rs := range want {
		maps.Copy(peers, rs)
	}
	for name, ap := range peers {
		if cur, ok := m.peers[name]; !ok || cur != ap {
			if err := m.inter.SetPeer(name, ap); err != nil {
				m.log.Warn("multicluster: set inter-cluster peer", "peer", name, "err", err)
				delete(peers, name)
				continue
			}
			m.peers[name] = ap
		}
	}
	// Channels no longer bridged, or bridged with fewer gateways.
	for ch, opened := range m.bridged {
		if _, ok := want[ch]; !ok {
			if err := m.inter.CloseChannel(ch); err != nil && !errors.Is(err, relay.ErrNotRelayed) {
				m.log.Debug("multicluster: close bridged channel", "channel", ch, "err", err)
			}
			delete(m.bridged, ch)
			continue
		}
		for peer := range opened {
			if _, ok := want[ch][peer]; !ok {
				delete(opened, peer) // the relay drops the channel from a removed peer's link
			}
		}
	}
	for name := range m.peers {
		if _, ok := peers[name]; !ok {
			_ = m.inter.RemovePeer(name)
			delete(m.peers, name)
			for _, opened := range m.bridged {
				delete(opened, name)
			}
		}
	}
	// Claims: a bridged channel needs this node among its owners, so that
	// the nodes with clients relay it here.
	for ch := range want {
		owners := v.Sessions[ch].Owners
		if !slices.ContainsFunc(owners, func(o affinity.Owner) bool { return o.Node == me }) {
			ctx, cancel := context.WithTimeout(m.ctx, 5*time.Second)
			_, err := m.n.member.ClaimChannel(ctx, ch)
			cancel()
			if err != nil {
				m.log.Warn("multicluster: claim bridged channel", "channel", ch, "err", err)
				continue
			}
		}
		m.claimed[ch] = true
		for peer := range want[ch] {
			if m.bridged[ch][peer] {
				continue
			}
			if err := m.inter.OpenChannel(ch, peer); err != nil {
				m.log.Warn("multicluster: open bridged channel", "channel", ch, "peer", peer, "err", err)
				continue
			}
			if m.bridged[ch] == nil {
				m.bridged[ch] = map[string]bool{}
			}
			m.bridged[ch][peer] = true
			m.log.Info("multicluster: bridging channel", "channel", ch, "peer", peer)
		}
	}
	// Claims no longer needed, released unless this node has clients.
	for ch := range m.claimed {
		if _, ok := want[ch]; ok {
			continue
		}
		delete(m.claimed, ch)
		s, ok := v.Sessions[ch]
		if !ok {
			continue
		}
		if i := slices.IndexFunc(s.Owners, func(o affinity.Owner) bool { return o.Node == me }); i >= 0 && s.Owners[i].Connections == 0 {
			ctx, cancel := context.WithTimeout(m.ctx, 5*time.Second)
			if err := m.n.member.ReleaseChannel(ctx, ch); err != nil {
				m.log.Debug("multicluster: release bridged channel", "channel", ch, "err", err)
			}
			cancel()
		}
	}
}

// ChannelCluster is where a channel has clients in a multi-cluster
// configuration: a cluster, and the gateway that bridges it there.
type ChannelCluster struct {
	ClusterID string `json:"cluster_id"`
	Gateway   string `json:"gateway"`
}

// ErrNoMultiCluster is returned by the multi-cluster methods of a node
// whose MultiCluster.Key is not set.
var ErrNoMultiCluster = errors.New("shoal: multi-cluster is off on this node (MultiClusterConfig.Key is not set)")

// SetMultiClusterConfiguration sets which clusters are joined (this
// node's among them, or it stops bridging), one version above the newest
// this node knows, and spreads it to every cluster.
func (n *Node) SetMultiClusterConfiguration(clusters []string, comment string) (*multicluster.Configuration, error) {
	if n.mc == nil {
		return nil, ErrNoMultiCluster
	}
	c, err := n.mc.agent.SetConfiguration(clusters, comment)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", cluster.ErrInvalid, err)
	}
	n.mc.poke()
	return c, nil
}

// GetMultiClusterConfiguration returns the configuration this node knows,
// nil if none was set.
func (n *Node) GetMultiClusterConfiguration() (*multicluster.Configuration, error) {
	if n.mc == nil {
		return nil, ErrNoMultiCluster
	}
	return n.mc.agent.Data().Config, nil
}

// ListGateways returns the gateway table this node knows, active and
// inactive, sorted by cluster and address.
func (n *Node) ListGateways() ([]multicluster.Gateway, error) {
	if n.mc == nil {
		return nil, ErrNoMultiCluster
	}
	d := n.mc.agent.Data()
	out := slices.Collect(maps.Values(d.Gateways))
	slices.SortFunc(out, func(a, b multicluster.Gateway) int {
		if a.ClusterID != b.ClusterID {
			if a.ClusterID < b.ClusterID {
				return -1
			}
			return 1
		}
		if a.Addr < b.Addr {
			return -1
		}
		if a.Addr > b.Addr {
			return 1
		}
		return 0
	})
	return out, nil
}

// ListChannelClusters returns the clusters where channel has clients, as
// the active gateways of the joined clusters list it, sorted by cluster.
func (n *Node) ListChannelClusters(channel string) ([]ChannelCluster, error) {
	if n.mc == nil {
		return nil, ErrNoMultiCluster
	}
	if channel == "" {
		return nil, fmt.Errorf("%w: channel_id is empty", cluster.ErrInvalid)
	}
	d := n.mc.agent.Data()
	var out []ChannelCluster
	for _, g := range d.Gateways {
		if g.Status == multicluster.Active && d.Config.Has(g.ClusterID) && slices.Contains(g.Channels, channel) {
			out = append(out, ChannelCluster{ClusterID: g.ClusterID, Gateway: g.Node})
		}
	}
	slices.SortFunc(out, func(a, b ChannelCluster) int {
		if a.ClusterID < b.ClusterID {
			return -1
		}
		if a.ClusterID > b.ClusterID {
			return 1
		}
		return 0
	})
	return out, nil
}

// IsGateway reports whether this node is one of its cluster's gateways
// now.
func (n *Node) IsGateway() bool {
	if n.mc == nil {
		return false
	}
	n.mc.mu.Lock()
	defer n.mc.mu.Unlock()
	return n.mc.gateway
}

// InterClusterRelay returns the inter-cluster relay, nil with
// multi-cluster off (its Stats count what crosses between clusters).
func (n *Node) InterClusterRelay() *relay.Relay {
	if n.mc == nil {
		return nil
	}
	return n.mc.inter
}

// GossipAddr returns the node's multi-cluster gossip address, HOST:PORT,
// "" with multi-cluster off.
func (n *Node) GossipAddr() string {
	if n.mc == nil {
		return ""
	}
	return n.mc.agent.Addr()
}
