package cluster

import (
	"slices"
	"testing"
	"time"
)

func TestMajorityAlive(t *testing.T) {
	for _, tc := range []struct {
		name   string
		voters []string
		alive  []string
		want   bool
	}{
		{"no voters", nil, nil, false},
		{"no voters, someone alive", nil, []string{"a"}, false},
		{"1 of 1", []string{"a"}, []string{"a"}, true},
		{"0 of 1", []string{"a"}, nil, false},
		{"2 of 2", []string{"a", "b"}, []string{"a", "b"}, true},
		{"1 of 2: half is not a majority", []string{"a", "b"}, []string{"a"}, false},
		{"3 of 3", []string{"a", "b", "c"}, []string{"a", "b", "c"}, true},
		{"2 of 3", []string{"a", "b", "c"}, []string{"a", "c"}, true},
		{"1 of 3", []string{"a", "b", "c"}, []string{"b"}, false},
		{"3 of 4", []string{"a", "b", "c", "d"}, []string{"a", "b", "d"}, true},
		{"2 of 4", []string{"a", "b", "c", "d"}, []string{"a", "b"}, false},
		{"3 of 5", []string{"a", "b", "c", "d", "e"}, []string{"a", "c", "e"}, true},
		{"2 of 5", []string{"a", "b", "c", "d", "e"}, []string{"d", "e"}, false},
		{"unknown members do not count", []string{"a", "b", "c"}, []string{"a", "x", "y", "z"}, false},
		{"temporary nodes do not count", []string{"a", "b", "c"}, []string{"c", "tmp1@10.0.0.9", "tmp2@10.0.0.9"}, false},
		{"temporary nodes beside a majority", []string{"a", "b", "c"}, []string{"a", "b", "tmp1@10.0.0.9"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set := map[string]bool{}
			for _, a := range tc.alive {
				set[a] = true
			}
			if got := majorityAlive(tc.voters, func(n string) bool { return set[n] }); got != tc.want {
				t.Fatalf("majorityAlive(%v, alive %v) = %v, want %v", tc.voters, tc.alive, got, tc.want)
			}
		})
	}
}

func TestLeaderHeard(t *testing.T) {
	const bound = 3 * time.Second
	for _, tc := range []struct {
		name              string
		leaderAge, outAge time.Duration
		want              bool
	}{
		{"leads, never out", 0, -1, true},
		{"leads, was out a second ago", 0, time.Second, true},
		{"recent contact, never out", 100 * time.Millisecond, -1, true},
		{"contact at the bound", bound, -1, true},
		{"contact older than the bound", bound + time.Millisecond, -1, false},
		{"never heard from a leader", -1, -1, false},
		{"never heard from a leader, leading nothing", -1, time.Hour, false},
		{"contact since the last loss of the majority", 100 * time.Millisecond, 200 * time.Millisecond, true},
		{"contact only before the last loss of the majority", 200 * time.Millisecond, 100 * time.Millisecond, false},
		{"contact in the same instant as the loss", 100 * time.Millisecond, 100 * time.Millisecond, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := leaderHeard(tc.leaderAge, tc.outAge, bound); got != tc.want {
				t.Fatalf("leaderHeard(%v, %v, %v) = %v, want %v", tc.leaderAge, tc.outAge, bound, got, tc.want)
			}
		})
	}
}

func TestInMajority(t *testing.T) {
	voters := []string{"a", "b", "c"}
	alive := func(up ...string) func(string) bool {
		return func(n string) bool { return slices.Contains(up, n) }
	}
	const bound = 3 * time.Second
	for _, tc := range []struct {
		name              string
		member            bool
		alive             func(string) bool
		leaderAge, outAge time.Duration
		want              bool
	}{
		{"member, majority alive, leader heard", true, alive("a", "b"), 50 * time.Millisecond, -1, true},
		{"the leader itself", true, alive("a", "b"), 0, time.Minute, true},
		{"not a member (purged, or never registered)", false, alive("a", "b", "c"), 0, -1, false},
		{"gossip majority, no leader ever (a configuration no leader serves)", true, alive("a", "b", "c"), -1, -1, false},
		{"gossip majority, leader contact stale", true, alive("a", "b", "c"), 4 * time.Second, -1, false},
		{"back from a partition, no leader since", true, alive("a", "b", "c"), 2 * time.Second, time.Second, false},
		{"back from a partition, leader heard since", true, alive("a", "b", "c"), 20 * time.Millisecond, time.Second, true},
		{"leader heard, gossip minority", true, alive("a"), 20 * time.Millisecond, -1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := inMajority(tc.member, voters, tc.alive, tc.leaderAge, tc.outAge, bound); got != tc.want {
				t.Fatalf("inMajority = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestLeaderContactBound(t *testing.T) {
	// Longer than a leader change takes: noticing the loss (up to twice
	// HeartbeatTimeout) and an election round (up to twice
	// ElectionTimeout), three times over, so that the majority keeps
	// serving across one.
	for _, tm := range []Timing{FastTiming(), ProductionTiming()} {
		if b, change := leaderContactBound(tm), 2*tm.HeartbeatTimeout+2*tm.ElectionTimeout; b < 3*change {
			t.Errorf("bound %v for a leader change of up to %v", b, change)
		}
	}
}

func TestFailedReleaseAfter(t *testing.T) {
	// A node cut off stops serving once its last contact with a leader is
	// leaderContactBound old (its view checks every Tick); a cut-off leader
	// counts it from its step-down, within two LeaderLeaseTimeout. The
	// leader releases its claims a Tick after that (its signaling server
	// drops the clients): the figures docs/cluster.md gives.
	for _, tc := range []struct {
		name           string
		tm             Timing
		stop, released time.Duration
	}{
		{"fast", FastTiming(), 5300 * time.Millisecond, 5400 * time.Millisecond},
		{"production", ProductionTiming(), 14 * time.Second, 15 * time.Second},
	} {
		stop, released := cutOffServingBound(tc.tm), failedReleaseAfter(tc.tm)
		if stop != tc.stop || released != tc.released {
			t.Errorf("%s: stops within %v, released after %v; want %v and %v", tc.name, stop, released, tc.stop, tc.released)
		}
		if stopBy := leaderContactBound(tc.tm) + 2*tc.tm.LeaderLeaseTimeout + tc.tm.Tick; released <= stopBy {
			t.Errorf("%s: released after %v, not after the cut-off node's stop (%v)", tc.name, released, stopBy)
		}
	}
}
