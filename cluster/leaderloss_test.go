package cluster

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/shoal-sfu/shoal/internal/testutil"
)

// claimsAcrossCut claims new channels on n from workers goroutines, one
// claim after another, for span after cut() returns; each claim has its own
// context of connectTimeout, as a connect would. It returns every claim's
// latency and error, and when n first knew a leader other than cutLeader,
// the one cut.
func claimsAcrossCut(n *Node, cutLeader string, cut func(), span time.Duration, workers int, connectTimeout time.Duration) (lat []time.Duration, errs []error, newLeader time.Duration) {
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	cut()
	start := time.Now()
	end := start.Add(span)
	wg.Go(func() {
		for time.Now().Before(end) {
			if _, id := n.rft().LeaderWithID(); id != "" && string(id) != cutLeader {
				newLeader = time.Since(start)
				return
			}
			time.Sleep(time.Millisecond)
		}
	})
	for w := range workers {
		wg.Go(func() {
			for i := 0; time.Now().Before(end); i++ {
				ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
				s := time.Now()
				_, err := n.ClaimChannel(ctx, fmt.Sprintf("after-cut-%d-%d", w, i))
				d := time.Since(s)
				cancel()
				mu.Lock()
				lat = append(lat, d)
				if err != nil {
					errs = append(errs, fmt.Errorf("claim %d.%d, %v after the cut, failed after %v: %w", w, i, s.Sub(start), d, err))
				}
				mu.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	return lat, errs, newLeader
}

// checkClaimsAcrossCut fails the test when a claim failed or took longer
// than bound, and logs the latencies' p50, p99 and max.
func checkClaimsAcrossCut(t *testing.T, what string, lat []time.Duration, errs []error, newLeader, bound time.Duration) {
	t.Helper()
	if len(lat) == 0 {
		t.Fatal("no claim was made")
	}
	t.Logf("FIGURE %s: %d claims in the 10 s after the cut: p50 %v, p99 %v, max %v, %d failed; new leader known %v after the cut",
		what, len(lat), pct(lat, 50), pct(lat, 99), slices.Max(lat).Round(time.Millisecond), len(errs), newLeader.Round(time.Millisecond))
	for i, err := range errs {
		if i == 5 {
			t.Errorf("... and %d more", len(errs)-5)
			break
		}
		t.Error(err)
	}
	if m := slices.Max(lat); m > bound {
		t.Errorf("slowest claim took %v, want at most %v", m, bound)
	}
}

// leaderOf returns the node of ns that leads Raft and the others.
func leaderOf(t *testing.T, ns []*tnode) (*tnode, []*tnode) {
	t.Helper()
	var id raft.ServerID
	testutil.Eventually(t, func() bool { _, id = ns[0].rft().LeaderWithID(); return id != "" }, 10*time.Second, "a leader")
	var leader *tnode
	var rest []*tnode
	for _, n := range ns {
		if n.self == string(id) {
			leader = n
		} else {
			rest = append(rest, n)
		}
	}
	if leader == nil {
		t.Fatalf("leader %s is none of the nodes", id)
	}
	return leader, rest
}

// TestLeaderCutClaims cuts the Raft leader off with FaultNet (connections
// to it are refused) and claims new channels on a follower of the majority
// side for the next 10 s: each must succeed, within 5 s.
func TestLeaderCutClaims(t *testing.T) {
	c, ns, ctx := runCluster(t, 3)
	leader, rest := leaderOf(t, ns)
	for i := range 20 { // the forwarding path is warm, as in service
		if _, err := rest[0].ClaimChannel(ctx, fmt.Sprintf("before-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	lat, errs, newLeader := claimsAcrossCut(rest[0].Node, leader.self, func() { c.net.Partition(c.ips(leader), c.ips(rest...)) },
		10*time.Second, 3, 10*time.Second)
	checkClaimsAcrossCut(t, "leader cut off (FaultNet), claims on a follower", lat, errs, newLeader, 5*time.Second)
	c.net.Heal()
	c.waitMajority(leader, true, 15*time.Second)
}

// TestProcessLeaderFrozenClaims runs two node processes and one node in
// the test; the Raft leader, a process, is frozen with SIGSTOP, which to
// the others is a silent cut: its sockets stay open and the kernel still
// accepts connections, but nothing answers. The node in the test claims
// new channels for the next 10 s: each must succeed, within 5 s.
func TestProcessLeaderFrozenClaims(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c := newTestCluster(t)
	self := c.add("q3", false)
	var ps []*childProc
	for i := range 2 {
		ip := testutil.LoopbackIP(t)
		ps = append(ps, startChild(t, fmt.Sprintf("q%d@%s", i+1, ip), t.TempDir(), c.port, ""))
	}
	names := []string{ps[0].name, ps[1].name, self.self}
	ctx := testutil.Context(t, 60*time.Second)
	var initErr error
	if !testutil.WaitFor(func() bool { // the processes take a while to start
		ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, initErr = self.InitCluster(ictx, names)
		return initErr == nil
	}, 30*time.Second) {
		t.Fatalf("init cluster of %s: %v", strings.Join(names, ","), initErr)
	}
	for _, p := range ps {
		testutil.Eventually(t, func() bool { return p.status().InMajority }, 20*time.Second, "%s in majority", p.name)
	}
	// The leader must be a process: move it away from this one.
	var leader *childProc
	testutil.Eventually(t, func() bool {
		_, id := self.rft().LeaderWithID()
		if string(id) == self.self {
			self.rft().LeadershipTransfer().Error()
			return false
		}
		for _, p := range ps {
			if string(id) == p.name {
				leader = p
			}
		}
		return leader != nil
	}, 20*time.Second, "a process leads")
	for i := range 20 { // the forwarding path is warm, as in service
		if _, err := self.ClaimChannel(ctx, fmt.Sprintf("before-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	lat, errs, newLeader := claimsAcrossCut(self.Node, leader.name, func() {
		if err := leader.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
	}, 10*time.Second, 3, 10*time.Second)
	leader.kill() // before this node closes: it must not hand its leadership to a frozen process
	checkClaimsAcrossCut(t, "leader process frozen (SIGSTOP), claims on a node of the majority", lat, errs, newLeader, 5*time.Second)
}
