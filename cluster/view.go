package cluster

import (
	"maps"
	"math"
	"slices"
	"time"

	"github.com/hashicorp/raft"
	"github.com/hashicorp/serf/serf"

	"github.com/shoal-sfu/shoal/affinity"
)

// state is one immutable snapshot: the placement view and the listings.
type state struct {
	view     affinity.View
	nodes    []NodeStatus
	channels []ChannelStatus
	// initialised reports whether this node is a member of a cluster.
	initialised bool
	leader      string
	voters      []string
	// excluded: this node was a member and learnt that it is no longer
	// (removed from the configuration, or told so by the majority).
	excluded bool
	// gossipMajority (majorityAlive over the voters) and leaderHeard are
	// parts of the majority rule; lastIndex is the index of the last entry
	// of this node's Raft log when the snapshot was computed.
	gossipMajority bool
	leaderHeard    bool
	lastIndex      uint64
}

// NodeStatus is one entry of ListClusterNodes, with the JSON names of
// Sora's cluster API.
type NodeStatus struct {
	Name           string `json:"node_name"`
	Connected      bool   `json:"connected"`
	Mode           string `json:"mode"`
	ModeReason     string `json:"mode_reason,omitempty"`
	SignalingURL   string `json:"external_signaling_url"`
	APIURL         string `json:"external_api_url"`
	MaxConnections int    `json:"license_max_connections"`
	MaxNodes       int    `json:"license_max_nodes"`
	Temporary      bool   `json:"temporary_node"`
	Version        string `json:"version"`
	Connections    int    `json:"connections"`
}

// ChannelStatus is one entry of ListClusterChannels.
type ChannelStatus struct {
	ChannelID string         `json:"channel_id"`
	Owners    []ChannelOwner `json:"owners"`
}

// ChannelOwner is one owner of a channel's session.
type ChannelOwner struct {
	NodeName  string `json:"node_name"`
	Connected bool   `json:"connected"`
}

// viewInputs is everything a snapshot is computed from. rebuild gathers it
// from the node's locks, Raft and serf; computeView does the rest.
type viewInputs struct {
	self      string // this node's name
	boot      string // this run's boot id
	cluster   bool   // Config.Cluster
	temporary bool   // Config.Temporary
	settings  affinity.Settings
	// selfInfo, selfMode, selfReason and selfLoad describe this node from
	// its own config and local state; they win over what the others say.
	selfInfo   NodeInfo
	selfMode   affinity.Mode
	selfReason string
	selfLoad   loadReport
	// servers is Raft's latest configuration (nil before Start or when it
	// cannot be read), lastIndex the index of the last entry of this
	// node's Raft log, and leader the Raft leader's name ("" when unknown).
	servers   []raft.Server
	lastIndex uint64
	leader    string
	// leaderAge is how long ago this node last heard from a Raft leader (0
	// while it leads, negative if never); outAge how long ago gossip last
	// showed no majority of alive voters (negative if never); contactBound
	// is leaderContactBound. See leaderHeard.
	leaderAge, outAge, contactBound time.Duration
	// excludedAt is the highest commit index of a node of the majority
	// whose configuration leaves this node out (0: none). It excludes this
	// node while its own log ends before it: that configuration is then a
	// later one than this node's.
	excludedAt uint64
	// wasMember: this node was a member earlier in this run.
	wasMember bool
	// fsm is a copy of the replicated state (channel owners, node facts).
	fsm fsmState
	// members is what gossip says, by node name.
	members map[string]serf.Member
	// loads holds the other nodes' last load reports, by node name.
	loads map[string]loadReport
	now   time.Time
}

