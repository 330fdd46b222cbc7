package multicluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/shoal-sfu/shoal/cluster"
	"github.com/shoal-sfu/shoal/internal/slogstd"
)

// DefaultSyncInterval is the background exchange's mean period.
const DefaultSyncInterval = 30 * time.Second

// AgentConfig configures an Agent.
type AgentConfig struct {
	// Service and ClusterID are this node's (cluster.Config.ServiceID,
	// ClusterID); ClusterID is required. Messages of another service are
	// refused by memberlist's label and ignored if they get through.
	Service, ClusterID string
	// NodeName is this node's node_name.
	NodeName string
	// Zone is this node's zone, gossiped so that its cluster can spread
	// its gateways across zones.
	Zone string
	// Key is the multi-cluster key, the same in every cluster of the
	// configuration: 16, 24 or 32 bytes. It encrypts and authenticates the
	// gossip (memberlist's AES-GCM).
	Key []byte
	// BindAddr is where the gossip listens (TCP and UDP); port 0 picks a
	// free port (see Addr).
	BindAddr netip.AddrPort
	// AdvertiseAddr is the address other nodes use; zero means BindAddr's.
	AdvertiseAddr netip.Addr
	// Seeds are gossip addresses (HOST:PORT) to join at start besides the
	// gateways the channels list: the other nodes of this cluster, say.
	Seeds []string
	// Channels are the gossip channels: read at start, written on each
	// change and in the background exchange.
	Channels []GossipChannel
	// SyncInterval is the mean period of the background exchange with one
	// random partner among the other nodes and the channels; each wait is
	// drawn from 0.75 to 1.25 times it. 0 means DefaultSyncInterval.
	SyncInterval time.Duration
	// OnChange, when set, is told every change merged from elsewhere or
	// made here (the delta), in order, on the agent's own goroutine.
	OnChange func(delta Data)
	// Tune, when set, adjusts memberlist's configuration after the agent
	// has set it (memberlist's WAN profile): tests shorten its timers.
	Tune func(*memberlist.Config)
	// DropPush, for tests, is asked before each push of a change to
	// another node (by its gossip address) or a channel (by its Name):
	// true drops the push, as a lost message.
	DropPush func(to string) bool
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// FastTune is an AgentConfig.Tune for loopback tests: memberlist's LAN
// timers (probes every 200 ms), so that a stopped member is seen within
// about a second.
func FastTune(c *memberlist.Config) {
	c.ProbeInterval = 200 * time.Millisecond
	c.ProbeTimeout = 150 * time.Millisecond
	c.SuspicionMult = 2
	c.GossipInterval = 50 * time.Millisecond
	c.TCPTimeout = 2 * time.Second
}

// StarvedTune is FastTune with memberlist's LAN failure detection (its
// probe interval and timeout, suspicion and awareness): fast gossip, but
// live members are not declared failed when the processes are starved of
// CPU, as on a loaded 2-core test machine running -race.
func StarvedTune(c *memberlist.Config) {
	FastTune(c)
	w := memberlist.DefaultLANConfig()
	c.ProbeInterval, c.ProbeTimeout = w.ProbeInterval, w.ProbeTimeout
	c.SuspicionMult, c.AwarenessMaxMultiplier = w.SuspicionMult, w.AwarenessMaxMultiplier
}

// Agent spreads the multi-cluster state: it is one member of a memberlist
// pool (WAN profile) of the nodes of every cluster of the configuration,
// which carries its messages, encrypted with the multi-cluster key. A
// change made here is pushed at once to every member and every channel
// (fast, not reliable); every SyncInterval (jittered) it exchanges the
// whole state with one random partner, a member or a channel, which
// repairs what was lost. Liveness is memberlist's.
type Agent struct {
	cfg  AgentConfig
	log  *slog.Logger
	ml   *memberlist.Memberlist
	addr string

	mu       sync.Mutex
	members  map[string]Member // memberlist's live members, by memberlist name (copied in its events)
	data     Data
	changes  Data // merged, not yet told to OnChange
	pending  Data // made here, not yet pushed
	badMsgs  int
	lastWarn time.Time

	wake   chan struct{} // pushLoop
	notify chan struct{} // changeLoop
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed bool
}

// NewAgent checks cfg; Start starts the agent.
func NewAgent(cfg AgentConfig) (*Agent, error) {
	var errs []error
	if err := cluster.CheckClusterID(cfg.ClusterID); err != nil {
		errs = append(errs, err)
	}
	if err := cluster.CheckServiceID(cfg.Service); err != nil {
		errs = append(errs, err)
	}
	if cfg.NodeName == "" {
		errs = append(errs, errors.New("multicluster: NodeName is required"))
	}
	switch len(cfg.Key) {
	case 16, 24, 32:
	default:
		errs = append(errs, fmt.Errorf("multicluster: the multi-cluster key is %d bytes, want 16, 24 or 32", len(cfg.Key)))
	}
	if !cfg.BindAddr.IsValid() {
		errs = append(errs, errors.New("multicluster: BindAddr is required"))
	}
	if cfg.SyncInterval < 0 {
		errs = append(errs, fmt.Errorf("multicluster: SyncInterval %v is negative", cfg.SyncInterval))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cfg.SyncInterval == 0 {
		cfg.SyncInterval = DefaultSyncInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Agent{cfg: cfg, log: cfg.Logger.With("component", "multicluster"), members: map[string]Member{},
		wake: make(chan struct{}, 1), notify: make(chan struct{}, 1)}, nil
}

// Start binds the gossip port, joins the seeds and the gateways the
// channels list, takes what the channels hold, and starts the push and
// background loops. ctx bounds the start only.
func (a *Agent) Start(ctx context.Context) error {
	mc := memberlist.DefaultWANConfig()
	mc.Name = a.cfg.ClusterID + "/" + a.cfg.NodeName
	mc.BindAddr = a.cfg.BindAddr.Addr().String()
	mc.BindPort = int(a.cfg.BindAddr.Port())
	adv := a.cfg.AdvertiseAddr
	if !adv.IsValid() {
		adv = a.cfg.BindAddr.Addr()
	}
	mc.AdvertiseAddr = adv.String()
	mc.AdvertisePort = mc.BindPort
	mc.SecretKey = a.cfg.Key
	mc.Label = "shoal-multicluster:" + a.cfg.Service
	mc.PushPullInterval = 0 // the background exchange is syncLoop's
	// A push or exchange with a member that does not answer waits this
	// long (WAN's default is 30 s); Close waits for pushes in flight.
	mc.TCPTimeout = 10 * time.Second
	mc.Delegate = delegate{a}
	mc.Events = events{a}
	mc.Logger = slogstd.New(a.cfg.Logger, "memberlist-wan")
	if a.cfg.Tune != nil {
		a.cfg.Tune(mc)
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		return fmt.Errorf("multicluster: start gossip: %w", err)
	}
	a.ml = ml
	ln := ml.LocalNode()
	a.addr = net.JoinHostPort(ln.Addr.String(), strconv.Itoa(int(ln.Port)))
	a.ctx, a.cancel = context.WithCancel(context.Background())

	// Bootstrap: what the channels hold, then the community.
	if len(a.cfg.Channels) > 0 {
		got, failed, err := SynchronizeAll(ctx, a.cfg.Channels, a.Data())
		for _, f := range failed {
			a.log.Warn("multicluster: gossip channel unavailable at start", "err", f)
		}
		if err == nil {
			a.merge(got)
		}
	}
	a.joinCommunity()
	a.wg.Add(3)
	go func() { defer a.wg.Done(); a.pushLoop() }()
	go func() { defer a.wg.Done(); a.syncLoop() }()
	go func() { defer a.wg.Done(); a.changeLoop() }()
	return nil
}

// joinCommunity joins the active gateways known that are not live
// members (one at a time, at random: a dead address costs a dial
// timeout), and the seeds when this
// node sees no other member: at start, and after a partition, when
// memberlist has dropped the far side.
func (a *Agent) joinCommunity() {
	live := map[string]bool{}
	others := a.others()
	for _, m := range others {
		live[m.Addr] = true
	}
	var targets []string
	if len(others) == 0 {
		targets = slices.Clone(a.cfg.Seeds)
	}
	var missing []string
	for _, g := range a.Data().Gateways {
		if g.Status == Active && g.Addr != a.addr && !live[g.Addr] {
			missing = append(missing, g.Addr)
		}
	}
	rand.Shuffle(len(missing), func(i, j int) { missing[i], missing[j] = missing[j], missing[i] })
	targets = append(targets, missing[:min(1, len(missing))]...)
	if len(targets) == 0 {
		return
	}
	if n, err := a.ml.Join(targets); n == 0 && err != nil {
		a.log.Debug("multicluster: join gossip", "err", err)
	}
}

// Addr is the agent's gossip address, HOST:PORT (valid after Start): the
// key of its gateway entry.
func (a *Agent) Addr() string { return a.addr }

// Data returns a copy of the state.
func (a *Agent) Data() Data {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.data.Clone()
}

// Member is a node of the gossip pool.
type Member struct {
	Name, ClusterID, Zone, Addr string

	mlName string
	ip     net.IP
	port   uint16
}

// Members returns the live members of the gossip pool, this node too,
// sorted by name.
func (a *Agent) Members() []Member {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]Member, 0, len(a.members))
	for _, m := range a.members {
		out = append(out, m)
	}
	slices.SortFunc(out, func(x, y Member) int { return strings.Compare(x.Name, y.Name) })
	return out
}

// others returns the live members other than this node.
func (a *Agent) others() []Member {
	var out []Member
	for _, m := range a.Members() {
		if m.Addr != a.addr {
			out = append(out, m)
		}
	}
	return out
}

// events keeps Agent.members: memberlist calls them under its own lock
// with its nodes, whose fields it changes in place later, so they are
// copied here and never read elsewhere.
type events struct{ a *Agent }

func (e events) NotifyJoin(n *memberlist.Node)   { e.a.setMember(n) }
func (e events) NotifyUpdate(n *memberlist.Node) { e.a.setMember(n) }
func (e events) NotifyLeave(n *memberlist.Node) {
	e.a.mu.Lock()
	delete(e.a.members, n.Name)
	e.a.mu.Unlock()
}

func (a *Agent) setMember(n *memberlist.Node) {
	cid, zone := decodeMeta(n.Meta)
	name := strings.TrimPrefix(n.Name, cid+"/")
	m := Member{Name: name, ClusterID: cid, Zone: zone, Addr: net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port))),
		mlName: n.Name, ip: slices.Clone(n.Addr), port: n.Port}
	a.mu.Lock()
	a.members[n.Name] = m
	a.mu.Unlock()
}

