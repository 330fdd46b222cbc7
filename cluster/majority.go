package cluster

import "time"

// The majority rule, as pure functions: computeView feeds them what gossip
// and Raft say, and nothing here reads a clock.
//
// A node is in the majority when all of these hold:
//
//   - it is a member: a voter of its Raft configuration (a temporary node:
//     in the configuration, as the run that registered), and no node of the
//     majority has told it that a later configuration left it out;
//   - it heard from a Raft leader recently (leaderHeard): Raft agrees, not
//     only gossip;
//   - more than half of the voters are alive by gossip (majorityAlive).

// majorityAlive is the gossip part of the rule: more than half of the
// voters (the regular nodes, Raft's voters) are alive. alive says whether
// gossip sees a node alive; the caller answers true for itself. Names that
// alive accepts but that are not voters (temporary nodes, unknown members)
// do not count, and no voters is no majority. With an even number of
// voters, half is not enough.
func majorityAlive(voters []string, alive func(name string) bool) bool {
	up := 0
	for _, v := range voters {
		if alive(v) {
			up++
		}
	}
	return 2*up > len(voters)
}

// leaderHeard is the Raft part of the rule. leaderAge is how long ago this
// node last heard from a Raft leader (0 while it leads, negative if it
// never did); outAge how long ago gossip last showed it without a majority
// of alive voters (negative if never). The contact counts when it is at
// most bound old and newer than that loss: a node back from a partition
// serves again only once a leader has reached it since, so a node the
// cluster removed meanwhile (which no leader reaches) stays out.
func leaderHeard(leaderAge, outAge, bound time.Duration) bool {
	if leaderAge < 0 || leaderAge > bound {
		return false
	}
	return outAge < 0 || leaderAge < outAge
}

// leaderContactBound is how long a node keeps counting itself in the
// majority without hearing from a Raft leader: long enough for the
// followers to notice a lost leader (up to twice HeartbeatTimeout) and to
// elect another (an election round takes up to twice ElectionTimeout),
// three times over (split votes, a loaded machine), so that a leader
// change does not make the majority stop serving: 4.8 s with FastTiming,
// 12 s with ProductionTiming. A node that never heard from a leader, or
// not since it was cut off, is out at once whatever the bound.
func leaderContactBound(t Timing) time.Duration {
	return 6 * (t.HeartbeatTimeout + t.ElectionTimeout)
}

// cutOffServingBound is the longest a node cut off from the others keeps
// serving after the cut, whatever gossip shows it: it stops once it has
// not heard from a Raft leader for leaderContactBound, which its view
// checks at least every Tick. A follower last heard from the leader before
// the cut; a leader that is cut off steps down within two
// LeaderLeaseTimeout (Raft checks its followers' contact every lease) and
// counts its last contact from then. 5.3 s with FastTiming, 14 s with
// ProductionTiming. Gossip usually stops it sooner (the README's figures).
func cutOffServingBound(t Timing) time.Duration {
	return leaderContactBound(t) + 2*t.LeaderLeaseTimeout + t.Tick
}

// failedReleaseAfter is how long gossip must have shown a node failed
// before the leader releases its channel claims (ending the sessions only
// it held) or erases it as a vanished temporary node: it was cut off
// before gossip saw it failed, so by then it has stopped serving, and a
// Tick more lets its signaling server drop its clients (it reads the view
// every 50 ms). This orders the release after the node's own stop, as a
// lease orders a new holder after the old one: a node back before then
// was never released, keeps its claims, and its sessions go on. 5.4 s
// with FastTiming, 15 s with ProductionTiming, counted from the failure
// detection.
func failedReleaseAfter(t Timing) time.Duration {
	return cutOffServingBound(t) + t.Tick
}

// inMajority is the whole rule: member, leaderHeard and majorityAlive.
func inMajority(member bool, voters []string, alive func(name string) bool, leaderAge, outAge, bound time.Duration) bool {
	return member && leaderHeard(leaderAge, outAge, bound) && majorityAlive(voters, alive)
}
