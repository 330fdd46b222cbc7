package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
	"github.com/hashicorp/serf/serf"

	"github.com/shoal-sfu/shoal/affinity"
)

// pollEvery is how often waits re-check the snapshot.
const pollEvery = 10 * time.Millisecond

// waitFor polls cond until it holds or ctx ends.
func waitFor(ctx context.Context, cond func() bool) error {
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

func (n *Node) clusterCheck(op string) error {
	if err := n.check(op); err != nil {
		return err
	}
	if !n.cfg.Cluster {
		return fmt.Errorf("cluster: %s: %w", op, ErrClusterDisabled)
	}
	return nil
}

// withTimeout bounds ctx by the RPC timeout when it has no deadline.
func (n *Node) withTimeout(ctx context.Context, mult int) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, time.Duration(mult)*n.cfg.Timing.RPCTimeout)
}

// joinNode makes sure the named node is an alive gossip member, joining it
// through the ports of the range on its HOST if needed.
func (n *Node) joinNode(ctx context.Context, nn NodeName) (serf.Member, error) {
	name := nn.String()
	if m, ok := n.members()[name]; ok && m.Status == serf.StatusAlive {
		return m, nil
	}
	addrs := make([]string, 0, n.cfg.ListenMaxPort-n.cfg.ListenMinPort+1)
	for p := n.cfg.ListenMinPort; p <= n.cfg.ListenMaxPort; p++ {
		addrs = append(addrs, net.JoinHostPort(nn.Host, strconv.Itoa(p)))
	}
	if _, err := n.serf.Join(addrs, true); err != nil {
		return serf.Member{}, fmt.Errorf("%w: %s: %w", ErrUnreachable, name, err)
	}
	var m serf.Member
	err := waitFor(ctx, func() bool {
		var ok bool
		m, ok = n.members()[name]
		return ok && m.Status == serf.StatusAlive
	})
	if err != nil {
		return m, fmt.Errorf("%w: %s joined no gossip member of that name", ErrUnreachable, name)
	}
	return m, nil
}

// InitCluster builds a cluster of exactly the named regular nodes. It runs
// on one node of the list; every named node must be running. It returns
// once this node serves, with the list as given. On a node that is already
// a member it rebuilds a cluster that broke down (see reinitCluster and
// docs/cluster.md).
func (n *Node) InitCluster(ctx context.Context, nodeNames []string) ([]string, error) {
	if err := n.clusterCheck("init cluster"); err != nil {
		return nil, err
	}
	if n.cfg.Temporary {
		return nil, fmt.Errorf("cluster: init cluster on temporary node %s: %w", n.self, ErrTemporaryNode)
	}
	if len(nodeNames) == 0 {
		return nil, errors.New("cluster: init cluster: node_name_list is empty")
	}
	seen := map[string]bool{}
	var parsed []NodeName
	for _, s := range nodeNames {
		nn, err := ParseNodeName(s)
		if err != nil {
			return nil, fmt.Errorf("cluster: init cluster: %w", err)
		}
		if seen[nn.String()] {
			return nil, fmt.Errorf("cluster: init cluster: %s is named twice", nn)
		}
		seen[nn.String()] = true
		parsed = append(parsed, nn)
	}
	if !seen[n.self] {
		return nil, fmt.Errorf("cluster: init cluster: %w (%s)", ErrNotInList, n.self)
	}
	if n.cfg.MaxNodes > 0 && len(parsed) > n.cfg.MaxNodes {
		return nil, fmt.Errorf("cluster: init cluster: %d nodes, max_nodes is %d: %w", len(parsed), n.cfg.MaxNodes, ErrTooManyNodes)
	}
	ctx, cancel := n.withTimeout(ctx, 3)
	defer cancel()
	if n.snap.Load().initialised {
		// Already a member: only a cluster that broke down is rebuilt.
		return n.reinitCluster(ctx, parsed)
	}
	// Every other listed node must answer, and belong to no cluster: one
	// that does would never take this configuration, and this node would
	// wait for a leader forever.
	conf := raft.Configuration{}
	var members []string
	for _, nn := range parsed {
		addr := n.addr
		if nn.String() != n.self {
			m, err := n.joinNode(ctx, nn)
			if err != nil {
				return nil, fmt.Errorf("cluster: init cluster: %w", err)
			}
			if m.Tags[tagRole] == "temporary" {
				return nil, fmt.Errorf("cluster: init cluster: %s: %w", nn, ErrTemporaryNode)
			}
			addr = memberRPCAddr(m)
			resp, err := n.rpc.call(ctx, addr, rpcRequest{Op: rpcRecoverCheck})
			if err == nil && resp.Status == nil {
				err = errors.New("no status in the answer")
			}
			if err != nil {
				return nil, fmt.Errorf("cluster: init cluster: %s: %w", nn, err)
			}
			if resp.Status.Initialised {
				members = append(members, nn.String())
			}
		}
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(nn.String()), Address: raft.ServerAddress(addr)})
	}
	if len(members) > 0 {
		return nil, fmt.Errorf("cluster: init cluster: nodes of the list already belong to a cluster (register this node with RegisterClusterNode instead): %w", alreadyInitialized(members...))
	}
	if err := n.rft().BootstrapCluster(conf).Error(); err != nil {
		if errors.Is(err, raft.ErrCantBootstrap) {
			return nil, fmt.Errorf("cluster: init cluster: %w", alreadyInitialized(n.self))
		}
		return nil, fmt.Errorf("cluster: init cluster: %w", err)
	}
	n.markDirty()
	if err := waitFor(ctx, func() bool { st := n.snap.Load(); return st.initialised && st.view.InMajority }); err != nil {
		return nil, fmt.Errorf("cluster: init cluster: bootstrapped, but the majority did not come up: %w", ErrNoMajority)
	}
	out := make([]string, len(parsed))
	for i, nn := range parsed {
		out[i] = nn.String()
	}
	return out, nil
}

