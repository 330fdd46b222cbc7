package cluster

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// Sentinel errors. Operations wrap them with %w; test with errors.Is.
// Each has a method HTTPStatus, the status the admin API answers a call
// that failed with it (signaling's admin handler reads it): 4xx for the
// caller's mistakes, 503 while the node cannot serve the call, 502 when a
// node it needed could not be reached.
var (
	// ErrClusterDisabled: a cluster operation on a node whose Cluster is off.
	ErrClusterDisabled error = &sentinel{"cluster: clustering is off on this node", http.StatusConflict}
	// ErrNotInitialized: the cluster was never initialised (InitCluster),
	// or this node is not (or no longer) a member of it.
	ErrNotInitialized error = &sentinel{"cluster: cluster is not initialised", http.StatusConflict}
	// ErrAlreadyInitialized: InitCluster or RegisterClusterNode on a node
	// that is already a member of a running cluster, or InitCluster naming
	// a node that is. The error is an *AlreadyInitializedError naming the
	// nodes.
	ErrAlreadyInitialized error = &sentinel{"cluster: this node is already a member of a cluster", http.StatusConflict}
	// ErrNoMajority: the operation needs the majority of the regular nodes
	// and this node (or its contact) is not in it.
	ErrNoMajority error = &sentinel{"cluster: not in the majority of regular nodes", http.StatusServiceUnavailable}
	// ErrTemporaryNode: a temporary node named where only regular nodes are
	// allowed (InitCluster list, PurgeClusterNode target), or InitCluster
	// run on a temporary node.
	ErrTemporaryNode error = &sentinel{"cluster: not allowed for a temporary node", http.StatusConflict}
	// ErrNodeAlive: PurgeClusterNode of a node that is running (this node
	// included).
	ErrNodeAlive error = &sentinel{"cluster: node is alive; only a stopped node can be purged", http.StatusConflict}
	// ErrTooManyNodes: the cluster would exceed max_nodes.
	ErrTooManyNodes error = &sentinel{"cluster: max_nodes reached", http.StatusConflict}
	// ErrNotInList: InitCluster's list does not name this node.
	ErrNotInList error = &sentinel{"cluster: node_name_list does not name this node", http.StatusBadRequest}
	// ErrUnknownNode: a node name that is not a member of the cluster.
	ErrUnknownNode error = &sentinel{"cluster: no such node in the cluster", http.StatusNotFound}
	// ErrUnreachable: a named node could not be reached.
	ErrUnreachable error = &sentinel{"cluster: node cannot be reached", http.StatusBadGateway}
	// ErrNotStarted: an operation before Start.
	ErrNotStarted error = &sentinel{"cluster: node not started", http.StatusServiceUnavailable}
	// ErrInvalid: a malformed argument, such as a node_name that does not
	// parse (ParseNodeName). The error's message is the problem's.
	ErrInvalid error = &sentinel{"cluster: invalid argument", http.StatusBadRequest}
)

// sentinel is the type of the sentinel errors.
type sentinel struct {
	msg    string
	status int
}

func (e *sentinel) Error() string { return e.msg }

// HTTPStatus is the status of the admin API's answer to a call failing
// with e.
func (e *sentinel) HTTPStatus() int { return e.status }

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

// AlreadyInitializedError is the error of InitCluster and
// RegisterClusterNode when a node they would make a member already belongs
// to a cluster (a running one, for InitCluster after a breakdown). Nodes
// names those nodes, sorted. It wraps ErrAlreadyInitialized.
type AlreadyInitializedError struct {
	Nodes []string
}

func (e *AlreadyInitializedError) Error() string {
	return fmt.Sprintf("%v: %s", ErrAlreadyInitialized, strings.Join(e.Nodes, ", "))
}

// Unwrap returns ErrAlreadyInitialized.
func (e *AlreadyInitializedError) Unwrap() error { return ErrAlreadyInitialized }

// alreadyInitialized returns an *AlreadyInitializedError naming nodes.
func alreadyInitialized(nodes ...string) error {
	return &AlreadyInitializedError{Nodes: slices.Sorted(slices.Values(nodes))}
}

// error codes carried over the node-to-node RPC.
var errByCode = map[string]error{
	"disabled": ErrClusterDisabled, "not_initialized": ErrNotInitialized,
	"already_initialized": ErrAlreadyInitialized, "no_majority": ErrNoMajority,
	"temporary": ErrTemporaryNode, "alive": ErrNodeAlive, "too_many": ErrTooManyNodes,
	"not_in_list": ErrNotInList, "unknown_node": ErrUnknownNode, "unreachable": ErrUnreachable,
	"invalid": ErrInvalid, "not_leader": errNotLeader, "not_member": errNotMember,
}

func codeOf(err error) string {
	for c, e := range errByCode {
		if errors.Is(err, e) {
			return c
		}
	}
	return ""
}