// SetConfiguration sets the multi-cluster configuration (one version above
// the newest this node knows) and spreads it.
func (a *Agent) SetConfiguration(clusters []string, comment string) (*Configuration, error) {
	a.mu.Lock()
	c, err := NewConfiguration(clusters, comment, a.cfg.NodeName, a.data.Config, time.Now())
	a.mu.Unlock()
	if err != nil {
		return nil, err
	}
	a.change(Data{Config: c})
	return c, nil
}

// SetSelf writes this node's gateway entry: active with its relay address
// and the channels it bridges, or inactive. Nothing is written when the
// entry would not change (or when an inactive node has no entry).
func (a *Agent) SetSelf(active bool, relay string, channels []string) {
	channels = slices.Clone(channels)
	slices.Sort(channels)
	channels = slices.Compact(channels)
	a.mu.Lock()
	cur, ok := a.data.Gateways[a.addr]
	st := Inactive
	if active {
		st = Active
	} else {
		relay, channels = "", nil
	}
	if !ok && !active || ok && cur.Status == st && cur.Relay == relay && cur.ClusterID == a.cfg.ClusterID &&
		cur.Node == a.cfg.NodeName && slices.Equal(cur.Channels, channels) {
		a.mu.Unlock()
		return
	}
	g := Gateway{Addr: a.addr, ClusterID: a.cfg.ClusterID, Node: a.cfg.NodeName, Relay: relay, Status: st,
		Version: cur.Version + 1, Channels: channels}
	a.mu.Unlock()
	a.change(Data{Gateways: map[string]Gateway{g.Addr: g}})
}

