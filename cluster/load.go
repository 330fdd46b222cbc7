package cluster

import (
	"context"
	"maps"
	"time"

	"github.com/hashicorp/serf/serf"
	"golang.org/x/sync/errgroup"
)

// loadReport is one node's load, pushed to every node.
type loadReport struct {
	Node     string         `json:"node"`
	Boot     string         `json:"boot"`
	Seq      uint64         `json:"seq"`
	Total    int            `json:"total"`
	Channels map[string]int `json:"channels,omitempty"`
}

// PublishLoad sets this node's connection counts: total, and per channel
// (copied). Other nodes see them within Timing.LoadInterval plus a round
// trip. It never blocks on the network.
func (n *Node) PublishLoad(total int, perChannel map[string]int) {
	n.local.Lock()
	n.local.total = total
	n.local.channels = maps.Clone(perChannel)
	n.local.seq++
	n.local.Unlock()
	select {
	case n.loadDirty <- struct{}{}:
	default:
	}
	n.markDirty()
}

func (n *Node) storeLoad(rep loadReport) {
	if rep.Node == n.self {
		return
	}
	n.loadsMu.Lock()
	cur, ok := n.loads[rep.Node]
	fresh := !ok || cur.Boot != rep.Boot || rep.Seq > cur.Seq
	if fresh {
		n.loads[rep.Node] = rep
	}
	n.loadsMu.Unlock()
	if fresh {
		n.markDirty()
	}
}

// loadLoop pushes this node's load to every alive node when it changes
// (at most once per LoadInterval) and every LoadRefresh.
func (n *Node) loadLoop(ctx context.Context) {
	t := n.cfg.Timing
	every(ctx, t.LoadRefresh, n.loadDirty, func() {
		n.local.Lock()
		rep := loadReport{Node: n.self, Boot: n.boot, Seq: n.local.seq, Total: n.local.total, Channels: n.local.channels}
		n.local.Unlock()
		var g errgroup.Group
		g.SetLimit(16)
		for name, m := range n.members() {
			if name == n.self || m.Status != serf.StatusAlive || m.Tags[tagRPC] == "" {
				continue
			}
			addr := memberRPCAddr(m)
			g.Go(func() error {
				cctx, cancel := context.WithTimeout(ctx, t.RPCTimeout)
				defer cancel()
				if _, err := n.rpc.call(cctx, addr, rpcRequest{Op: rpcLoad, Load: &rep}); err != nil {
					n.logger.Debug("cluster: push load", "to", name, "err", err)
				}
				return nil
			})
		}
		g.Wait()
		select { // at most one push per LoadInterval
		case <-time.After(t.LoadInterval):
		case <-ctx.Done():
		}
	})
}
