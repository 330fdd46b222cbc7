// Package cluster is Shoal's membership layer: who is in the cluster, who
// is alive, whether this node is in the majority, each node's load and
// mode, and which nodes hold each channel's session. The rules it follows
// (the majority, regular and temporary nodes, InitCluster, purge, modes,
// housekeeping) are written out in docs/cluster.md.
//
// *Node runs two engines:
//
//   - hashicorp/serf (memberlist's SWIM gossip) for liveness and small node
//     facts (role, mode, ports), encrypted with the cluster key;
//   - hashicorp/raft among the regular nodes (voters) for the cluster's
//     configuration and channel ownership. Temporary nodes are non-voters:
//     they receive the replicated state but do not count for the majority.
//
// The cluster operations of Sora's API map onto Raft: InitCluster
// bootstraps a configuration of the named regular nodes (or, after a
// breakdown, recovers one; see below), RegisterClusterNode adds a voter (or
// a non-voter for a temporary node), PurgeClusterNode removes a server. A
// claim of a channel is one Raft log entry, so two nodes racing to create
// the same session end with one owner when relay is off. Followers forward
// claims and membership changes to the leader over a small RPC; Raft and
// the RPC share one TCP port, under TLS 1.3 with a certificate derived from
// the cluster key (a process without the key can neither connect nor
// accept). Load (connection counts, per channel) is pushed to every node
// over the same RPC, coalesced.
//
// Majority: a node counts the regular nodes (Raft voters) that gossip says
// are alive, itself included; it serves while that is more than half
// (majorityAlive), it is a member (a voter of the Raft configuration; a
// temporary node: the registered run, in it) and Raft agrees: it heard
// from a Raft leader recently, and since gossip last showed it without a
// majority (leaderHeard). On losing it, subscribers get an EventMajority
// with InMajority false (the SFU then disconnects everyone and refuses new
// connections) and the node comes back by itself when the partition heals.
// Temporary nodes follow the side they are on. Only the nodes of the
// configuration are members: the leader refuses the writes of any other
// node, and a node purged while cut off learns it and stops serving
// (membership.go).
//
// The view: every change (gossip, Raft, load, mode) and every tick, the
// node gathers what Raft, serf and its own state say and computes a new
// immutable snapshot with computeView, a pure function; Snapshot returns
// it with one atomic load, and viewChanges turns two snapshots into the
// Events subscribers receive. Network I/O never happens on that path.
//
// InitCluster after a breakdown: on a node that is already a member,
// InitCluster rebuilds the cluster from exactly the listed regular nodes,
// but only when no majority runs. It is refused with
// ErrAlreadyInitialized when this node, or any listed or other live
// regular node it can reach, is in a majority. It first checks that every
// listed node answers over gossip and the RPC, and fails with
// ErrUnreachable naming those that do not, having changed nothing. Then
// each listed node, the initiator last, stops Raft, rewrites its
// configuration to the list with raft.RecoverCluster (keeping the state its
// own log and snapshots hold, including entries that were never
// committed) and starts Raft again; a listed node with no Raft state
// starts from the new configuration and receives the state from the new
// leader. The initiator then erases the dropped nodes: their facts and
// their channel sessions are removed, while the sessions of the listed
// nodes stay. The operator must be sure the dropped nodes are gone for
// good: one on the far side of a partition cannot be asked whether it is
// in a majority. A dropped node must not be restarted from its old
// DataDir; wipe it and register it again.
//
// Persistence: a regular node with a DataDir keeps its Raft log
// (raft-wal), Raft snapshots, serf's snapshot and its mode (mode.json)
// there, and rejoins by itself, in that mode, after a restart. A
// temporary node keeps nothing: each run has its own boot id, so a
// restarted temporary node is not the member that was registered and must
// register again, while one cut off by a network failure is re-admitted
// when it comes back (within Timing.TemporaryReapTimeout). One that stops
// (Close) asks the leader to erase it, and leaves gossip; should the
// request fail, the leader erases it once gossip shows it left, as it does
// a restarted one. One that vanishes without leaving (crashed, or cut off)
// is erased once gossip has shown it failed for Timing.TemporaryReapTimeout
// (and no sooner than a node cut off must have stopped serving; see below).
//
// Failed nodes: the leader ends a failed node's part of every session
// (releases its channel claims) only once that node must have stopped
// serving, as a lease orders a new holder after the old one. A node cut off
// stops once it has not heard from a Raft leader for leaderContactBound, or
// sooner when gossip shows it without a majority; the leader waits
// failedReleaseAfter (that bound, a cut-off leader's step-down and two
// ticks: 5.4 s with FastTiming, 15 s with ProductionTiming) from when
// gossip first showed the node failed. A node back before then was never
// released: it keeps its claims and its sessions go on, and nothing ends.
// One that did stop (its clients dropped, its releases failed) ends its
// sessions once: the leader's release, or its own retried release once it
// is back (release_report.go). A node that left is released at once.
//
// # Files
//
//   - config.go — Config, Timing (ProductionTiming, FastTiming), NodeName
//     and ParseNodeName, defaults and validation.
//   - node.go — Node: New, Start (ports, Raft, serf), Close, and rebuild,
//     which gathers the view's inputs and publishes the snapshot.
//   - view.go — the snapshot: computeView and viewChanges (pure),
//     NodeStatus and ChannelStatus.
//   - tags.go — the facts a node gossips about itself (serf tags) and how
//     they are read back.
//   - majority.go — the majority rule (pure): inMajority, majorityAlive,
//     leaderHeard, leaderContactBound; cutOffServingBound and
//     failedReleaseAfter, how long the leader waits before it releases a
//     failed node's claims.
//   - membership.go — who is a member: the view's Raft inputs, the
//     leader's refusal of writes from non-members, the probe by which a
//     purged node learns it, and the guard that keeps the leader's Raft
//     from reaching a node it purged.
//   - events.go — Event, Subscribe and the per-subscriber queue
//     (EventSessionEnded: on the leader, a session its release of a
//     failed node's claims ended).
//   - ops.go — the operations: InitCluster, RegisterClusterNode,
//     PurgeClusterNode, ListClusterNodes, ListClusterChannels, SetMode,
//     ClaimChannel, ReleaseChannel, ReleaseChannelEnded (which also says
//     whether the release ended the session: one node learns it).
//   - metrics.go — RaftStats: Raft's state, term and indexes, the leader
//     changes this node saw and the commit latency of what it committed as
//     the leader, for metrics.
//   - leader.go — what the Raft leader does for the others (commit,
//     register, purge, deregister, erase) and the RPC server side.
//   - load.go — PublishLoad and the load pushes between nodes.
//   - housekeeping.go — the per-tick repairs: this node's facts and claims,
//     and on the leader temporary nodes (a vanished one erased after
//     Timing.TemporaryReapTimeout), addresses and failed owners (released
//     after failedReleaseAfter); a change that fails is logged and retried
//     with backoff.
//   - claim.go — commits through the leader that survive a leader loss:
//     short attempts, retried against the new leader.
//   - release_report.go — who reports a session's end when this node's
//     release ended it: ReleaseChannelEnded's caller, or, when the call
//     returned an error (a late or lost answer, or a release committed by
//     the background retry), EventSessionEnded from this node's state
//     machine applying it; exactly once either way.
//   - modefile.go — the mode kept in DataDir across restarts.
//   - swapmode.go — Mode, and SwapMode: a mode the node sets on its own,
//     in memory only, unless the mode changed meanwhile.
//   - recover.go — InitCluster after a breakdown (raft.RecoverCluster).
//   - fsm.go — the replicated state (channel owners, node facts) and its
//     Raft state machine.
//   - transport.go — the node-to-node TCP port: TLS, the mux between Raft
//     and the RPC, the RPC's frames and client.
//   - logs.go — the loggers given to memberlist, serf and Raft: node= once,
//     warnings about one source limited (garbage at the gossip port logs
//     a line and a summary per interval), Raft's start-up warnings demoted.
//   - faultnet.go — FaultNet, the fault-injecting network for tests.
//   - errors.go — the sentinel errors and OwnedElsewhereError.
//
// # Usage
//
//	cfg := cluster.DefaultConfig()
//	cfg.NodeName = "sfu1@10.0.0.1"
//	cfg.Cluster = true
//	cfg.ExternalSignalingURL = "wss://sfu1.example.com/signaling"
//	cfg.ExternalAPIURL = "https://sfu1.example.com/api"
//	cfg.MaxConnections = 500
//	cfg.ClusterKey = key // 32 bytes, the same on every node
//	cfg.DataDir = "/var/lib/shoal"
//	n, err := cluster.New(cfg)
//	if err != nil { ... }
//	if err := n.Start(ctx); err != nil { ... }
//	defer n.Close()
//
//	// Once, on one node, with every named node running:
//	_, err = n.InitCluster(ctx, []string{"sfu1@10.0.0.1", "sfu2@10.0.0.2", "sfu3@10.0.0.3"})
//	// After sfu2 and sfu3 are lost for good, on sfu1 (refused while a
//	// majority runs):
//	_, err = n.InitCluster(ctx, []string{"sfu1@10.0.0.1"})
//	// Later, on a new node:
//	_, err = n4.RegisterClusterNode(ctx, "sfu1@10.0.0.1")
//
//	cancel := n.Subscribe(func(e cluster.Event) {
//		if e.Kind == cluster.EventMajority && !e.InMajority {
//			// disconnect everyone; refuse new connections until InMajority
//		}
//	})
//	defer cancel()
//
//	view := n.Snapshot()               // for affinity.Place; cheap, immutable
//	owners, err := n.ClaimChannel(ctx, "room")  // on a connection's arrival
//	var owned *cluster.OwnedElsewhereError      // relay off, held elsewhere:
//	if errors.As(err, &owned) { /* redirect to owned.Owner */ }
//	n.PublishLoad(total, perChannel)            // whenever counts change
//	n.ReleaseChannel(ctx, "room")               // when its last local connection leaves
//
// Use FastTiming in tests; FaultNet (Config.Faults) drops traffic between
// chosen node addresses to simulate partitions on loopback.
package cluster
