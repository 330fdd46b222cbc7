package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// leaderCommit runs an rpcApply request (a claim, a release, this node's
// facts) on the Raft leader, as leaderDo does, but a lost leader costs a
// connect little: each attempt has a short timeout, starting at the
// election timeout for each leader and doubling up to the RPC timeout (a
// leader that is slow, not gone, gets its answer in), and is cut short as
// soon as Raft here names another leader or none; a failed attempt is
// retried, against the new leader once Raft knows it, until ctx ends. The
// commands are idempotent: an attempt that timed out but was committed
// does no harm when the next one commits again.
func (n *Node) leaderCommit(ctx context.Context, req rpcRequest) (rpcResponse, error) {
	t := n.cfg.Timing
	base := min(t.ElectionTimeout, t.RPCTimeout)
	per := base
	var (
		lastErr  error
		lastAddr raft.ServerAddress
	)
	for {
		r := n.rft()
		var (
			resp rpcResponse
			err  error
			addr raft.ServerAddress
		)
		if r.State() == raft.Leader {
			resp, err = n.leaderHandle(ctx, req)
		} else {
			var id raft.ServerID
			addr, id = r.LeaderWithID()
			if addr == "" || string(id) == n.self {
				err = errNotLeader
			} else {
				if addr != lastAddr {
					per, lastAddr = base, addr // a new leader gets a short timeout again
				}
				resp, err = n.forwardAttempt(ctx, r, addr, per, req)
				per = min(2*per, t.RPCTimeout)
			}
		}
		if err == nil || !retryable(err) {
			return resp, err
		}
		lastErr = err
		// Wait for Raft to name another leader, briefly: a refused
		// connection fails at once, and Raft may not have noticed yet.
		if !n.awaitLeaderChange(ctx, r, addr, 5*pollEvery) {
			return resp, fmt.Errorf("%w: no Raft leader answered in time: %w", ErrNoMajority, lastErr)
		}
	}
}

// forwardAttempt sends req to the leader at addr, giving up after timeout
// or as soon as Raft names another leader (or none).
func (n *Node) forwardAttempt(ctx context.Context, r *raft.Raft, addr raft.ServerAddress, timeout time.Duration, req rpcRequest) (rpcResponse, error) {
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tk := time.NewTicker(pollEvery)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-actx.Done():
				return
			case <-tk.C:
				if a, _ := r.LeaderWithID(); a != addr || n.rft() != r {
					cancel()
					return
				}
			}
		}
	}()
	return n.rpc.call(actx, string(addr), req)
}

// awaitLeaderChange waits until Raft names a leader other than old (this
// node included), or for at most wait; it reports false when ctx ended or
// the node is closing.
func (n *Node) awaitLeaderChange(ctx context.Context, r *raft.Raft, old raft.ServerAddress, wait time.Duration) bool {
	tk := time.NewTicker(pollEvery)
	defer tk.Stop()
	end := time.NewTimer(wait)
	defer end.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-n.done:
			return false
		case <-end.C:
			return true
		case <-tk.C:
			if cur := n.rft(); cur != r || cur.State() == raft.Leader {
				return true
			}
			if a, _ := r.LeaderWithID(); a != "" && a != old {
				return true
			}
		}
	}
}

// retryable reports whether a commit that failed with err may succeed on
// another attempt: the leader moved, could not be reached, did not answer
// in time, or could not commit.
func retryable(err error) bool {
	return errors.Is(err, errNotLeader) || errors.Is(err, ErrUnreachable) ||
		errors.Is(err, ErrNoMajority) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, context.Canceled)
}
