package cluster

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/hashicorp/raft"
	"github.com/hashicorp/serf/serf"
)

// InitCluster after a breakdown (see docs/cluster.md): the cluster lost
// its majority for good, so Raft can no longer change its configuration
// by itself. The initiating node checks that no node it can reach is in a
// majority and that every listed node answers, then tells each listed node
// (over the authenticated RPC) to stop Raft, rewrite its configuration to
// exactly the list with raft.RecoverCluster, and start Raft again. Each
// node keeps what its own log and snapshots hold; the nodes then elect a
// leader among themselves, and the initiator erases the nodes that were
// dropped and releases their channels.

// recoverServer is one server of the configuration a recover sets.
type recoverServer struct {
	Name string `json:"node_name"`
	Addr string `json:"addr"`
}

// recoverStatus answers a status check (rpcRecoverCheck): InitCluster
// asks it of each listed node, and a node probing its membership asks it
// naming itself (Target).
type recoverStatus struct {
	Temporary bool `json:"temporary_node,omitempty"`
	// Initialised: the node belongs to a cluster (a member, or a node
	// that keeps the Raft state of one: removed, or dropped).
	Initialised bool `json:"initialised,omitempty"`
	InMajority  bool `json:"in_majority,omitempty"`
	// InConfig: the node named in the request is in this node's latest
	// Raft configuration; CommitIndex is this node's Raft commit index.
	InConfig    bool   `json:"in_config,omitempty"`
	CommitIndex uint64 `json:"commit_index,omitempty"`
}

func checkRecoverServers(servers []recoverServer) error {
	if len(servers) == 0 {
		return errors.New("cluster: bad request: recover without servers")
	}
	for _, s := range servers {
		if _, err := ParseNodeName(s.Name); err != nil {
			return err
		}
		if _, err := netip.ParseAddrPort(s.Addr); err != nil {
			return fmt.Errorf("cluster: bad request: node address %q: %w", s.Addr, err)
		}
	}
	return nil
}

func (n *Node) recoverStatus(asker string) recoverStatus {
	st := n.snap.Load()
	s := recoverStatus{Temporary: n.cfg.Temporary, Initialised: st.initialised || st.excluded || st.lastIndex > 0, InMajority: st.view.InMajority}
	if r := n.rft(); asker != "" && r != nil {
		s.CommitIndex = r.CommitIndex()
		if f := r.GetConfiguration(); f.Error() == nil {
			for _, srv := range f.Configuration().Servers {
				s.InConfig = s.InConfig || string(srv.ID) == asker
			}
		}
	}
	return s
}

// reinitCluster is InitCluster on a node that is already a member: it
// rebuilds the cluster from the listed nodes if, and only if, no node it
// can reach is in a majority.
func (n *Node) reinitCluster(ctx context.Context, parsed []NodeName) ([]string, error) {
	if n.snap.Load().view.InMajority {
		return nil, fmt.Errorf("cluster: init cluster: the majority is running: %w", alreadyInitialized(n.self))
	}
	listed := map[string]bool{}
	for _, nn := range parsed {
		listed[nn.String()] = true
	}
	// Check first, change nothing until every listed node answers.
	var servers []recoverServer
	var unreachable []string
	for _, nn := range parsed {
		name := nn.String()
		if name == n.self {
			servers = append(servers, recoverServer{Name: name, Addr: n.addr})
			continue
		}
		m, err := n.joinNode(ctx, nn)
		if err != nil {
			unreachable = append(unreachable, name)
			continue
		}
		if m.Tags[tagRole] == "temporary" {
			return nil, fmt.Errorf("cluster: init cluster: %s: %w", nn, ErrTemporaryNode)
		}
		addr := memberRPCAddr(m)
		resp, err := n.rpc.call(ctx, addr, rpcRequest{Op: rpcRecoverCheck})
		if err != nil || resp.Status == nil {
			unreachable = append(unreachable, name)
			continue
		}
		if resp.Status.Temporary {
			return nil, fmt.Errorf("cluster: init cluster: %s: %w", nn, ErrTemporaryNode)
		}
		if resp.Status.InMajority {
			return nil, fmt.Errorf("cluster: init cluster: %s is in a running majority: %w", name, alreadyInitialized(name))
		}
		servers = append(servers, recoverServer{Name: name, Addr: addr})
	}
	if len(unreachable) > 0 {
		return nil, fmt.Errorf("cluster: init cluster: nothing changed: cannot reach %s: %w", strings.Join(unreachable, ", "), ErrUnreachable)
	}
	// A regular node left out of the list but alive must not be in a
	// majority either (this node may be on the small side of a partition).
	for name, m := range n.members() {
		if listed[name] || m.Status != serf.StatusAlive || m.Tags[tagRole] == "temporary" {
			continue
		}
		resp, err := n.rpc.call(ctx, memberRPCAddr(m), rpcRequest{Op: rpcRecoverCheck})
		if err == nil && resp.Status != nil && resp.Status.InMajority {
			return nil, fmt.Errorf("cluster: init cluster: %s is in a running majority: %w", name, alreadyInitialized(name))
		}
	}

	// Change: the other nodes first, then this one.
	n.logger.Warn("cluster: rebuilding the cluster after a breakdown", "nodes", slices.Sorted(maps.Keys(listed)))
	for _, s := range servers {
		if s.Name == n.self {
			continue
		}
		if _, err := n.rpc.call(ctx, s.Addr, rpcRequest{Op: rpcRecover, Servers: servers}); err != nil {
			return nil, fmt.Errorf("cluster: init cluster: recover %s (nodes before it in the list may have been rebuilt already; run InitCluster again): %w", s.Name, err)
		}
	}
	if err := n.recoverHere(servers); err != nil {
		return nil, fmt.Errorf("cluster: init cluster: recover %s: %w", n.self, err)
	}
	if err := waitFor(ctx, func() bool { st := n.snap.Load(); return st.initialised && st.view.InMajority }); err != nil {
		return nil, fmt.Errorf("cluster: init cluster: rebuilt, but the majority did not come up: %w", ErrNoMajority)
	}
	// Erase the dropped nodes and end their sessions.
	fs := n.fsm.copyState()
	gone := map[string]bool{}
	for name := range fs.Infos {
		gone[name] = !listed[name]
	}
	for _, owners := range fs.Channels {
		for _, o := range owners {
			gone[o] = gone[o] || !listed[o]
		}
	}
	for _, name := range slices.Sorted(maps.Keys(gone)) {
		if !gone[name] {
			continue
		}
		for _, op := range []string{opReleaseNode, opDeleteInfo} {
			if _, err := n.applyCmd(ctx, command{Op: op, Node: name}); err != nil {
				return nil, fmt.Errorf("cluster: init cluster: rebuilt, but erasing dropped node %s failed: %w", name, err)
			}
		}
	}
	n.markDirty()
	out := make([]string, len(parsed))
	for i, nn := range parsed {
		out[i] = nn.String()
	}
	return out, nil
}

