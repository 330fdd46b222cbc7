package cluster

import (
	"fmt"

	"github.com/shoal-sfu/shoal/affinity"
)

// Mode returns this node's mode and its reason, as ListClusterNodes shows
// them for this node.
func (n *Node) Mode() (affinity.Mode, string) {
	n.local.Lock()
	defer n.local.Unlock()
	return n.local.mode, n.local.reason
}

// SwapMode sets this node's mode to mode with reason if it is still old
// with oldReason, and reports whether it did. Unlike SetMode it keeps the
// mode in memory only: it is for changes the node makes on its own (the
// root package blocks a node on a local fault with it, docs/cluster.md),
// which must work when DataDir cannot be written, must not outlive the
// process, and must never undo a SetMode made since old was read. reason
// is cut to 200 bytes, as by SetMode.
func (n *Node) SwapMode(old affinity.Mode, oldReason string, mode affinity.Mode, reason string) (bool, error) {
	if err := n.check("swap mode"); err != nil {
		return false, err
	}
	if mode > affinity.ModeBlockNewConnection {
		return false, fmt.Errorf("cluster: swap mode: unknown mode %v", mode)
	}
	if len(reason) > maxReason {
		reason = reason[:maxReason]
	}
	n.modeMu.Lock() // orders it against SetMode's save-then-set
	n.local.Lock()
	swapped := n.local.mode == old && n.local.reason == oldReason
	if swapped {
		n.local.mode, n.local.reason = mode, reason
	}
	n.local.Unlock()
	n.modeMu.Unlock()
	if !swapped {
		return false, nil
	}
	if n.serf != nil {
		if err := n.serf.SetTags(n.tags()); err != nil {
			return true, fmt.Errorf("cluster: swap mode: %w", err)
		}
	}
	n.rebuild()
	return true, nil
}
