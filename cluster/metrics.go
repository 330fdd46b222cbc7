package cluster

import (
	"strconv"
	"sync/atomic"
	"time"
)

// raftCounters count what RaftStats reports beyond Raft's own figures.
type raftCounters struct {
	leaderChanges         atomic.Uint64
	commits, commitErrors atomic.Uint64
	commitNs              atomic.Int64
	commitBuckets         [len(CommitBuckets) + 1]atomic.Uint64
}

// CommitBuckets are the upper bounds of RaftStats.CommitBuckets.
var CommitBuckets = [...]time.Duration{time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond,
	25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
	500 * time.Millisecond, time.Second, 5 * time.Second}

func (c *raftCounters) commit(d time.Duration, err error) {
	if err != nil {
		c.commitErrors.Add(1)
		return
	}
	c.commits.Add(1)
	c.commitNs.Add(int64(d))
	i := 0
	for i < len(CommitBuckets) && d > CommitBuckets[i] {
		i++
	}
	c.commitBuckets[i].Add(1)
}

// RaftStats is a snapshot of the node's Raft, for metrics.
type RaftStats struct {
	// State is Raft's state ("Leader", "Follower", "Candidate",
	// "Shutdown"), empty when the node runs no Raft (a temporary node, or
	// clustering off).
	State string
	// Leader is the leader's node_name as this node knows it.
	Leader                                     string
	Term, CommitIndex, AppliedIndex, LastIndex uint64
	// LeaderChanges counts the changes of leader this node saw (two
	// changes between two looks count once).
	LeaderChanges uint64
	// Commits counts the commands this node committed as the leader
	// (channel claims and releases, node facts), CommitTime their total
	// time from Apply to commit, CommitBuckets how many took at most each
	// of CommitBuckets (the last: longer); CommitErrors the ones that
	// failed.
	Commits, CommitErrors uint64
	CommitTime            time.Duration
	CommitCounts          [len(CommitBuckets) + 1]uint64
}

// RaftStats returns the node's Raft figures.
func (n *Node) RaftStats() RaftStats {
	c := &n.raftC
	s := RaftStats{LeaderChanges: c.leaderChanges.Load(), Commits: c.commits.Load(), CommitErrors: c.commitErrors.Load(),
		CommitTime: time.Duration(c.commitNs.Load())}
	for i := range s.CommitCounts {
		s.CommitCounts[i] = c.commitBuckets[i].Load()
	}
	r := n.rft()
	if r == nil {
		return s
	}
	s.State = r.State().String()
	_, id := r.LeaderWithID()
	s.Leader = string(id)
	st := r.Stats()
	num := func(k string) uint64 { v, _ := strconv.ParseUint(st[k], 10, 64); return v }
	s.Term, s.CommitIndex, s.AppliedIndex, s.LastIndex = num("term"), num("commit_index"), num("applied_index"), num("last_log_index")
	return s
}
