package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/hashicorp/serf/serf"
)

// Membership: only the nodes in the Raft configuration are members. The
// leader refuses what another node asks to write on its own behalf (its
// facts, claims, releases) unless that node is in the configuration, and
// the nodes of the majority drop the load of a node that is not; so a
// node purged while cut off cannot come back by writing. The purged node
// learns it: from its own configuration if the removal reached it, or by
// asking a live voter (probeMembership) when gossip shows a majority but no
// leader reaches it. It then stops serving (computeView: excluded), lists
// itself blocked with excludedReason and logs why, once.

// errNotMember: the Raft leader (or a node of the majority) refuses what a
// node that is not in the cluster's configuration asks to write: its
// facts, claims or load.
var errNotMember = errors.New("cluster: not a member of the cluster")

// excludedReason is the mode_reason a node removed from the cluster shows
// for itself.
const excludedReason = "not a member of the cluster any more (purged): wipe its data directory and register it again"

// raftBlockFor is how long the leader that purged a node keeps its Raft
// from dialling the node's address (see blockRaft).
const raftBlockFor = time.Minute

// membership is what a node keeps about its own membership besides Raft's
// configuration, and the leader's guards.
type membership struct {
	// writeMu orders the leader's checked writes (read lock, held until
	// committed) before a removal from the configuration (write lock), so
	// that no write of a removed node commits after its erasure.
	writeMu sync.RWMutex

	// outAt is when gossip last showed no majority of alive voters, and
	// wasMember whether this node was a member (regular) in this run; both
	// are read and written by rebuild only, under rebuildMu.
	outAt     time.Time
	wasMember bool
	// excludedAt is the highest commit index of a node of the majority
	// whose configuration leaves this node out; excludedBy names it.
	excludedAt atomic.Uint64
	excludedBy atomic.Pointer[string]
	// probeNext rotates the probes over the live voters (probe loop only).
	probeNext int

	// removed holds, on the leader that purged them, the Raft addresses of
	// purged nodes, when purged; configAddrs the addresses of the latest
	// configuration, as of the last rebuild.
	removedMu   sync.Mutex
	removed     map[string]time.Time
	configAddrs atomic.Pointer[map[string]bool]

	// registerFault, set by tests, fails a register on the leader between
	// its two steps.
	registerFault atomic.Pointer[error]
}

// raftInputs fills in the view's inputs from Raft and from what this node
// learnt about its membership. It runs in rebuild, under rebuildMu.
func (n *Node) raftInputs(in *viewInputs) {
	in.contactBound = leaderContactBound(n.cfg.Timing)
	in.leaderAge, in.outAge = -1, -1
	if !n.mem.outAt.IsZero() {
		in.outAge = in.now.Sub(n.mem.outAt)
	}
	in.excludedAt = n.mem.excludedAt.Load()
	in.wasMember = n.mem.wasMember
	r := n.rft()
	if r == nil {
		return
	}
	in.lastIndex = r.LastIndex()
	if f := r.GetConfiguration(); f.Error() == nil {
		in.servers = f.Configuration().Servers
		addrs := make(map[string]bool, len(in.servers))
		for _, s := range in.servers {
			addrs[string(s.Address)] = true
		}
		n.mem.configAddrs.Store(&addrs)
	}
	_, id := r.LeaderWithID()
	in.leader = string(id)
	switch last := r.LastContact(); {
	case r.State() == raft.Leader:
		in.leaderAge = 0
	case !last.IsZero():
		in.leaderAge = max(in.now.Sub(last), 0)
	}
}

// noteView records what the next snapshot needs from this one (when
// gossip last showed no majority) and logs, once each time, that this
// node learnt it is no longer a member. It runs in rebuild, under
// rebuildMu.
func (n *Node) noteView(old, cur *state, now time.Time) {
	if cur.leader != old.leader && cur.leader != "" {
		n.raftC.leaderChanges.Add(1)
	}
	if !cur.gossipMajority {
		n.mem.outAt = now
	}
	if cur.initialised && !n.cfg.Temporary {
		n.mem.wasMember = true
	}
	if cur.excluded && !old.excluded {
		args := []any{"last_index", cur.lastIndex}
		if by := n.mem.excludedBy.Load(); by != nil {
			args = append(args, "told_by", *by)
		}
		n.logger.Error("cluster: this node is no longer a member of the cluster (it was purged): it does not serve; to bring it back, wipe its data directory and register it again", args...)
	}
}

// membershipLoop probes this node's membership every tick while gossip
// shows a majority but no Raft leader reaches this node.
func (n *Node) membershipLoop(ctx context.Context) {
	every(ctx, n.cfg.Timing.Tick, nil, func() { n.probeMembership(ctx) })
}

