package cluster

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/shoal-sfu/shoal/internal/testutil"
)

// A release whose commit failed (the node was cut off from the others
// while it released) is retried in the background; when that retry ends
// the session, the releasing node emits EventSessionEnded: the session
// gets its one end, although ReleaseChannelEnded returned an error.
func TestReleaseRetryReportsSessionEnd(t *testing.T) {
	c, ns, ctx := runCluster(t, 3)
	_, followers := leaderOf(t, ns)
	f := followers[0]
	if owners, err := f.ClaimChannel(ctx, "retried"); err != nil || len(owners) != 1 {
		t.Fatalf("claim: %v %v", owners, err)
	}
	testutil.Eventually(t, func() bool { return slices.Contains(f.fsm.owners("retried"), f.self) }, 10*time.Second, "the claim applied on the follower")
	var (
		mu    sync.Mutex
		ended = map[string]int{} // node -> EventSessionEnded for "retried"
	)
	for _, n := range ns {
		self := n.self
		cancel := n.Subscribe(func(e Event) {
			if e.Kind == EventSessionEnded && e.Channel == "retried" {
				mu.Lock()
				ended[self]++
				mu.Unlock()
			}
		})
		t.Cleanup(cancel)
	}
	count := func() (total int, on map[string]int) {
		mu.Lock()
		defer mu.Unlock()
		on = map[string]int{}
		for k, v := range ended {
			on[k], total = v, total+v
		}
		return total, on
	}

	var others []*tnode
	for _, n := range ns {
		if n != f {
			others = append(others, n)
		}
	}
	c.net.Partition(c.ips(f), c.ips(others...))
	rctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	gotEnded, err := f.ReleaseChannelEnded(rctx, "retried")
	cancel()
	if err == nil {
		t.Fatalf("release committed while the node was cut off (ended %v)", gotEnded)
	}
	c.net.Heal()

	testutil.Eventually(t, func() bool {
		for _, n := range ns {
			if _, held := n.Snapshot().Sessions["retried"]; held {
				return false
			}
		}
		return true
	}, 20*time.Second, "the release retried and committed")
	testutil.Eventually(t, func() bool { total, _ := count(); return total > 0 }, 5*time.Second, "EventSessionEnded for the retried release")
	time.Sleep(5 * f.cfg.Timing.Tick) // no second one
	total, on := count()
	if total != 1 {
		t.Fatalf("EventSessionEnded %d times (%v), want once", total, on)
	}
	t.Logf("EventSessionEnded on %v (releasing node %s)", on, f.self)
}

// Releases that return an error although the leader may have committed
// them (a deadline of a few milliseconds, so that some answers come too
// late): each session still ends with exactly one EventSessionEnded,
// whether the release was committed then or by the retry.
func TestReleaseErrorReportsSessionEndOnce(t *testing.T) {
	_, ns, ctx := runCluster(t, 3)
	_, followers := leaderOf(t, ns)
	f := followers[0]
	const k = 12
	var (
		mu    sync.Mutex
		ended = map[string]int{}
	)
	for _, n := range ns {
		cancel := n.Subscribe(func(e Event) {
			if e.Kind == EventSessionEnded {
				mu.Lock()
				ended[e.Channel]++
				mu.Unlock()
			}
		})
		t.Cleanup(cancel)
	}
	chans := make([]string, k)
	for i := range chans {
		chans[i] = "late-" + string(rune('a'+i))
		if _, err := f.ClaimChannel(ctx, chans[i]); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, func() bool {
		for _, ch := range chans {
			if !slices.Contains(f.fsm.owners(ch), f.self) {
				return false
			}
		}
		return true
	}, 10*time.Second, "the claims applied on the follower")
	reported, failed := 0, 0
	for i, ch := range chans {
		rctx, cancel := context.WithTimeout(ctx, time.Duration(i%6+1)*time.Millisecond)
		gotEnded, err := f.ReleaseChannelEnded(rctx, ch)
		cancel()
		switch {
		case err != nil:
			failed++
		case gotEnded:
			reported++
			mu.Lock()
			ended[ch]++ // the caller reports it (signaling sends session.destroyed)
			mu.Unlock()
		default:
			t.Errorf("%s: release succeeded without ending the session", ch)
		}
	}
	testutil.Eventually(t, func() bool {
		for _, n := range ns {
			for _, ch := range chans {
				if _, held := n.Snapshot().Sessions[ch]; held {
					return false
				}
			}
		}
		return true
	}, 20*time.Second, "every release committed")
	testutil.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(ended) == k
	}, 5*time.Second, "an end for every session")
	time.Sleep(5 * f.cfg.Timing.Tick)
	mu.Lock()
	defer mu.Unlock()
	for _, ch := range chans {
		if ended[ch] != 1 {
			t.Errorf("%s: %d ends, want 1", ch, ended[ch])
		}
	}
	t.Logf("%d releases answered in time, %d with an error", reported, failed)
}
