package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
	raftwal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/serf/serf"
	"golang.org/x/sync/errgroup"

	"github.com/shoal-sfu/shoal/affinity"
	"github.com/shoal-sfu/shoal/internal/clusterkey"
	"github.com/shoal-sfu/shoal/internal/lifecycle"
)

// Node is one cluster member, on serf and Raft.
// Create it with New, then Start it; Close stops it.
type Node struct {
	cfg    Config
	name   NodeName
	self   string
	boot   string
	logger *slog.Logger
	fsm    *fsm
	raftC  raftCounters // metrics.go

	// mu is held by Start, by Close while it marks the node closed, and by
	// recoverHere while it replaces Raft: one at a time.
	mu     sync.Mutex
	life   lifecycle.State
	cancel context.CancelFunc
	eg     *errgroup.Group

	// Set by Start, read-only after.
	serf       *serf.Serf
	raftp      atomic.Pointer[raft.Raft] // replaced only by recoverRaft; use rft
	raftConf   raft.Config               // template for each Raft instance
	raftLogs   raft.LogStore
	raftStable raft.StableStore
	raftSnaps  raft.SnapshotStore
	muxPort    int
	wal        *raftwal.WAL
	walMeta    *metadb.BoltMetaDB // raftwal.WAL.Close leaves it open
	mux        *mux
	rpc        *rpcClient
	addr       string // Raft and RPC address, HOST:PORT
	advertise  netip.Addr
	serfPort   int
	serfEvents chan serf.Event

	done  chan struct{} // closed by Close
	dirty chan struct{} // view rebuild wanted; capacity 1

	snap      atomic.Pointer[state]
	rebuildMu sync.Mutex // one rebuild at a time, so snapshots never go back

	local struct {
		sync.Mutex
		mode     affinity.Mode
		reason   string
		claims   map[string]bool
		releases map[string]releaseState // this node's releases whose end may be unreported (release_report.go)
		total    int
		channels map[string]int
		seq      uint64
	}
	loadDirty chan struct{}
	modeMu    sync.Mutex // one SetMode at a time: save, then set (modefile.go)

	// leaderMu serialises the leader's membership changes (register,
	// purge, housekeeping) so that they decide on fresh state.
	leaderMu sync.Mutex
	// registeredAt records, under leaderMu, when this leader registered a
	// node, so that housekeeping gives gossip time to show the new run.
	registeredAt map[string]time.Time
	mem          membership

	loadsMu sync.Mutex
	loads   map[string]loadReport

	subsMu sync.Mutex
	subs   map[*subscriber]struct{}
	subsWG sync.WaitGroup
}

// New checks cfg and returns a Node. It starts nothing.
func New(cfg Config) (*Node, error) {
	cfg = cfg.withDefaults()
	nn, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	var b [8]byte
	rand.Read(b[:])
	n := &Node{
		cfg:          cfg,
		name:         nn,
		self:         nn.String(),
		boot:         hex.EncodeToString(b[:]),
		logger:       cfg.Logger.With("component", "cluster", "node", nn.String()),
		done:         make(chan struct{}),
		dirty:        make(chan struct{}, 1),
		loadDirty:    make(chan struct{}, 1),
		loads:        map[string]loadReport{},
		registeredAt: map[string]time.Time{},
		subs:         map[*subscriber]struct{}{},
	}
	n.local.claims = map[string]bool{}
	n.local.channels = map[string]int{}
	n.local.releases = map[string]releaseState{}
	n.fsm = newFSM(n.markDirty)
	n.fsm.onRelease = n.releaseApplied
	n.rebuild() // a usable snapshot before Start
	return n, nil
}

// Name returns this node's node_name.
func (n *Node) Name() string { return n.self }

func (n *Node) markDirty() {
	select {
	case n.dirty <- struct{}{}:
	default:
	}
}

// Start binds the node-to-node ports and starts gossip and Raft. A regular
// node with a DataDir from an earlier run rejoins its cluster by itself.
// With Cluster off it only marks the node started. ctx bounds the start
// only.
func (n *Node) Start(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.life.Started() || n.life.Closed() {
		return n.life.Start("cluster") // the error that says which
	}
	if err := n.loadMode(); err != nil {
		return err // the node stays new
	}
	rctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	n.eg, rctx = errgroup.WithContext(rctx)
	if !n.cfg.Cluster {
		n.life.Start("cluster") // cannot fail: n.mu is held
		n.rebuild()
		n.eg.Go(func() error { n.viewLoop(rctx); return nil })
		return nil
	}
	if err := n.startCluster(ctx, rctx); err != nil {
		cancel()
		n.stopCluster()
		return err // the node stays new
	}
	return n.life.Start("cluster") // cannot fail: n.mu is held
}

