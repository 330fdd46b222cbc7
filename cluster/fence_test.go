package cluster

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/serf/serf"

	"github.com/shoal-sfu/shoal/internal/testutil"
)

// The leader releases a failed node's claims only once that node must have
// stopped serving (failedReleaseAfter): a cut that heals before then ends
// nothing, and a node that did stop ends its sessions exactly once.

// fenceRun is a three-node cluster whose victim, a Raft follower, holds one
// channel and is about to be cut off; it records every EventSessionEnded
// and when the victim left the majority.
type fenceRun struct {
	c              *tcluster
	leader, victim *tnode
	others         []*tnode
	ch             string

	mu    sync.Mutex
	ends  []fenceEnd
	out   time.Time     // the victim's first EventMajority false
	outCh chan struct{} // closed then
}

type fenceEnd struct {
	node string
	at   time.Time
}

// newFenceRun starts the cluster. With FastTiming a node cut off sees the
// others fail about when they see it fail, so whether it notices before a
// quick heal is a race. In production it notices seconds after the
// majority (memberlist's Lifeguard slows the probes of the node that sees
// failures: see the README's figures); n2 and n3 get a gossip suspicion
// longer than leaderContactBound to reproduce that order, so that a victim
// chosen among them stops serving by the Raft bound (cutOffServingBound)
// while the majority sees it failed within about a second. n1 keeps
// FastTiming: the majority side always holds a node that detects the
// failure quickly and tells the others.
func newFenceRun(t *testing.T, ch string) *fenceRun {
	t.Helper()
	testutil.CheckLeaks(t)
	c := newTestCluster(t)
	ns := c.regularWith(3, func(cfg *Config) {
		if !strings.HasPrefix(cfg.NodeName, "n1@") {
			tm := cfg.Timing
			cfg.Timing.SuspicionMult = int(leaderContactBound(tm)/tm.ProbeInterval) + 5
		}
	})
	leader, followers := leaderOf(t, ns)
	r := &fenceRun{c: c, leader: leader, ch: ch, outCh: make(chan struct{})}
	for _, f := range followers {
		if f != ns[0] {
			r.victim = f
			break
		}
	}
	for _, n := range ns {
		if n != r.victim {
			r.others = append(r.others, n)
		}
	}
	ctx := ctxT(t)
	if owners, err := r.victim.ClaimChannel(ctx, ch); err != nil || len(owners) != 1 {
		t.Fatalf("claim: %v %v", owners, err)
	}
	for _, n := range ns {
		testutil.Eventually(t, func() bool { return slices.Equal(n.fsm.owners(ch), []string{r.victim.self}) }, 10*time.Second,
			"%s sees the claim", n.self)
		self := n.self
		cancel := n.Subscribe(func(e Event) {
			r.mu.Lock()
			defer r.mu.Unlock()
			switch {
			case e.Kind == EventSessionEnded && e.Channel == ch:
				r.ends = append(r.ends, fenceEnd{node: self, at: time.Now()})
			case e.Kind == EventMajority && !e.InMajority && self == r.victim.self && r.out.IsZero():
				r.out = time.Now()
				close(r.outCh)
			}
		})
		t.Cleanup(cancel)
	}
	return r
}

func (r *fenceRun) endsSeen() []fenceEnd {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ends)
}

func (r *fenceRun) outAt() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.out
}

// cut cuts the victim off and waits until the leader's gossip shows it
// failed; it returns the times of both.
func (r *fenceRun) cut(t *testing.T) (cut, failed time.Time) {
	t.Helper()
	cut = time.Now()
	r.c.net.Partition(r.c.ips(r.victim), r.c.ips(r.others...))
	testutil.Eventually(t, func() bool { return r.status(r.leader) == serf.StatusFailed }, 10*time.Second,
		"the leader sees %s failed", r.victim.self)
	return cut, time.Now()
}

// status is the victim's gossip status as from sees it.
func (r *fenceRun) status(from *tnode) serf.MemberStatus {
	return from.members()[r.victim.self].Status
}

// heal heals the cut and waits until every node sees the victim alive and
// it is back in the majority.
func (r *fenceRun) heal(t *testing.T) {
	t.Helper()
	r.c.net.Heal()
	for _, n := range r.others {
		testutil.Eventually(t, func() bool { return r.status(n) == serf.StatusAlive }, 10*time.Second,
			"%s sees %s alive again", n.self, r.victim.self)
	}
	r.c.waitMajority(r.victim, true, 15*time.Second)
}

