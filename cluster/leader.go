package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/hashicorp/raft"
	"github.com/hashicorp/serf/serf"
)

// errNotLeader: a request that only the Raft leader serves reached a
// follower (the leader changed in between); the caller retries.
var errNotLeader = errors.New("cluster: not the leader")

// leaderDo runs req on the Raft leader: here if this node leads, else over
// the RPC. It retries while the leadership moves.
func (n *Node) leaderDo(ctx context.Context, req rpcRequest) (rpcResponse, error) {
	for {
		var (
			resp rpcResponse
			err  error
		)
		if n.rft().State() == raft.Leader {
			resp, err = n.leaderHandle(ctx, req)
		} else {
			addr, id := n.rft().LeaderWithID()
			if addr == "" || string(id) == n.self {
				err = errNotLeader
			} else {
				resp, err = n.rpc.call(ctx, string(addr), req)
			}
		}
		if !errors.Is(err, errNotLeader) {
			return resp, err
		}
		select {
		case <-ctx.Done():
			return resp, fmt.Errorf("no Raft leader reachable: %w", ErrNoMajority)
		case <-time.After(pollEvery):
		}
	}
}

// leaderHandle serves, on the leader, the requests that change the cluster.
func (n *Node) leaderHandle(ctx context.Context, req rpcRequest) (rpcResponse, error) {
	timeout := n.cfg.Timing.RPCTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	switch req.Op {
	case rpcApply:
		res, err := n.applyForMember(*req.Cmd, timeout)
		if err != nil {
			return rpcResponse{}, err
		}
		if req.Cmd.Op == opClaim || req.Cmd.Op == opRelease {
			return rpcResponse{Claim: &res}, nil
		}
		return rpcResponse{}, nil
	case rpcRegister:
		n.leaderMu.Lock()
		defer n.leaderMu.Unlock()
		return n.leaderRegister(*req.Info, timeout)
	case rpcPurge:
		n.leaderMu.Lock()
		defer n.leaderMu.Unlock()
		return rpcResponse{}, n.leaderPurge(req.Target, timeout)
	case rpcDeregister:
		n.leaderMu.Lock()
		defer n.leaderMu.Unlock()
		return rpcResponse{}, n.leaderDeregister(*req.Info, timeout)
	}
	return rpcResponse{}, fmt.Errorf("cluster: op %q is not for the leader", req.Op)
}

func (n *Node) raftApply(cmd command, timeout time.Duration) (claimResult, error) {
	b, err := json.Marshal(cmd)
	if err != nil {
		return claimResult{}, err
	}
	start := time.Now()
	f := n.rft().Apply(b, timeout)
	err = f.Error()
	n.raftC.commit(time.Since(start), err)
	if err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return claimResult{}, errNotLeader
		}
		return claimResult{}, fmt.Errorf("%w: commit: %w", ErrNoMajority, err)
	}
	switch r := f.Response().(type) {
	case claimResult:
		if cmd.Op == opReleaseNode {
			for _, ch := range r.EndedChannels {
				n.emit(Event{Kind: EventSessionEnded, Channel: ch})
			}
		}
		return r, nil
	case error:
		return claimResult{}, r
	}
	return claimResult{}, nil
}

func (n *Node) configChange(f raft.IndexFuture) error {
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return errNotLeader
		}
		return fmt.Errorf("%w: configuration change: %w", ErrNoMajority, err)
	}
	return nil
}

func (n *Node) leaderRegister(info NodeInfo, timeout time.Duration) (rpcResponse, error) {
	servers := n.raftServers()
	var existing *raft.Server
	voters := []string{}
	for i, s := range servers {
		if string(s.ID) == info.Name {
			existing = &servers[i]
		}
		if s.Suffrage == raft.Voter {
			voters = append(voters, string(s.ID))
		}
	}
	if existing != nil && (existing.Suffrage == raft.Voter) == info.Temporary {
		return rpcResponse{}, fmt.Errorf("cluster: register %s: a node of that name is in the cluster as another kind", info.Name)
	}
	if existing == nil && n.cfg.MaxNodes > 0 && len(servers)+1 > n.cfg.MaxNodes {
		return rpcResponse{}, fmt.Errorf("cluster: register %s: the cluster has %d nodes, max_nodes is %d: %w", info.Name, len(servers), n.cfg.MaxNodes, ErrTooManyNodes)
	}
	// The facts first, then the configuration: facts of a node not in the
	// configuration are not listed, so the node appears (and can serve)
	// only once both steps are done; if the second fails, the facts are
	// taken back.
	prev, had := n.fsm.info(info.Name)
	if _, err := n.raftApply(command{Op: opSetInfo, Info: &info}, timeout); err != nil {
		return rpcResponse{}, err
	}
	n.registeredAt[info.Name] = time.Now()
	n.mem.unblockRaft(info.Addr)
	var err error
	if e := n.mem.registerFault.Load(); e != nil {
		err = *e
	} else if info.Temporary {
		err = n.configChange(n.rft().AddNonvoter(raft.ServerID(info.Name), raft.ServerAddress(info.Addr), 0, timeout))
	} else {
		err = n.configChange(n.rft().AddVoter(raft.ServerID(info.Name), raft.ServerAddress(info.Addr), 0, timeout))
	}
	if err != nil {
		undo := command{Op: opDeleteInfo, Node: info.Name}
		if had {
			undo = command{Op: opSetInfo, Info: &prev}
		}
		if _, uerr := n.raftApply(undo, timeout); uerr != nil {
			n.logger.Warn("cluster: register failed, and taking its facts back failed too; they are not listed", "registering", info.Name, "err", uerr)
		}
		return rpcResponse{}, err
	}
	if !info.Temporary && existing == nil {
		voters = append(voters, info.Name)
	}
	n.logger.Info("cluster: node registered", "registered", info.Name, "temporary", info.Temporary)
	slices.Sort(voters)
	return rpcResponse{Nodes: voters}, nil
}