func (n *Node) startCluster(ctx, rctx context.Context) error {
	cfg := n.cfg
	t := cfg.Timing
	// serf, memberlist and raft log with their own name as the component.
	libLogs := newLibLogs(cfg.Logger, n.self)
	adv := cfg.AdvertiseAddr
	if !adv.IsValid() {
		adv = n.name.Addr
	}
	if !adv.IsValid() {
		ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", n.name.Host)
		if err != nil || len(ips) == 0 {
			return fmt.Errorf("cluster: resolve node_name host %q: %v", n.name.Host, err)
		}
		adv = ips[0]
	}
	adv = adv.Unmap()
	n.advertise = adv
	bind := cfg.BindAddr
	if !bind.IsValid() {
		bind = adv
	}
	id, err := clusterkey.Derive(cfg.ClusterKey, "cluster")
	if err != nil {
		return err
	}

	// Gossip: the first port of the range free for TCP and UDP.
	var nt *memberlist.NetTransport
	port := cfg.ListenMinPort
	for ; port <= cfg.ListenMaxPort-1; port++ {
		nt, err = memberlist.NewNetTransport(&memberlist.NetTransportConfig{
			BindAddrs: []string{bind.String()}, BindPort: port,
			Logger: libLogs.memberlist,
		})
		if err == nil {
			break
		}
	}
	if nt == nil {
		return fmt.Errorf("cluster: no free gossip port in %d-%d on %v: %w", cfg.ListenMinPort, cfg.ListenMaxPort-1, bind, err)
	}
	n.serfPort = port
	// Raft and RPC: the next free TCP port.
	var ln net.Listener
	for p := port + 1; p <= cfg.ListenMaxPort; p++ {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(bind, uint16(p)).String())
		if err == nil {
			break
		}
	}
	if ln == nil {
		nt.Shutdown()
		return fmt.Errorf("cluster: no free node-to-node port in %d-%d on %v: %w", port+1, cfg.ListenMaxPort, bind, err)
	}
	muxPort := ln.Addr().(*net.TCPAddr).Port
	n.addr = netip.AddrPortFrom(adv, uint16(muxPort)).String()
	n.mux = &mux{ln: ln, tls: id.TLSConfig(), local: adv, bind: bind, faults: cfg.Faults,
		timeout: t.RPCTimeout, serve: n.serveRPC, logger: n.logger}
	n.mux.start()
	n.rpc = &rpcClient{m: n.mux, idle: map[string][]*rpcConn{}}

	// Raft.
	hl := libLogs.raft
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(n.self)
	rc.HeartbeatTimeout = t.HeartbeatTimeout
	rc.ElectionTimeout = t.ElectionTimeout
	rc.LeaderLeaseTimeout = t.LeaderLeaseTimeout
	rc.CommitTimeout = t.CommitTimeout
	rc.Logger = hl
	n.raftConf = *rc
	var (
		logs   raft.LogStore
		stable raft.StableStore
		snaps  raft.SnapshotStore
	)
	if cfg.DataDir != "" && !cfg.Temporary {
		walDir := filepath.Join(cfg.DataDir, "raft-wal")
		if err := os.MkdirAll(walDir, 0o700); err != nil {
			return fmt.Errorf("cluster: data dir: %w", err)
		}
		meta := &metadb.BoltMetaDB{}
		n.walMeta = meta
		w, err := raftwal.Open(walDir, raftwal.WithMetaStore(meta), raftwal.WithLogger(hl.Named("wal")))
		if err != nil {
			return fmt.Errorf("cluster: open raft log in %s: %w", walDir, err)
		}
		n.wal = w
		logs, stable = w, w
		fs, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 2, hl)
		if err != nil {
			return fmt.Errorf("cluster: snapshot store in %s: %w", cfg.DataDir, err)
		}
		snaps = fs
	} else {
		s := raft.NewInmemStore()
		logs, stable, snaps = s, s, raft.NewInmemSnapshotStore()
	}
	n.raftLogs, n.raftStable, n.raftSnaps, n.muxPort = logs, stable, snaps, muxPort
	trans := n.newRaftTransport()
	r, err := raft.NewRaft(rc, n.fsm, logs, stable, snaps, trans)
	if err != nil {
		trans.Close()
		return fmt.Errorf("cluster: start raft: %w", err)
	}
	n.raftp.Store(r)

	// Serf.
	sc := serf.DefaultConfig()
	sc.Init()
	sc.NodeName = n.self
	sc.Tags = n.tags()
	sc.Merge = sameService{svc: cfg.ServiceID, cid: cfg.ClusterID}
	n.serfEvents = make(chan serf.Event, 256)
	sc.EventCh = n.serfEvents
	sc.Logger = libLogs.serf
	sc.ReconnectInterval = t.ReconnectInterval
	sc.ReconnectTimeout = t.ReconnectTimeout
	sc.TombstoneTimeout = t.ReconnectTimeout
	sc.LeavePropagateDelay = t.LeavePropagateDelay
	sc.BroadcastTimeout = 5 * t.LeavePropagateDelay
	sc.ReapInterval = max(t.Tick*10, time.Second)
	if cfg.DataDir != "" && !cfg.Temporary {
		sc.SnapshotPath = filepath.Join(cfg.DataDir, "serf.snapshot")
		sc.RejoinAfterLeave = true
	}
	mc := memberlist.DefaultLANConfig()
	mc.Name = n.self
	mc.BindAddr = bind.String()
	mc.BindPort = port
	mc.AdvertiseAddr = adv.String()
	mc.AdvertisePort = port
	mc.SecretKey = cfg.ClusterKey
	mc.ProbeInterval = t.ProbeInterval
	mc.ProbeTimeout = t.ProbeTimeout
	mc.SuspicionMult = t.SuspicionMult
	mc.AwarenessMaxMultiplier = t.AwarenessMaxMultiplier
	mc.GossipInterval = t.GossipInterval
	mc.GossipToTheDeadTime = t.GossipToTheDeadTime
	mc.PushPullInterval = t.PushPullInterval
	mc.TCPTimeout = t.RPCTimeout
	mc.Logger = libLogs.memberlist
	if cfg.Faults != nil {
		mc.Transport = newFaultTransport(nt, cfg.Faults, adv)
	} else {
		mc.Transport = nt
	}
	sc.MemberlistConfig = mc
	s, err := serf.Create(sc)
	if err != nil {
		mc.Transport.Shutdown()
		return fmt.Errorf("cluster: start gossip: %w", err)
	}
	n.serf = s

	n.eg.Go(func() error { n.drainSerf(rctx); return nil })
	n.eg.Go(func() error { n.viewLoop(rctx); return nil })
	n.eg.Go(func() error { n.housekeeping(rctx); return nil })
	n.eg.Go(func() error { n.loadLoop(rctx); return nil })
	n.eg.Go(func() error { n.membershipLoop(rctx); return nil })
	n.logger.Info("cluster: node started", "gossip", netip.AddrPortFrom(adv, uint16(port)), "rpc", n.addr,
		"temporary", cfg.Temporary)
	return nil
}