// recoverHere stops Raft, sets its configuration to servers with
// raft.RecoverCluster (keeping the state in the log and snapshots) and
// starts Raft again. It is refused on a temporary node, on a node not in
// servers, and on a node in a running majority.
func (n *Node) recoverHere(servers []recoverServer) error {
	if n.cfg.Temporary {
		return fmt.Errorf("recover %s: %w", n.self, ErrTemporaryNode)
	}
	conf := raft.Configuration{}
	in := false
	for _, s := range servers {
		addr := s.Addr
		if s.Name == n.self {
			in, addr = true, n.addr
		}
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(s.Name), Address: raft.ServerAddress(addr)})
	}
	if !in {
		return fmt.Errorf("recover: %w (%s)", ErrNotInList, n.self)
	}
	if n.snap.Load().view.InMajority {
		return fmt.Errorf("recover %s: the majority is running: %w", n.self, alreadyInitialized(n.self))
	}
	// n.mu keeps Close out while Raft is replaced.
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.life.Closed() || !n.life.Started() {
		return fmt.Errorf("recover %s: %w", n.self, net.ErrClosed)
	}
	old := n.rft()
	if err := old.Shutdown().Error(); err != nil {
		return fmt.Errorf("recover %s: stop raft: %w", n.self, err)
	}
	has, err := raft.HasExistingState(n.raftLogs, n.raftStable, n.raftSnaps)
	var recErr error
	switch {
	case err != nil:
		recErr = err
	case has:
		// RecoverCluster needs a transport only to encode old snapshot
		// formats; an in-memory one keeps it off the mux.
		_, tr := raft.NewInmemTransport(raft.ServerAddress(n.addr))
		rc := n.raftConf
		recErr = raft.RecoverCluster(&rc, newFSM(nil), n.raftLogs, n.raftStable, n.raftSnaps, tr, conf)
		tr.Close()
	}
	// Start Raft again whatever happened, so that the node keeps running.
	rc := n.raftConf
	trans := n.newRaftTransport()
	r, err := raft.NewRaft(&rc, n.fsm, n.raftLogs, n.raftStable, n.raftSnaps, trans)
	if err != nil {
		trans.Close()
		return fmt.Errorf("recover %s: restart raft: %w", n.self, errors.Join(recErr, err))
	}
	n.raftp.Store(r)
	n.markDirty()
	if recErr != nil {
		return fmt.Errorf("recover %s: %w", n.self, recErr)
	}
	if !has {
		// A listed node that was never a member: it starts from the new
		// configuration and receives the state from the new leader.
		if err := r.BootstrapCluster(conf).Error(); err != nil {
			return fmt.Errorf("recover %s: bootstrap: %w", n.self, err)
		}
	}
	n.logger.Warn("cluster: raft configuration rebuilt", "servers", len(conf.Servers))
	return nil
}