// MarkInactive writes the entry of a gateway of this cluster whose node is
// gone inactive, one version above the one known. Only for this cluster's
// gateways; it does nothing for an entry already inactive.
func (a *Agent) MarkInactive(addr string) {
	a.mu.Lock()
	cur, ok := a.data.Gateways[addr]
	a.mu.Unlock()
	if !ok || cur.Status != Active || cur.ClusterID != a.cfg.ClusterID || addr == a.addr {
		return
	}
	cur.Status, cur.Version, cur.Relay, cur.Channels = Inactive, cur.Version+1, "", nil
	a.change(Data{Gateways: map[string]Gateway{addr: cur}})
}

// change merges a change made here and queues its push.
func (a *Agent) change(d Data) {
	a.mu.Lock()
	delta := a.data.Merge(d)
	a.pending.Merge(delta)
	a.changes.Merge(delta)
	a.mu.Unlock()
	signal(a.wake)
	signal(a.notify)
}

// merge merges what came from elsewhere.
func (a *Agent) merge(d Data) {
	a.mu.Lock()
	delta := a.data.Merge(d)
	if !delta.Empty() {
		a.changes.Merge(delta)
	}
	a.mu.Unlock()
	if !delta.Empty() {
		signal(a.notify)
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// pushLoop pushes the changes made here to every member and channel, once
// each, without retry.
func (a *Agent) pushLoop() {
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-a.wake:
		}
		a.mu.Lock()
		d := a.pending
		a.pending = Data{}
		a.mu.Unlock()
		if d.Empty() {
			continue
		}
		b, err := a.message(KindPush, d).Encode()
		if err != nil {
			a.log.Error("multicluster: change not pushed", "err", err)
			continue
		}
		// To every member and channel at once: one that does not answer
		// costs its own timeout, not the others' push.
		var wg sync.WaitGroup
		for _, m := range a.others() {
			if a.cfg.DropPush != nil && a.cfg.DropPush(m.Addr) {
				continue
			}
			wg.Go(func() {
				if err := a.ml.SendReliable(&memberlist.Node{Name: m.mlName, Addr: m.ip, Port: m.port}, b); err != nil {
					a.log.Debug("multicluster: push", "to", m.Addr, "err", err)
				}
			})
		}
		for _, c := range a.cfg.Channels {
			if a.cfg.DropPush != nil && a.cfg.DropPush(c.Name()) {
				continue
			}
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(a.ctx, 5*time.Second)
				defer cancel()
				if err := c.Publish(ctx, d); err != nil {
					a.log.Debug("multicluster: push to gossip channel", "channel", c.Name(), "err", err)
				}
			})
		}
		wg.Wait()
	}
}

