package affinity

import (
	"fmt"
	"time"
)

// Mode is a node's admission mode (docs/cluster.md, "Node modes").
type Mode uint8

const (
	// ModeNormal admits new sessions and new connections.
	ModeNormal Mode = iota
	// ModeBlockNewSession admits connections to sessions the node already
	// holds, but no new session is placed on it.
	ModeBlockNewSession
	// ModeBlockNewConnection admits no new connection at all.
	ModeBlockNewConnection
)

var modeNames = [...]string{"normal", "block_new_session", "block_new_connection"}

// String returns Sora's name of the mode ("normal", "block_new_session",
// "block_new_connection").
func (m Mode) String() string {
	if int(m) < len(modeNames) {
		return modeNames[m]
	}
	return fmt.Sprintf("Mode(%d)", uint8(m))
}

// ParseMode parses a mode name as String writes it.
func ParseMode(s string) (Mode, error) {
	for i, n := range modeNames {
		if n == s {
			return Mode(i), nil
		}
	}
	return 0, fmt.Errorf("affinity: unknown mode %q (want normal, block_new_session or block_new_connection)", s)
}

// Node is one node of the cluster as placement sees it.
type Node struct {
	// Name is the node_name, NAME@HOST.
	Name string
	// Temporary is true for a temporary node: one that does not count for
	// the majority (docs/cluster.md).
	Temporary bool
	// Connected is false for a node that cannot be reached from the
	// contacted node, or that is not in its majority group.
	Connected bool
	// Mode is the node's admission mode.
	Mode Mode
	// Capacity is the node's configured max_connections, before any share of
	// a failed node's capacity is added. Zero or less means the node takes no
	// connection.
	Capacity int
	// Connections is the node's current number of connections.
	Connections int
	// SignalingURL and APIURL are the node's external_signaling_url and
	// external_api_url, the targets of redirects.
	SignalingURL string
	APIURL       string
}

// Owner is one node holding part of a session, with the session's number of
// connections on it.
type Owner struct {
	// Node is the index of the node in View.Nodes.
	Node int
	// Connections is the number of this session's connections on that node.
	Connections int
}

// Session is the cluster-wide state of one channel's session.
type Session struct {
	// Owners lists the nodes holding the session, the node that created it
	// (the gathering node) first. With relay off there is exactly one.
	Owners []Owner
}

// Settings are the cluster-wide settings that placement reads; their Sora
// names are cluster, cluster_relay, default_cluster_affinity and
// cluster_affinity_threshold.
type Settings struct {
	// Cluster is the `cluster` setting; with it off the node is a plain SFU.
	Cluster bool
	// Relay is `cluster_relay`.
	Relay bool
	// DefaultAffinity is `default_cluster_affinity`.
	DefaultAffinity bool
	// AffinityThreshold is `cluster_affinity_threshold`.
	AffinityThreshold int
}

// DefaultSettings returns Sora's defaults: cluster on, relay on, affinity
// on, threshold 20.
func DefaultSettings() Settings {
	return Settings{Cluster: true, Relay: true, DefaultAffinity: true, AffinityThreshold: 20}
}

// View is a consistent snapshot of the cluster, taken on the contacted node.
// Placement reads it and never changes it; one View may serve many Place
// calls concurrently.
type View struct {
	Settings Settings
	// Nodes lists every node known to the cluster, connected or not, sorted
	// by Name.
	Nodes []Node
	// Sessions maps a channel_id to its session; a channel absent from it
	// has no session yet.
	Sessions map[string]Session
	// InMajority reports whether the contacted node is in a group holding
	// more than half of the regular nodes.
	InMajority bool
	// Now is the time the snapshot was taken.
	Now time.Time
}

// NodeIndex returns the index of the named node in v.Nodes, or -1.
func (v *View) NodeIndex(name string) int {
	lo, hi := 0, len(v.Nodes)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if v.Nodes[mid].Name < name {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo < len(v.Nodes) && v.Nodes[lo].Name == name {
		return lo
	}
	return -1
}

// Affinity is a per-connection override of default_cluster_affinity, set by
// the auth hook's cluster_affinity.
type Affinity uint8

const (
	// AffinityUnset follows Settings.DefaultAffinity.
	AffinityUnset Affinity = iota
	// AffinityOn gathers the connection on the session's node.
	AffinityOn
	// AffinityOff serves the connection where it landed, unless that node
	// is full.
	AffinityOff
)

// Request is one client's connect, as placement sees it.
type Request struct {
	// ChannelID is the connect's channel_id.
	ChannelID string
	// Contacted is the name of the node the client reached.
	Contacted string
	// Affinity is the auth hook's override, if any.
	Affinity Affinity
	// Redirected is true when the connect came with "redirect": true, that
	// is, after a redirect from another node.
	Redirected bool
}