// RegisterClusterNode adds this node, regular or temporary, to the cluster
// of the contact node and returns the cluster's regular nodes.
// It needs an initialised cluster whose majority runs.
func (n *Node) RegisterClusterNode(ctx context.Context, contact string) ([]string, error) {
	if err := n.clusterCheck("register cluster node"); err != nil {
		return nil, err
	}
	nn, err := ParseNodeName(contact)
	if err != nil {
		return nil, fmt.Errorf("cluster: register cluster node: %w", err)
	}
	if nn.String() == n.self {
		return nil, fmt.Errorf("cluster: register cluster node: contact %s is this node", contact)
	}
	if n.snap.Load().initialised {
		return nil, fmt.Errorf("cluster: register cluster node: %w", alreadyInitialized(n.self))
	}
	ctx, cancel := n.withTimeout(ctx, 3)
	defer cancel()
	m, err := n.joinNode(ctx, nn)
	if err != nil {
		return nil, fmt.Errorf("cluster: register cluster node: %w", err)
	}
	info := n.selfInfo()
	resp, err := n.rpc.call(ctx, memberRPCAddr(m), rpcRequest{Op: rpcRegister, Info: &info})
	if err != nil {
		return nil, fmt.Errorf("cluster: register cluster node via %s: %w", nn, err)
	}
	n.markDirty()
	if err := waitFor(ctx, func() bool { st := n.snap.Load(); return st.initialised && st.view.InMajority }); err != nil {
		return nil, fmt.Errorf("cluster: register cluster node: accepted, but this node did not join the majority: %w", ErrNoMajority)
	}
	return resp.Nodes, nil
}

// PurgeClusterNode removes a stopped regular node for good; it runs on any
// other node of the majority and is seen cluster-wide. It is refused for a
// live node, an unknown node and a temporary node.
func (n *Node) PurgeClusterNode(ctx context.Context, target string) error {
	if err := n.clusterCheck("purge cluster node"); err != nil {
		return err
	}
	nn, err := ParseNodeName(target)
	if err != nil {
		return fmt.Errorf("cluster: purge cluster node: %w", err)
	}
	if nn.String() == n.self {
		return fmt.Errorf("cluster: purge cluster node %s: %w", target, ErrNodeAlive)
	}
	st := n.snap.Load()
	if !st.initialised {
		return fmt.Errorf("cluster: purge cluster node: %w", ErrNotInitialized)
	}
	if !st.view.InMajority {
		return fmt.Errorf("cluster: purge cluster node: %w", ErrNoMajority)
	}
	ctx, cancel := n.withTimeout(ctx, 2)
	defer cancel()
	if _, err := n.leaderDo(ctx, rpcRequest{Op: rpcPurge, Target: nn.String()}); err != nil {
		return fmt.Errorf("cluster: purge cluster node %s: %w", target, err)
	}
	n.markDirty()
	return nil
}

// ListClusterNodes lists every member of the cluster, reachable or not,
// sorted by name. A node not in a cluster lists itself.
func (n *Node) ListClusterNodes(ctx context.Context) ([]NodeStatus, error) {
	if err := n.check("list cluster nodes"); err != nil {
		return nil, err
	}
	return slices.Clone(n.snap.Load().nodes), nil
}

// ListClusterChannels lists the channels that have a session, sorted by
// channel_id, with their owners, the creator first.
func (n *Node) ListClusterChannels(ctx context.Context) ([]ChannelStatus, error) {
	if err := n.check("list cluster channels"); err != nil {
		return nil, err
	}
	return slices.Clone(n.snap.Load().channels), nil
}

// maxReason is how many bytes of a mode's reason are kept.
const maxReason = 200

// SetMode sets this node's mode (see affinity.Mode). reason, shown in
// ListClusterNodes, says why (empty for an operator's choice); it is cut
// to 200 bytes.
func (n *Node) SetMode(ctx context.Context, mode affinity.Mode, reason string) error {
	if err := n.check("set mode"); err != nil {
		return err
	}
	if mode > affinity.ModeBlockNewConnection {
		return fmt.Errorf("cluster: set mode: unknown mode %v", mode)
	}
	if len(reason) > maxReason {
		reason = reason[:maxReason]
	}
	if err := n.storeMode(mode, reason); err != nil {
		return fmt.Errorf("cluster: set mode: %w", err)
	}
	if n.serf != nil {
		if err := n.serf.SetTags(n.tags()); err != nil {
			return fmt.Errorf("cluster: set mode: %w", err)
		}
	}
	n.rebuild()
	return nil
}

