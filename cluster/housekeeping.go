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
	hk := &hkState{missing: map[string]time.Time{}}
	every(ctx, n.cfg.Timing.Tick, nil, func() {
		st := n.snap.Load()
		if !st.initialised || !st.view.InMajority {
			hk.release, hk.claim = nil, nil
			return
		}
		n.reconcileSelf(ctx, st, hk)
		if n.rft().State() == raft.Leader {
			n.reconcileLeader(hk)
		}
	})
}

type hkState struct {
	// release and claim are the discrepancies seen on the last tick; only
	// those seen twice are acted on, so that claims in flight settle first.
	release, claim []string
	// missing records when a registered node was first missing from gossip.
	missing map[string]time.Time
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
				n.logger.Info("cluster: node address changed", "changed", name, "addr", info.Addr)
				n.configChange(n.rft().AddVoter(srv.ID, raft.ServerAddress(info.Addr), 0, timeout))
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
		if restarted || gone(name) {
			n.logger.Info("cluster: erasing temporary node", "temporary", name, "restarted", restarted)
			if err := n.leaderErase(name, in, timeout); err != nil {
				n.logger.Debug("cluster: erase temporary node", "temporary", name, "err", err)
			}
			continue
		}
		if !in && known && m.Status == serf.StatusAlive {
			n.logger.Info("cluster: temporary node back", "temporary", name)
			n.configChange(n.rft().AddNonvoter(raft.ServerID(name), raft.ServerAddress(info.Addr), 0, timeout))
		}
	}
	for name, at := range n.registeredAt {
		if now.Sub(at) >= grace {
			delete(n.registeredAt, name)
		}
	}
	for name, s := range inConfig {
		if _, ok := fs.Infos[name]; !ok && s.Suffrage != raft.Voter {
			n.configChange(n.rft().RemoveServer(s.ID, 0, timeout))
		}
	}
	// The sessions of a node that failed or left are over: a node out of
	// the majority disconnects its clients.
	done := map[string]bool{}
	for _, owners := range fs.Channels {
		for _, o := range owners {
			if done[o] || o == n.self {
				continue
			}
			done[o] = true
			m, ok := members[o]
			if ok && m.Status != serf.StatusAlive {
				if _, err := n.raftApply(command{Op: opReleaseNode, Node: o}, timeout); err != nil {
					n.logger.Debug("cluster: release failed node's channels", "failed", o, "err", err)
				}
			}
		}
	}
}
