package cluster

import (
	"context"
	"slices"
	"time"

	"github.com/hashicorp/raft"
	"github.com/hashicorp/serf/serf"
)

// housekeeping runs every tick: it keeps this node's facts and channel
// claims in the replicated state right and, on the leader, erases stopped
// temporary nodes, re-admits temporary nodes back from a network failure
// and ends the sessions of failed nodes. Network I/O happens here, never
// in viewLoop.
func (n *Node) housekeeping(ctx context.Context) {
	hk := &hkState{missing: map[string]time.Time{}, failedSince: map[string]time.Time{}, retries: map[string]*hkRetry{}}
	every(ctx, n.cfg.Timing.Tick, nil, func() {
		st := n.snap.Load()
		if !st.initialised || !st.view.InMajority {
			hk.release, hk.claim = nil, nil
			clear(hk.failedSince)
			clear(hk.retries)
			return
		}
		hk.noteFailed(n.members(), time.Now())
		n.reconcileSelf(ctx, st, hk)
		if n.rft().State() == raft.Leader {
			n.reconcileLeader(hk)
		} else {
			clear(hk.retries)
		}
	})
}

type hkState struct {
	// release and claim are the discrepancies seen on the last tick; only
	// those seen twice are acted on, so that claims in flight settle first.
	release, claim []string
	// missing records when a registered node was first missing from gossip.
	missing map[string]time.Time
	// failedSince records when gossip first showed a member failed; every
	// node of the majority keeps it, so that a new leader knows too.
	failedSince map[string]time.Time
	// retries holds the leader's changes that failed, by description;
	// wanted the changes asked for in the current pass.
	retries map[string]*hkRetry
	wanted  map[string]bool
}

// hkRetry is a housekeeping change that failed: how often, and when to
// try it again.
type hkRetry struct {
	attempts int
	next     time.Time
}

// maxRetryTicks bounds the delay between two attempts of a failed change,
// in ticks (3.2 s with FastTiming, 32 s with ProductionTiming).
const maxRetryTicks = 32

// noteFailed updates failedSince from gossip's members.
func (hk *hkState) noteFailed(members map[string]serf.Member, now time.Time) {
	for name := range hk.failedSince {
		if m, ok := members[name]; !ok || m.Status != serf.StatusFailed {
			delete(hk.failedSince, name)
		}
	}
	for name, m := range members {
		if _, ok := hk.failedSince[name]; !ok && m.Status == serf.StatusFailed {
			hk.failedSince[name] = now
		}
	}
}

// try makes one of the leader's changes, described by change, unless it
// failed before and its next attempt is not due. A failure is logged,
// naming the change, and retried after a delay that doubles from two ticks
// up to maxRetryTicks; the change is dropped when a pass no longer asks
// for it (see endPass).
func (n *Node) try(hk *hkState, now time.Time, change string, do func() error) {
	hk.wanted[change] = true
	r := hk.retries[change]
	if r != nil && now.Before(r.next) {
		return
	}
	err := do()
	if err == nil {
		if r != nil {
			n.logger.Info("cluster: housekeeping change done after failed attempts", "change", change, "attempts", r.attempts+1)
			delete(hk.retries, change)
		}
		return
	}
	if r == nil {
		r = &hkRetry{}
		hk.retries[change] = r
	}
	r.attempts++
	wait := n.cfg.Timing.Tick << min(r.attempts, 5)
	wait = min(wait, maxRetryTicks*n.cfg.Timing.Tick)
	r.next = now.Add(wait)
	n.logger.Warn("cluster: housekeeping change failed; will retry", "change", change, "attempt", r.attempts,
		"retry_in", wait, "err", err)
}

// endPass forgets the failed changes this pass did not ask for: what they
// were to repair is gone.
func (hk *hkState) endPass() {
	for change := range hk.retries {
		if !hk.wanted[change] {
			delete(hk.retries, change)
		}
	}
}

// changeConfig makes one change of the Raft configuration for
// housekeeping (Config.confChangeFault may fail it first, in tests).
func (n *Node) changeConfig(change string, f func() raft.IndexFuture) error {
	if fault := n.cfg.confChangeFault; fault != nil {
		if err := fault(change); err != nil {
			return err
		}
	}
	return n.configChange(f())
}

func (n *Node) reconcileSelf(ctx context.Context, st *state, hk *hkState) {
	t := n.cfg.Timing
	cctx, cancel := context.WithTimeout(ctx, t.RPCTimeout)
	defer cancel()
	if !n.cfg.Temporary {
		if info, ok := n.fsm.info(n.self); !ok || info != n.selfInfo() {
			self := n.selfInfo()
			if _, err := n.applyCmd(cctx, command{Op: opSetInfo, Info: &self}); err != nil {
				n.logger.Debug("cluster: publish node info", "err", err)
			}
		}
	}
	fs := n.fsm.copyState()
	n.local.Lock()
	claims := make(map[string]bool, len(n.local.claims))
	for ch := range n.local.claims {
		claims[ch] = true
	}
	n.local.Unlock()
	var release, claim []string
	for ch, owners := range fs.Channels {
		if slices.Contains(owners, n.self) && !claims[ch] {
			release = append(release, ch)
		}
	}
	for ch := range claims {
		if !slices.Contains(fs.Channels[ch], n.self) {
			claim = append(claim, ch)
		}
	}
	for _, ch := range release {
		if slices.Contains(hk.release, ch) {
			// When this retry ends the session, its application here
			// reports it (release_report.go).
			if _, err := n.applyCmd(cctx, command{Op: opRelease, Channel: ch, Node: n.self}); err != nil {
				n.logger.Debug("cluster: release stale claim", "channel", ch, "err", err)
			}
		}
	}
	for _, ch := range claim {
		if slices.Contains(hk.claim, ch) {
			res, err := n.applyCmd(cctx, command{Op: opClaim, Channel: ch, Node: n.self, Relay: n.cfg.Relay})
			if err == nil && res.Refused {
				n.logger.Warn("cluster: lost a channel's session to another node", "channel", ch, "owner", res.Owners[0])
				n.local.Lock()
				delete(n.local.claims, ch)
				n.local.Unlock()
			}
		}
	}
	hk.release, hk.claim = release, claim
}