// ClaimChannel makes this node an owner of channelID's session, creating
// the session when there is none, and returns the owners, the creator
// first. With relay off, a session held by another node makes it fail with
// an *OwnedElsewhereError; with relay on, this node is added as an owner.
// A claim this node already holds answers at once, without a round trip.
func (n *Node) ClaimChannel(ctx context.Context, channelID string) ([]string, error) {
	if err := n.check("claim channel"); err != nil {
		return nil, err
	}
	if channelID == "" {
		return nil, errors.New("cluster: claim channel: channel_id is empty")
	}
	n.local.Lock()
	had := n.local.claims[channelID]
	n.local.claims[channelID] = true
	n.local.Unlock()
	owners, err := n.claim(ctx, channelID)
	if err != nil && !had {
		n.local.Lock()
		delete(n.local.claims, channelID)
		n.local.Unlock()
	}
	return owners, err
}

func (n *Node) claim(ctx context.Context, channelID string) ([]string, error) {
	cmd := command{Op: opClaim, Channel: channelID, Node: n.self, Relay: n.cfg.Relay}
	if !n.cfg.Cluster {
		res := n.fsm.apply(cmd).(claimResult)
		n.rebuild()
		return res.Owners, nil
	}
	if owners := n.fsm.owners(channelID); slices.Contains(owners, n.self) {
		return slices.Clone(owners), nil
	}
	st := n.snap.Load()
	if !st.initialised {
		return nil, fmt.Errorf("cluster: claim channel: %w", ErrNotInitialized)
	}
	if !st.view.InMajority {
		return nil, fmt.Errorf("cluster: claim channel: %w", ErrNoMajority)
	}
	ctx, cancel := n.withTimeout(ctx, 1)
	defer cancel()
	res, err := n.applyCmd(ctx, cmd)
	if err != nil {
		return nil, fmt.Errorf("cluster: claim channel %q: %w", channelID, err)
	}
	if res.Refused {
		owner, ok := n.fsm.info(res.Owners[0])
		if !ok {
			owner = NodeInfo{Name: res.Owners[0]}
			if m, known := n.members()[owner.Name]; known {
				owner = infoFromTags(m)
			}
		}
		return nil, &OwnedElsewhereError{ChannelID: channelID, Owner: owner}
	}
	return res.Owners, nil
}

// ReleaseChannel records that this node holds no more connection of
// channelID; the session ends when its last owner releases it. If the
// cluster cannot be reached the error says so, and the release is retried
// in the background until it is done.
func (n *Node) ReleaseChannel(ctx context.Context, channelID string) error {
	_, err := n.ReleaseChannelEnded(ctx, channelID)
	return err
}

// ReleaseChannelEnded is ReleaseChannel, and also reports whether this
// release ended the session: it removed the session's last owner. Raft
// orders the releases, so of the nodes releasing one session exactly one
// learns it ended it (the signaling server sends session.destroyed on that
// node). After an error the release may still be committed (the answer
// was lost or late), or the background retry commits it: when that
// release ended the session, the node emits EventSessionEnded instead, so
// that the end is reported once either way (see release_report.go).
func (n *Node) ReleaseChannelEnded(ctx context.Context, channelID string) (bool, error) {
	if err := n.check("release channel"); err != nil {
		return false, err
	}
	n.local.Lock()
	delete(n.local.claims, channelID)
	n.releaseStarted(channelID)
	n.local.Unlock()
	cmd := command{Op: opRelease, Channel: channelID, Node: n.self}
	if !n.cfg.Cluster {
		res, _ := n.fsm.apply(cmd).(claimResult)
		n.releaseFinished(channelID, true)
		n.rebuild()
		return res.Ended, nil
	}
	if !slices.Contains(n.fsm.owners(channelID), n.self) {
		// Not applied here yet (or already released): the background
		// retry releases it if needed, and its application reports the end.
		n.releaseFinished(channelID, false)
		return false, nil
	}
	ctx, cancel := n.withTimeout(ctx, 1)
	defer cancel()
	res, err := n.applyCmd(ctx, cmd)
	n.releaseFinished(channelID, err == nil)
	if err != nil {
		return false, fmt.Errorf("cluster: release channel %q: %w", channelID, err)
	}
	return res.Ended, nil
}

// applyCmd commits cmd through the Raft leader, forwarding it when this
// node is a follower.
func (n *Node) applyCmd(ctx context.Context, cmd command) (claimResult, error) {
	resp, err := n.leaderCommit(ctx, rpcRequest{Op: rpcApply, Cmd: &cmd})
	if err != nil {
		return claimResult{}, err
	}
	if resp.Claim != nil {
		return *resp.Claim, nil
	}
	return claimResult{}, nil
}
