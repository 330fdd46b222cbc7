package cluster

import (
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoal-sfu/shoal/internal/testutil"
)

// TestTemporaryNodeVanishedIsErased: a temporary node that vanishes
// without leaving (cut off for good, then stopped while cut off) is listed
// as not connected for Timing.TemporaryReapTimeout, and at least until it
// must have stopped serving (failedReleaseAfter), then erased everywhere.
// With a reap timeout shorter than that, the erasure waits for it: without
// the wait the node was erased, its sessions ended, while it could still
// serve.
func TestTemporaryNodeVanishedIsErased(t *testing.T) {
	fence := failedReleaseAfter(FastTiming())
	for _, reap := range []time.Duration{fence / 3, fence + 2*time.Second} {
		t.Run("reap "+reap.String(), func(t *testing.T) { vanishedIsErased(t, reap) })
	}
}

func vanishedIsErased(t *testing.T, reap time.Duration) {
	testutil.CheckLeaks(t)
	c := newTestCluster(t)
	withReap := func(cfg *Config) { cfg.Timing.TemporaryReapTimeout = reap }
	ns := c.regularWith(3, withReap)
	ctx := ctxT(t)
	tmp := c.addWith("tmp", true, withReap)
	if _, err := tmp.RegisterClusterNode(ctx, ns[0].self); err != nil {
		t.Fatal(err)
	}
	for _, n := range ns {
		testutil.Eventually(t, func() bool { return connected(n, tmp.self) }, 10*time.Second, "%s sees the temporary node", n.self)
	}

	// It vanishes: nothing reaches the others any more, and it never
	// leaves (its Close at the end of the test finds it cut off).
	cut := time.Now()
	c.net.Partition(c.ips(tmp), c.ips(ns...))
	for _, n := range ns {
		testutil.Eventually(t, func() bool { return !connected(n, tmp.self) }, 10*time.Second, "%s sees it gone", n.self)
	}
	seen := time.Now()
	// A second before it is due (the leader may have seen the failure
	// before the others), it is still listed, as not connected.
	keep := max(reap, failedReleaseAfter(tmp.cfg.Timing))
	time.Sleep(keep - time.Second)
	for _, n := range ns {
		if !listed(n, tmp.self) {
			t.Fatalf("%s erased the temporary node %v after it was seen failed, before %v (the reap timeout %v, or until it must have stopped serving)",
				n.self, time.Since(seen), keep, reap)
		}
	}
	for _, n := range ns {
		testutil.Eventually(t, func() bool { return !listed(n, tmp.self) }, 10*time.Second, "%s erased the vanished temporary node", n.self)
	}
	t.Logf("failure seen %v after the cut; erased everywhere %v after the cut (reap timeout %v, due %v after the failure)",
		seen.Sub(cut).Round(time.Millisecond), time.Since(cut).Round(time.Millisecond), reap, keep)
	for _, n := range ns {
		if len(n.snap.Load().voters) != 3 || !n.Snapshot().InMajority {
			t.Fatalf("%s: voters %v, in majority %v", n.self, n.snap.Load().voters, n.Snapshot().InMajority)
		}
	}
}

// TestHousekeepingRetriesConfigChange: a Raft configuration change that
// housekeeping makes and that fails is logged, naming it, and retried with
// a growing delay until it is done.
func TestHousekeepingRetriesConfigChange(t *testing.T) {
	testutil.CheckLeaks(t)
	const ghost = "ghost@127.0.0.250"
	var (
		mu       sync.Mutex
		attempts = map[string][]time.Time{} // by node: a new leader starts afresh
		failing  atomic.Bool
	)
	failing.Store(true)
	most := func() []time.Time {
		mu.Lock()
		defer mu.Unlock()
		var out []time.Time
		for _, a := range attempts {
			if len(a) > len(out) {
				out = slices.Clone(a)
			}
		}
		return out
	}
	var rec logRecorder
	c := newTestCluster(t)
	ns := c.regularWith(3, func(cfg *Config) {
		node := cfg.NodeName
		cfg.confChangeFault = func(change string) error {
			if !strings.Contains(change, ghost) {
				return nil
			}
			mu.Lock()
			attempts[node] = append(attempts[node], time.Now())
			mu.Unlock()
			if failing.Load() {
				return errors.New("injected failure")
			}
			return nil
		}
		cfg.Logger = rec.logger(t, slog.LevelInfo)
	})
	leader, _ := leaderOf(t, ns)
	// A non-voter without facts in the replicated state: housekeeping
	// removes it from the configuration.
	if err := leader.rft().AddNonvoter(ghost, "127.0.0.250:1", 0, time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	inConfig := func() bool {
		for _, s := range leader.raftServers() {
			if s.ID == ghost {
				return true
			}
		}
		return false
	}
	tick := leader.cfg.Timing.Tick
	testutil.Eventually(t, func() bool { return len(most()) >= 4 }, 20*tick+10*time.Second, "four attempts on one node")
	if !inConfig() {
		t.Fatal("the failed change reached Raft")
	}
	a := most()
	var gaps []time.Duration
	for i := 1; i < len(a); i++ {
		gaps = append(gaps, a[i].Sub(a[i-1]))
	}
	t.Logf("gaps between attempts: %v", gaps)
	// The delay doubles from two ticks: an attempt is never early.
	for i, gap := range gaps[:3] {
		if want := tick << (i + 1); gap < want-tick/2 {
			t.Errorf("attempt %d came %v after the one before, want at least %v (gaps %v)", i+2, gap, want, gaps)
		}
	}
	named := slices.ContainsFunc(rec.atWarn(), func(l string) bool {
		return strings.Contains(l, "remove non-voter "+ghost) && strings.Contains(l, "injected failure") && strings.Contains(l, "retry")
	})
	if !named {
		t.Errorf("no warning naming the failed change, its error and the retry among:\n%s", strings.Join(rec.atWarn(), "\n"))
	}
	failing.Store(false)
	testutil.Eventually(t, func() bool { return !inConfig() }, 40*tick+10*time.Second, "the change done once it no longer fails")
	testutil.Eventually(t, func() bool {
		return slices.ContainsFunc(rec.lines(), func(l string) bool {
			return strings.Contains(l, "done after failed attempts") && strings.Contains(l, "remove non-voter "+ghost)
		})
	}, 5*time.Second, "a line saying the change was done at last")
}