func (n *Node) reconcileLeader(hk *hkState) {
	n.leaderMu.Lock()
	defer n.leaderMu.Unlock()
	t := n.cfg.Timing
	timeout := t.RPCTimeout
	servers := n.raftServers()
	inConfig := map[string]raft.Server{}
	for _, s := range servers {
		inConfig[string(s.ID)] = s
	}
	members := n.members()
	fs := n.fsm.copyState()
	now := time.Now()
	hk.wanted = map[string]bool{}
	defer hk.endPass()
	// A node missing from gossip (reaped, or not yet seen after this node
	// started) is gone only after a grace period.
	grace := 2*t.PushPullInterval + 10*t.Tick
	gone := func(name string) bool {
		m, ok := members[name]
		if ok {
			delete(hk.missing, name)
			return m.Status == serf.StatusLeft || m.Status == serf.StatusLeaving
		}
		first, seen := hk.missing[name]
		if !seen {
			hk.missing[name] = now
			return false
		}
		return now.Sub(first) > grace
	}
	for name, info := range fs.Infos {
		srv, in := inConfig[name]
		if !info.Temporary {
			if in && info.Addr != "" && string(srv.Address) != info.Addr {
				change := "add voter " + name + " at " + info.Addr
				n.try(hk, now, change, func() error {
					n.logger.Info("cluster: node address changed", "changed", name, "addr", info.Addr)
					return n.changeConfig(change, func() raft.IndexFuture {
						return n.rft().AddVoter(srv.ID, raft.ServerAddress(info.Addr), 0, timeout)
					})
				})
			}
			continue
		}
		m, known := members[name]
		if at, ok := n.registeredAt[name]; ok && now.Sub(at) < grace {
			// Gossip may not show the new run yet: do not mistake its old
			// run for it.
			continue
		}
		restarted := known && m.Tags[tagBoot] != info.Boot
		// A node that failed without leaving (crashed, or cut off) is
		// erased once it has been failed for TemporaryReapTimeout, and
		// not before it must have stopped serving (failedReleaseAfter).
		since, failed := hk.failedSince[name]
		vanished := known && m.Status == serf.StatusFailed && failed &&
			now.Sub(since) >= max(t.TemporaryReapTimeout, failedReleaseAfter(t))
		if restarted || vanished || gone(name) {
			n.try(hk, now, "erase temporary node "+name, func() error {
				n.logger.Info("cluster: erasing temporary node", "temporary", name, "restarted", restarted, "vanished", vanished)
				return n.leaderErase(name, in, timeout)
			})
			continue
		}
		if !in && known && m.Status == serf.StatusAlive {
			change := "add non-voter " + name + " at " + info.Addr
			n.try(hk, now, change, func() error {
				n.logger.Info("cluster: temporary node back", "temporary", name)
				return n.changeConfig(change, func() raft.IndexFuture {
					return n.rft().AddNonvoter(raft.ServerID(name), raft.ServerAddress(info.Addr), 0, timeout)
				})
			})
		}
	}
	for name, at := range n.registeredAt {
		if now.Sub(at) >= grace {
			delete(n.registeredAt, name)
		}
	}
	for name, s := range inConfig {
		if _, ok := fs.Infos[name]; !ok && s.Suffrage != raft.Voter {
			change := "remove non-voter " + name
			n.try(hk, now, change, func() error {
				return n.changeConfig(change, func() raft.IndexFuture { return n.rft().RemoveServer(s.ID, 0, timeout) })
			})
		}
	}
	// The sessions of a node that left are over, and those of a node that
	// failed once it must have stopped serving: a node out of the majority
	// disconnects its clients, and one cut off is out within
	// cutOffServingBound. Until then its claims stay: when the cut heals
	// first, its sessions go on and nothing ends.
	done := map[string]bool{}
	for _, owners := range fs.Channels {
		for _, o := range owners {
			if done[o] || o == n.self {
				continue
			}
			done[o] = true
			m, ok := members[o]
			if !ok || m.Status == serf.StatusAlive {
				continue
			}
			if since, failed := hk.failedSince[o]; m.Status == serf.StatusFailed &&
				(!failed || now.Sub(since) < failedReleaseAfter(t)) {
				continue
			}
			n.try(hk, now, "release the channels of failed node "+o, func() error {
				_, err := n.raftApply(command{Op: opReleaseNode, Node: o}, timeout)
				return err
			})
		}
	}
}
