package cluster

import (
	"errors"
	"fmt"
)

// Sentinel errors. Operations wrap them with %w; test with errors.Is.
var (
	// ErrClusterDisabled: a cluster operation on a node whose Cluster is off.
	ErrClusterDisabled = errors.New("cluster: clustering is off on this node")
	// ErrNotInitialized: the cluster was never initialised (InitCluster),
	// or this node is not (or no longer) a member of it.
	ErrNotInitialized = errors.New("cluster: cluster is not initialised")
	// ErrAlreadyInitialized: InitCluster or RegisterClusterNode on a node
	// that is already a member of a running cluster.
	ErrAlreadyInitialized = errors.New("cluster: this node is already a member of a cluster")
	// ErrNoMajority: the operation needs the majority of the regular nodes
	// and this node (or its contact) is not in it.
	ErrNoMajority = errors.New("cluster: not in the majority of regular nodes")
	// ErrTemporaryNode: a temporary node named where only regular nodes are
	// allowed (InitCluster list, PurgeClusterNode target), or InitCluster
	// run on a temporary node.
	ErrTemporaryNode = errors.New("cluster: not allowed for a temporary node")
	// ErrNodeAlive: PurgeClusterNode of a node that is running.
	ErrNodeAlive = errors.New("cluster: node is alive; only a stopped node can be purged")
	// ErrTooManyNodes: the cluster would exceed max_nodes.
	ErrTooManyNodes = errors.New("cluster: max_nodes reached")
	// ErrNotInList: InitCluster's list does not name this node.
	ErrNotInList = errors.New("cluster: node_name_list does not name this node")
	// ErrUnknownNode: a node name that is not a member of the cluster.
	ErrUnknownNode = errors.New("cluster: no such node in the cluster")
	// ErrUnreachable: a named node could not be reached.
	ErrUnreachable = errors.New("cluster: node cannot be reached")
	// ErrNotStarted: an operation before Start.
	ErrNotStarted = errors.New("cluster: node not started")
)

// OwnedElsewhereError is returned by ClaimChannel when relay is off and
// another node already holds the channel's session. The API layer turns it
// into a 307 to Owner.APIURL, signaling into a redirect.
type OwnedElsewhereError struct {
	ChannelID string
	Owner     NodeInfo
}

func (e *OwnedElsewhereError) Error() string {
	return fmt.Sprintf("cluster: channel %q is held by node %s", e.ChannelID, e.Owner.Name)
}

// error codes carried over the node-to-node RPC.
var errByCode = map[string]error{
	"disabled": ErrClusterDisabled, "not_initialized": ErrNotInitialized,
	"already_initialized": ErrAlreadyInitialized, "no_majority": ErrNoMajority,
	"temporary": ErrTemporaryNode, "alive": ErrNodeAlive, "too_many": ErrTooManyNodes,
	"not_in_list": ErrNotInList, "unknown_node": ErrUnknownNode, "unreachable": ErrUnreachable,
}

func codeOf(err error) string {
	for c, e := range errByCode {
		if errors.Is(err, e) {
			return c
		}
	}
	return ""
}