// A cut that heals before the victim noticed it: the leader saw the
// victim failed, but releases nothing, the victim keeps its claim and
// never leaves the majority, and no session ends. Before the fence the
// leader released the claim on its next tick, ended the session
// (EventSessionEnded), and the still-serving victim claimed it again.
func TestCutHealedBeforeStopKeepsClaims(t *testing.T) {
	r := newFenceRun(t, "kept")
	tm := r.victim.cfg.Timing
	cut, failed := r.cut(t)
	time.Sleep(10 * tm.Tick) // the leader's housekeeping ran meanwhile
	if !r.victim.Snapshot().InMajority {
		t.Fatalf("%s left the majority %v after the cut, before the heal: the test needs it still serving",
			r.victim.self, time.Since(cut))
	}
	if got := r.leader.fsm.owners(r.ch); !slices.Equal(got, []string{r.victim.self}) {
		t.Fatalf("%v after the cut (%v after the leader saw it failed) the owners are %v; want the victim %s still",
			time.Since(cut), time.Since(failed), got, r.victim.self)
	}
	healAt := time.Since(cut)
	r.heal(t)
	// Past the time the leader would have released it, had it stayed cut.
	time.Sleep(time.Until(failed.Add(failedReleaseAfter(tm) + 5*tm.Tick)))
	if ends := r.endsSeen(); len(ends) != 0 {
		t.Fatalf("the session ended %d times (%v) though the cut healed %v after it", len(ends), ends, healAt)
	}
	if out := r.outAt(); !out.IsZero() {
		t.Fatalf("%s left the majority %v after the cut", r.victim.self, out.Sub(cut))
	}
	for _, n := range append([]*tnode{r.victim}, r.others...) {
		if got := n.fsm.owners(r.ch); !slices.Equal(got, []string{r.victim.self}) {
			t.Errorf("%s: owners %v, want %s", n.self, got, r.victim.self)
		}
	}
	r.victim.local.Lock()
	held := r.victim.local.claims[r.ch]
	r.victim.local.Unlock()
	if !held {
		t.Error("the victim no longer holds its claim")
	}
	t.Logf("leader saw the victim failed %v after the cut; healed %v after the cut; nothing released",
		failed.Sub(cut).Round(time.Millisecond), healAt.Round(time.Millisecond))
}

// A cut held past the victim's stop: the victim leaves the majority and,
// as its signaling server does when it drops its clients, releases its
// channel (the release cannot commit); the leader releases the victim's
// claims only after that, and the session ends exactly once, on the
// leader, also after the cut heals. Before the fence the leader ended the
// session about a second after the cut, while the victim still served.
func TestCutPastStopReleasesOnce(t *testing.T) {
	r := newFenceRun(t, "held")
	tm := r.victim.cfg.Timing
	cut, failed := r.cut(t)
	r.waitOut(t)
	out := r.outAt()
	r.victimReleases(t)
	testutil.Eventually(t, func() bool { return len(r.endsSeen()) > 0 }, 2*failedReleaseAfter(tm), "the session's end")
	end := r.endsSeen()[0]
	if end.at.Before(out) {
		t.Fatalf("the session ended on %s %v after the cut, before %s stopped serving (%v after the cut)",
			end.node, end.at.Sub(cut), r.victim.self, out.Sub(cut))
	}
	if end.node != r.leader.self {
		t.Errorf("the session ended on %s, want the leader %s", end.node, r.leader.self)
	}
	r.heal(t)
	r.checkEndedOnce(t)
	t.Logf("leader saw the victim failed %v after the cut; the victim stopped %v after it; the leader ended its session %v after it (%v after the failure)",
		failed.Sub(cut).Round(time.Millisecond), out.Sub(cut).Round(time.Millisecond),
		end.at.Sub(cut).Round(time.Millisecond), end.at.Sub(failed).Round(time.Millisecond))
}

// A victim that stopped serving and comes back before the leader released
// its claims ends its session itself, once: its release, retried once it
// is back in the majority, ends the session and it reports it.
func TestCutStoppedBackBeforeReleaseEndsOnce(t *testing.T) {
	r := newFenceRun(t, "returned")
	cut, failed := r.cut(t)
	r.waitOut(t)
	r.victimReleases(t)
	r.heal(t)
	r.checkEndedOnce(t)
	ends := r.endsSeen()
	t.Logf("leader saw the victim failed %v after the cut; the victim stopped %v after it; the session ended on %s %v after it",
		failed.Sub(cut).Round(time.Millisecond), r.outAt().Sub(cut).Round(time.Millisecond), ends[0].node,
		ends[0].at.Sub(cut).Round(time.Millisecond))
}

// victimReleases releases the channel on the victim, out of the majority,
// as its signaling server does when it drops the last client: the release
// cannot commit and returns an error.
// waitOut waits for the victim to leave the majority, within twice the
// bound of a cut-off node's serving.
func (r *fenceRun) waitOut(t *testing.T) {
	t.Helper()
	bound := 2 * cutOffServingBound(r.victim.cfg.Timing)
	select {
	case <-r.outCh:
	case <-time.After(bound):
		t.Fatalf("%s did not leave the majority within %v of the cut", r.victim.self, bound)
	}
}

func (r *fenceRun) victimReleases(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if ended, err := r.victim.ReleaseChannelEnded(ctx, r.ch); err == nil {
		t.Fatalf("the release of the cut-off victim committed (ended %v)", ended)
	}
}

// checkEndedOnce waits for the session to be gone everywhere and checks
// that it ended once, and does not come back.
func (r *fenceRun) checkEndedOnce(t *testing.T) {
	t.Helper()
	tm := r.victim.cfg.Timing
	all := append([]*tnode{r.victim}, r.others...)
	testutil.Eventually(t, func() bool {
		for _, n := range all {
			if len(n.fsm.owners(r.ch)) != 0 {
				return false
			}
		}
		return len(r.endsSeen()) > 0
	}, 2*failedReleaseAfter(tm), "the session ended everywhere")
	time.Sleep(20 * tm.Tick) // the victim's housekeeping ran meanwhile
	if ends := r.endsSeen(); len(ends) != 1 {
		t.Fatalf("the session ended %d times (%v), want once", len(ends), ends)
	}
	for _, n := range all {
		if got := n.fsm.owners(r.ch); len(got) != 0 {
			t.Errorf("%s: owners %v after the end", n.self, got)
		}
	}
}