// syncLoop exchanges the whole state with one random partner every
// SyncInterval, jittered.
func (a *Agent) syncLoop() {
	for {
		wait := time.Duration(float64(a.cfg.SyncInterval) * (0.75 + rand.Float64()/2))
		t := time.NewTimer(wait)
		select {
		case <-a.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		a.SyncOnce()
	}
}

// SyncOnce runs one background exchange now: with one random partner
// among the other members and the channels (after joining the active
// gateways that are not live members, if any).
func (a *Agent) SyncOnce() {
	a.joinCommunity()
	var members []string
	for _, m := range a.others() {
		members = append(members, m.Addr)
	}
	k := len(members) + len(a.cfg.Channels)
	if k == 0 {
		return
	}
	i := rand.IntN(k)
	if i < len(members) {
		// memberlist's push-pull: both sides send their state
		// (LocalState) and merge the other's (MergeRemoteState).
		if _, err := a.ml.Join([]string{members[i]}); err != nil {
			a.log.Debug("multicluster: background exchange", "with", members[i], "err", err)
		}
		return
	}
	c := a.cfg.Channels[i-len(members)]
	ctx, cancel := context.WithTimeout(a.ctx, 10*time.Second)
	defer cancel()
	got, err := c.Synchronize(ctx, a.Data())
	if err != nil {
		a.log.Debug("multicluster: background exchange", "with", c.Name(), "err", err)
		return
	}
	a.merge(got)
}

// changeLoop tells OnChange each change, in order.
func (a *Agent) changeLoop() {
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-a.notify:
		}
		a.mu.Lock()
		d := a.changes
		a.changes = Data{}
		a.mu.Unlock()
		if !d.Empty() && a.cfg.OnChange != nil {
			a.cfg.OnChange(d)
		}
	}
}