// computeView computes a snapshot from its inputs. It does no I/O, takes no
// lock and reads no clock; it does not modify in.
//
// The members are the names in Raft's configuration, sorted, with their
// replicated facts (the facts of a node not in the configuration are not
// listed: a register that failed halfway, a purged node). A node that is
// not a member (not in the configuration, told by the majority that a
// later configuration left it out, or a temporary node whose registered
// run is another) sees itself alone and no sessions; one that was a member
// and learnt it is no longer lists itself blocked, with the reason. A
// node is connected when gossip says it is alive (this node always is);
// the majority is inMajority (majority.go). With Cluster off the node is
// its own one-node cluster and always in the majority.
func computeView(in viewInputs) *state {
	st := &state{}
	fs := in.fsm
	load := func(name string) loadReport {
		if name == in.self {
			return in.selfLoad
		}
		return in.loads[name]
	}

	names := map[string]bool{in.self: true}
	temporary := map[string]bool{in.self: in.temporary}
	member := !in.cluster // a voter, or the registered run of a temporary node
	if !in.cluster {
		st.initialised = true
	} else {
		inConfig, voter := false, false
		for _, s := range in.servers {
			name := string(s.ID)
			names[name] = true
			if s.Suffrage == raft.Voter {
				st.voters = append(st.voters, name)
			} else {
				temporary[name] = true
			}
			if name == in.self {
				inConfig, voter = true, s.Suffrage == raft.Voter
			}
		}
		for name, info := range fs.Infos {
			if info.Temporary {
				temporary[name] = true
			}
		}
		st.leader = in.leader
		st.lastIndex = in.lastIndex
		// Removed: a configuration that leaves this node out, its own
		// after it was a member (a node catching up goes through older
		// configurations without itself; a temporary node that is erased
		// must just register again) or a later one the majority told it
		// about.
		st.excluded = (in.wasMember && !in.temporary && !inConfig && len(in.servers) > 0) || (inConfig && in.excludedAt > in.lastIndex)
		if inConfig && in.temporary {
			// A temporary node is a member only in the run it registered.
			info, ok := fs.Infos[in.self]
			inConfig = ok && info.Boot == in.boot
		}
		st.initialised = inConfig && !st.excluded
		member = st.initialised && (voter || in.temporary)
	}
	alive := func(name string) bool {
		if name == in.self {
			return true
		}
		m, ok := in.members[name]
		return ok && m.Status == serf.StatusAlive
	}
	st.gossipMajority = majorityAlive(st.voters, alive)
	st.leaderHeard = leaderHeard(in.leaderAge, in.outAge, in.contactBound)
	serving := !in.cluster || inMajority(member, st.voters, alive, in.leaderAge, in.outAge, in.contactBound)

	st.view = affinity.View{Settings: in.settings, InMajority: serving, Now: in.now,
		Sessions: make(map[string]affinity.Session, len(fs.Channels))}
	sorted := slices.Sorted(maps.Keys(names))
	if !st.initialised {
		sorted = []string{in.self} // not a member: this node alone
	}
	for _, name := range sorted {
		info, ok := fs.Infos[name]
		if name == in.self {
			info = in.selfInfo
		} else if m, known := in.members[name]; !ok && known {
			info = infoFromTags(m)
		}
		node := affinity.Node{Name: name, Temporary: temporary[name], Connected: alive(name),
			Capacity: info.MaxConnections, SignalingURL: info.SignalingURL, APIURL: info.APIURL}
		if !in.cluster && node.Capacity == 0 {
			node.Capacity = math.MaxInt // max_connections 0 with cluster off: no limit
		}
		reason := ""
		if name == in.self {
			node.Mode, reason = in.selfMode, in.selfReason
			if st.excluded {
				node.Mode, reason = affinity.ModeBlockNewConnection, excludedReason
			}
		} else if m, ok := in.members[name]; ok {
			node.Mode, reason = modeFromTags(m)
		}
		if node.Connected {
			node.Connections = load(name).Total
		}
		st.view.Nodes = append(st.view.Nodes, node)
		st.nodes = append(st.nodes, NodeStatus{
			Name: name, Connected: node.Connected, Mode: node.Mode.String(), ModeReason: reason,
			SignalingURL: info.SignalingURL, APIURL: info.APIURL, MaxConnections: info.MaxConnections,
			MaxNodes: info.MaxNodes, Temporary: node.Temporary, Version: info.Version, Connections: node.Connections,
		})
	}
	if !in.cluster || st.initialised {
		for _, ch := range slices.Sorted(maps.Keys(fs.Channels)) {
			owners := fs.Channels[ch]
			sess := affinity.Session{Owners: make([]affinity.Owner, 0, len(owners))}
			cs := ChannelStatus{ChannelID: ch}
			for _, o := range owners {
				i := st.view.NodeIndex(o)
				if i < 0 {
					continue
				}
				sess.Owners = append(sess.Owners, affinity.Owner{Node: i, Connections: load(o).Channels[ch]})
				cs.Owners = append(cs.Owners, ChannelOwner{NodeName: o, Connected: st.view.Nodes[i].Connected})
			}
			if len(sess.Owners) > 0 {
				st.view.Sessions[ch] = sess
				st.channels = append(st.channels, cs)
			}
		}
	}
	return st
}

// viewChanges lists the events that lead from old to cur: the majority
// first, then nodes that appeared or changed (connected, mode, role),
// nodes removed, channels whose owners changed, channels removed.
func viewChanges(old, cur *state) []Event {
	var evs []Event
	if old.view.InMajority != cur.view.InMajority {
		evs = append(evs, Event{Kind: EventMajority, InMajority: cur.view.InMajority})
	}
	oldNodes := map[string]NodeStatus{}
	for _, s := range old.nodes {
		oldNodes[s.Name] = s
	}
	for _, s := range cur.nodes {
		o, ok := oldNodes[s.Name]
		delete(oldNodes, s.Name)
		if !ok || o.Connected != s.Connected || o.Mode != s.Mode || o.Temporary != s.Temporary {
			evs = append(evs, Event{Kind: EventNode, Node: s.Name, Connected: s.Connected})
		}
	}
	for name := range oldNodes {
		evs = append(evs, Event{Kind: EventNode, Node: name, Removed: true})
	}
	oldCh := map[string][]ChannelOwner{}
	for _, c := range old.channels {
		oldCh[c.ChannelID] = c.Owners
	}
	for _, c := range cur.channels {
		o, ok := oldCh[c.ChannelID]
		delete(oldCh, c.ChannelID)
		if !ok || !slices.Equal(o, c.Owners) {
			evs = append(evs, Event{Kind: EventChannel, Channel: c.ChannelID})
		}
	}
	for ch := range oldCh {
		evs = append(evs, Event{Kind: EventChannel, Channel: ch, Removed: true})
	}
	return evs
}