// probeMembership asks one live voter (in turn) whether this node is in
// its configuration. When a node of the majority answers no, and has
// committed entries beyond the end of this node's log (so its
// configuration is a later one than this node's), this node is excluded.
func (n *Node) probeMembership(ctx context.Context) {
	st := n.snap.Load()
	if !st.initialised || !st.gossipMajority || st.leaderHeard {
		return
	}
	members := n.members()
	var peers []serf.Member
	for _, v := range st.voters {
		if m, ok := members[v]; ok && v != n.self && m.Status == serf.StatusAlive {
			peers = append(peers, m)
		}
	}
	if len(peers) == 0 {
		return
	}
	m := peers[n.mem.probeNext%len(peers)]
	n.mem.probeNext++
	cctx, cancel := context.WithTimeout(ctx, n.cfg.Timing.RPCTimeout)
	defer cancel()
	resp, err := n.rpc.call(cctx, memberRPCAddr(m), rpcRequest{Op: rpcRecoverCheck, Target: n.self})
	if err != nil || resp.Status == nil {
		n.logger.Debug("cluster: membership probe", "peer", m.Name, "err", err)
		return
	}
	s := resp.Status
	if !s.InMajority || s.InConfig || s.CommitIndex <= st.lastIndex {
		return
	}
	by := m.Name
	n.mem.excludedBy.Store(&by)
	for {
		cur := n.mem.excludedAt.Load()
		if cur >= s.CommitIndex || n.mem.excludedAt.CompareAndSwap(cur, s.CommitIndex) {
			break
		}
	}
	n.markDirty()
}

// inConfig reports whether name is in the latest Raft configuration.
func (n *Node) inConfig(name string) bool {
	for _, s := range n.raftServers() {
		if string(s.ID) == name {
			return true
		}
	}
	return false
}

// writer names the node on whose behalf cmd writes: the node claiming or
// releasing, or whose facts it sets. The erasures (release_node,
// delete_info) are about other nodes and have none.
func (c command) writer() string {
	switch c.Op {
	case opClaim, opRelease:
		return c.Node
	case opSetInfo:
		return c.Info.Name
	}
	return ""
}

// applyForMember commits, on the leader, a command another node (or this
// one) sent: refused with errNotMember when its writer is not in the
// configuration.
func (n *Node) applyForMember(cmd command, timeout time.Duration) (claimResult, error) {
	n.mem.writeMu.RLock()
	defer n.mem.writeMu.RUnlock()
	if w := cmd.writer(); w != "" && !n.inConfig(w) {
		return claimResult{}, fmt.Errorf("cluster: %s %s: %w", cmd.Op, w, errNotMember)
	}
	return n.raftApply(cmd, timeout)
}

// checkLoadFrom refuses, on a node of the majority, the load of a node
// that it does not list as a member.
func (n *Node) checkLoadFrom(name string) error {
	if st := n.snap.Load(); st.view.InMajority && st.view.NodeIndex(name) < 0 {
		return fmt.Errorf("cluster: load of %s: %w", name, errNotMember)
	}
	return nil
}

// removeServer removes name from the Raft configuration, on the leader,
// once the checked writes in progress have committed.
func (n *Node) removeServer(name string, timeout time.Duration) error {
	n.mem.writeMu.Lock()
	defer n.mem.writeMu.Unlock()
	return n.configChange(n.rft().RemoveServer(raft.ServerID(name), 0, timeout))
}

// blockRaft keeps this node's Raft from dialling addr, the address of a
// node it purges, for raftBlockFor or until addr is in the configuration
// again. Raft goes on sending heartbeats to a removed server while it
// tries, with backoff, to send it the rest of the log; a node purged
// while cut off would take them, after the partition heals, for a leader
// that still counts it.
func (m *membership) blockRaft(addr string, now time.Time) {
	m.removedMu.Lock()
	defer m.removedMu.Unlock()
	if m.removed == nil {
		m.removed = map[string]time.Time{}
	}
	m.removed[addr] = now
}

// unblockRaft lifts blockRaft for addr (the node registers again).
func (m *membership) unblockRaft(addr string) {
	m.removedMu.Lock()
	defer m.removedMu.Unlock()
	delete(m.removed, addr)
}

func (m *membership) raftBlocked(addr string, now time.Time) bool {
	m.removedMu.Lock()
	defer m.removedMu.Unlock()
	at, ok := m.removed[addr]
	if !ok {
		return false
	}
	if now.Sub(at) > raftBlockFor {
		delete(m.removed, addr)
		return false
	}
	if cur := m.configAddrs.Load(); cur != nil && (*cur)[addr] {
		return false // in the configuration (still, or again)
	}
	return true
}

// errRemovedPeer: Raft dialled a node this node purged (blockRaft).
var errRemovedPeer = errors.New("cluster: not dialling a purged node")

// guardedStream is the Raft stream layer with blockRaft applied.
type guardedStream struct {
	*streamLayer
	mem *membership
}

func (g guardedStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if g.mem.raftBlocked(string(addr), time.Now()) {
		return nil, errRemovedPeer
	}
	return g.streamLayer.Dial(addr, timeout)
}