func (a *Agent) message(kind string, d Data) Message {
	return Message{Service: a.cfg.Service, Cluster: a.cfg.ClusterID, From: a.cfg.NodeName, Kind: kind, Data: d}
}

// received merges a message from another member; a malformed one, or one
// of another service, is dropped and counted, with one warning per 10 s.
func (a *Agent) received(b []byte) {
	m, err := Decode(b)
	if err == nil && m.Service != a.cfg.Service {
		err = fmt.Errorf("message of service %q", m.Service)
	}
	if err != nil {
		a.mu.Lock()
		a.badMsgs++
		n, warn := a.badMsgs, time.Since(a.lastWarn) > 10*time.Second
		if warn {
			a.lastWarn = time.Now()
		}
		a.mu.Unlock()
		if warn {
			a.log.Warn("multicluster: gossip message dropped", "err", err, "dropped_so_far", n)
		}
		return
	}
	a.merge(m.Data)
}

// Close leaves the gossip pool and stops the loops.
func (a *Agent) Close() error {
	a.mu.Lock()
	if a.closed || a.ml == nil {
		a.closed = true
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	a.mu.Unlock()
	a.cancel()
	a.wg.Wait()
	_ = a.ml.Leave(time.Second)
	return a.ml.Shutdown()
}

// delegate is memberlist's view of the agent.
type delegate struct{ a *Agent }

func (d delegate) NodeMeta(limit int) []byte {
	m := encodeMeta(d.a.cfg.ClusterID, d.a.cfg.Zone)
	if len(m) > limit {
		return m[:0]
	}
	return m
}

func (d delegate) NotifyMsg(b []byte)                { d.a.received(b) }
func (d delegate) GetBroadcasts(_, _ int) [][]byte   { return nil }
func (d delegate) MergeRemoteState(b []byte, _ bool) { d.a.received(b) }

func (d delegate) LocalState(bool) []byte {
	b, err := d.a.message(KindSync, d.a.Data()).Encode()
	if err != nil {
		d.a.log.Error("multicluster: state not sent", "err", err)
		return nil
	}
	return b
}

// encodeMeta: cluster id, a zero byte, zone.
func encodeMeta(cid, zone string) []byte { return []byte(cid + "\x00" + zone) }

func decodeMeta(b []byte) (cid, zone string) {
	for i, c := range b {
		if c == 0 {
			return string(b[:i]), string(b[i+1:])
		}
	}
	return string(b), ""
}