func (n *Node) leaderPurge(target string, timeout time.Duration) error {
	var srv *raft.Server
	servers := n.raftServers()
	for i, s := range servers {
		if string(s.ID) == target {
			srv = &servers[i]
		}
	}
	info, known := n.fsm.info(target)
	if srv == nil && !known {
		return fmt.Errorf("%s: %w", target, ErrUnknownNode)
	}
	if (known && info.Temporary) || (srv != nil && srv.Suffrage != raft.Voter) {
		return fmt.Errorf("%s: %w", target, ErrTemporaryNode)
	}
	if m, ok := n.members()[target]; ok && m.Status == serf.StatusAlive {
		return fmt.Errorf("%s: %w", target, ErrNodeAlive)
	}
	if srv != nil {
		n.mem.blockRaft(string(srv.Address), time.Now())
	}
	if err := n.leaderErase(target, srv != nil, timeout); err != nil {
		return err
	}
	if err := n.serf.RemoveFailedNodePrune(target); err != nil {
		n.logger.Debug("cluster: prune purged node from gossip", "target", target, "err", err)
	}
	n.logger.Info("cluster: node purged", "purged", target)
	return nil
}

// leaderDeregister erases a temporary node that is stopping, as the
// housekeeping would once gossip shows it left; asked by the node itself,
// the erasure does not depend on its leave reaching every node. Only the
// run that registered (same Boot) can erase itself.
func (n *Node) leaderDeregister(run NodeInfo, timeout time.Duration) error {
	info, known := n.fsm.info(run.Name)
	if !known {
		return nil // already erased
	}
	if !info.Temporary {
		return fmt.Errorf("cluster: deregister %s: a regular node is not erased when it stops", run.Name)
	}
	if info.Boot != run.Boot {
		return fmt.Errorf("cluster: deregister %s: run %q is not the registered run %q", run.Name, run.Boot, info.Boot)
	}
	inConfig := slices.ContainsFunc(n.raftServers(), func(s raft.Server) bool { return string(s.ID) == run.Name })
	if err := n.leaderErase(run.Name, inConfig, timeout); err != nil {
		return err
	}
	delete(n.registeredAt, run.Name)
	n.logger.Info("cluster: temporary node stopped and erased", "temporary", run.Name)
	return nil
}

// leaderErase removes a node from the cluster, on the leader: from the Raft
// configuration if it is there (inConfig), then its channel sessions and
// its facts.
func (n *Node) leaderErase(name string, inConfig bool, timeout time.Duration) error {
	if inConfig {
		if err := n.removeServer(name, timeout); err != nil {
			return err
		}
	}
	if _, err := n.raftApply(command{Op: opReleaseNode, Node: name}, timeout); err != nil {
		return err
	}
	_, err := n.raftApply(command{Op: opDeleteInfo, Node: name}, timeout)
	return err
}

// serveRPC serves one node-to-node connection until it closes.
func (n *Node) serveRPC(c net.Conn) {
	r := bufio.NewReader(c)
	for {
		b, err := readFrame(r)
		if err != nil {
			return
		}
		var resp rpcResponse
		req, err := decodeRequest(b)
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), n.cfg.Timing.RPCTimeout)
			resp, err = n.handleRPC(ctx, req)
			cancel()
		}
		if err != nil {
			resp = rpcResponse{Code: codeOf(err), Error: err.Error()}
			var owned *OwnedElsewhereError
			if errors.As(err, &owned) {
				resp.Owner = &owned.Owner
			}
		}
		if err := writeFrame(c, resp); err != nil {
			return
		}
	}
}

func (n *Node) handleRPC(ctx context.Context, req rpcRequest) (rpcResponse, error) {
	switch req.Op {
	case rpcLoad:
		if err := n.checkLoadFrom(req.Load.Node); err != nil {
			return rpcResponse{}, err
		}
		n.storeLoad(*req.Load)
		return rpcResponse{}, nil
	case rpcApply:
		if n.rft().State() != raft.Leader {
			return rpcResponse{}, errNotLeader
		}
		return n.leaderHandle(ctx, req)
	case rpcRegister:
		st := n.snap.Load()
		if !st.initialised {
			return rpcResponse{}, fmt.Errorf("contact %s: %w", n.self, ErrNotInitialized)
		}
		if !st.view.InMajority {
			return rpcResponse{}, fmt.Errorf("contact %s: %w", n.self, ErrNoMajority)
		}
		return n.leaderDo(ctx, req)
	case rpcPurge, rpcDeregister:
		if n.rft().State() != raft.Leader {
			return rpcResponse{}, errNotLeader
		}
		return n.leaderHandle(ctx, req)
	case rpcRecoverCheck:
		st := n.recoverStatus(req.Target)
		return rpcResponse{Status: &st}, nil
	case rpcRecover:
		return rpcResponse{}, n.recoverHere(req.Servers)
	}
	return rpcResponse{}, fmt.Errorf("cluster: unknown op %q", req.Op)
}