// newRaftTransport returns a Raft transport on the mux. Each Raft instance
// needs its own: Raft closes its transport when it shuts down.
func (n *Node) newRaftTransport() *raft.NetworkTransport {
	sl := &streamLayer{m: n.mux, addr: &net.TCPAddr{IP: n.advertise.AsSlice(), Port: n.muxPort}, closed: make(chan struct{})}
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: guardedStream{sl, &n.mem}, MaxPool: 3, Timeout: n.cfg.Timing.RPCTimeout, Logger: n.raftConf.Logger,
		// 1 turns pipelining off: raft v1.8.0's pipeline can deadlock on
		// shutdown (pipelineSend blocked on a full in-flight channel whose
		// decoder waits for a consumer that has stopped), seen in tests.
		MaxRPCsInFlight: 1,
	})
}

// rft returns the running Raft instance, or nil before Start. InitCluster
// after a breakdown replaces it (recoverRaft), so it is read each time.
func (n *Node) rft() *raft.Raft { return n.raftp.Load() }

// Close leaves the cluster and stops the node. A temporary node is erased
// from the cluster; a regular node stays a member and rejoins when it
// starts again from the same DataDir. Close is safe to call twice.
func (n *Node) Close() error {
	n.mu.Lock()
	first, started := n.life.Close()
	n.mu.Unlock()
	if !first {
		return nil
	}
	close(n.done)
	if started && n.cfg.Cluster {
		if r := n.rft(); r != nil && !n.cfg.Temporary && r.State() == raft.Leader {
			st := n.snap.Load()
			if len(st.voters) > 1 {
				n.rft().LeadershipTransfer().Error()
			}
		}
		if n.cfg.Temporary {
			n.deregister()
		}
		if n.serf != nil {
			if err := n.serf.Leave(); err != nil {
				n.logger.Debug("cluster: leave", "err", err)
			}
		}
	}
	if n.cancel != nil {
		n.cancel()
	}
	n.stopCluster()
	if n.eg != nil {
		n.eg.Wait()
	}
	n.subsMu.Lock()
	for s := range n.subs {
		s.stop()
	}
	n.subsMu.Unlock()
	n.subsWG.Wait()
	return nil
}

// deregister asks the leader to erase this temporary node now that it
// stops (a stopped temporary node is erased). Without an answer in
// RPCTimeout the leader erases it later, once gossip shows it left.
func (n *Node) deregister() {
	if st := n.snap.Load(); st == nil || !st.view.InMajority {
		return // not registered, or cut off: gossip and the leader decide
	}
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.Timing.RPCTimeout)
	defer cancel()
	if _, err := n.leaderDo(ctx, rpcRequest{Op: rpcDeregister, Info: &NodeInfo{Name: n.self, Boot: n.boot, Temporary: true}}); err != nil {
		n.logger.Info("cluster: stopping temporary node not erased yet; the leader will once its leave is seen", "err", err)
	}
}

// stopCluster stops what startCluster started, in reverse.
func (n *Node) stopCluster() {
	if n.serf != nil {
		n.serf.Shutdown()
	}
	if r := n.rft(); r != nil {
		r.Shutdown().Error()
	}
	if n.rpc != nil {
		n.rpc.close()
	}
	if n.mux != nil {
		n.mux.close()
	}
	if n.wal != nil {
		n.wal.Close()
	}
	if n.walMeta != nil {
		n.walMeta.Close()
	}
}

// check returns an error wrapping net.ErrClosed after Close, ErrNotStarted
// before Start.
func (n *Node) check(op string) error {
	n.mu.Lock() // waits for a Start or a Raft replacement in progress
	defer n.mu.Unlock()
	if err := n.life.Err("cluster: " + op); err != nil {
		return err
	}
	if !n.life.Started() {
		return fmt.Errorf("cluster: %s: %w", op, ErrNotStarted)
	}
	return nil
}

func (n *Node) drainSerf(ctx context.Context) {
	for {
		select {
		case <-n.serfEvents:
			n.markDirty()
		case <-ctx.Done():
			return
		}
	}
}

// viewLoop rebuilds the snapshot when something changed, and every tick.
// It does no network I/O so that the view stays fresh whatever the peers do.
func (n *Node) viewLoop(ctx context.Context) {
	every(ctx, n.cfg.Timing.Tick, n.dirty, n.rebuild)
}

// every calls fn on each tick of period and each signal on wake (nil: ticks
// only), one call at a time, until ctx ends.
func every(ctx context.Context, period time.Duration, wake <-chan struct{}, fn func()) {
	tk := time.NewTicker(period)
	defer tk.Stop()
	for {
		select {
		case <-wake:
		case <-tk.C:
		case <-ctx.Done():
			return
		}
		if ctx.Err() != nil {
			return
		}
		fn()
	}
}

// Snapshot returns the current view of the cluster. It is cheap (an atomic
// load) and consistent; the View's slices and map are shared with other
// callers and must not be modified.
func (n *Node) Snapshot() affinity.View { return n.snap.Load().view }

// members returns serf's members by name.
func (n *Node) members() map[string]serf.Member {
	if n.serf == nil {
		return nil
	}
	ms := n.serf.Members()
	out := make(map[string]serf.Member, len(ms))
	for _, m := range ms {
		out[m.Name] = m
	}
	return out
}

func (n *Node) selfInfo() NodeInfo {
	return NodeInfo{
		Name: n.self, Temporary: n.cfg.Temporary, SignalingURL: n.cfg.ExternalSignalingURL,
		APIURL: n.cfg.ExternalAPIURL, MaxConnections: n.cfg.MaxConnections, MaxNodes: n.cfg.MaxNodes,
		Version: n.cfg.Version, Addr: n.addr, Boot: n.bootIfTemporary(),
	}
}

func (n *Node) bootIfTemporary() string {
	if n.cfg.Temporary {
		return n.boot
	}
	return ""
}

// raftServers returns the latest Raft configuration, or nil.
func (n *Node) raftServers() []raft.Server {
	r := n.rft()
	if r == nil {
		return nil
	}
	f := r.GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	return f.Configuration().Servers
}

// rebuild gathers the view's inputs from the local state, Raft and serf,
// computes the snapshot with computeView, stores it, and tells subscribers
// what changed.
func (n *Node) rebuild() {
	n.rebuildMu.Lock()
	defer n.rebuildMu.Unlock()
	in := viewInputs{self: n.self, boot: n.boot, cluster: n.cfg.Cluster, temporary: n.cfg.Temporary,
		settings: n.cfg.settings(), selfInfo: n.selfInfo(), now: time.Now()}
	in.fsm = n.fsm.copyState()
	n.local.Lock()
	in.selfMode, in.selfReason = n.local.mode, n.local.reason
	in.selfLoad = loadReport{Node: n.self, Total: n.local.total, Channels: n.local.channels}
	n.local.Unlock()
	n.loadsMu.Lock()
	in.loads = maps.Clone(n.loads)
	n.loadsMu.Unlock()
	if n.cfg.Cluster {
		n.raftInputs(&in)
	}
	in.members = n.members()
	st := computeView(in)
	if old := n.snap.Swap(st); old != nil {
		n.noteView(old, st, in.now)
		for _, e := range viewChanges(old, st) {
			n.emit(e)
		}
	}
}
