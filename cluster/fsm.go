package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"

	"github.com/hashicorp/raft"
)

// NodeInfo is what the cluster keeps about a member node, replicated by
// Raft so that a stopped node is still listed with its facts.
type NodeInfo struct {
	Name           string `json:"node_name"`
	Temporary      bool   `json:"temporary_node"`
	SignalingURL   string `json:"external_signaling_url"`
	APIURL         string `json:"external_api_url"`
	MaxConnections int    `json:"license_max_connections"`
	MaxNodes       int    `json:"license_max_nodes"`
	Version        string `json:"version"`
	// Addr is the node's Raft and RPC address, HOST:PORT.
	Addr string `json:"addr"`
	// Boot identifies one run of a temporary node: a restarted temporary
	// node has a new one, and so is no longer the registered member.
	Boot string `json:"boot,omitempty"`
}

// command is one Raft log entry.
type command struct {
	Op      string    `json:"op"`
	Channel string    `json:"channel,omitempty"`
	Node    string    `json:"node,omitempty"`
	Relay   bool      `json:"relay,omitempty"`
	Info    *NodeInfo `json:"info,omitempty"`
}

const (
	opClaim       = "claim"
	opRelease     = "release"
	opReleaseNode = "release_node"
	opSetInfo     = "set_info"
	opDeleteInfo  = "delete_info"
)

// claimResult is the FSM's answer to a claim.
type claimResult struct {
	Owners []string
	// Refused is true when relay is off and Owners[0] holds the channel.
	Refused bool
	// Ended is true, for a release, when it removed the session's last
	// owner: the release that ended the session (one per session, in the
	// log's order).
	Ended bool `json:",omitempty"`
	// EndedChannels are, for a release of a node's claims, the channels
	// whose sessions it ended, sorted.
	EndedChannels []string `json:",omitempty"`
}

// fsmState is the replicated state: channel owners and node facts.
type fsmState struct {
	// Channels maps a channel_id to its owners, the creator first.
	Channels map[string][]string `json:"channels"`
	Infos    map[string]NodeInfo `json:"infos"`
}

// fsm is the Raft state machine. Reads take the read lock; Apply runs on
// Raft's FSM goroutine. onChange is called after each change, outside the
// lock, and must not block.
type fsm struct {
	mu       sync.RWMutex
	st       fsmState
	onChange func()
	// onRelease, when set, is called after each release that removed an
	// owner, outside the lock, with whether it ended the session (see
	// Node.releaseApplied). It must not block.
	onRelease func(channel, node string, ended bool)
}

var _ raft.FSM = (*fsm)(nil)

func newFSM(onChange func()) *fsm {
	return &fsm{st: fsmState{Channels: map[string][]string{}, Infos: map[string]NodeInfo{}}, onChange: onChange}
}

func decodeCommand(b []byte) (command, error) {
	var c command
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("cluster: bad command: %w", err)
	}
	switch c.Op {
	case opClaim, opRelease:
		if c.Channel == "" || c.Node == "" {
			return c, errors.New("cluster: bad command: channel and node required")
		}
	case opReleaseNode, opDeleteInfo:
		if c.Node == "" {
			return c, errors.New("cluster: bad command: node required")
		}
	case opSetInfo:
		if c.Info == nil || c.Info.Name == "" {
			return c, errors.New("cluster: bad command: info required")
		}
	default:
		return c, fmt.Errorf("cluster: bad command: unknown op %q", c.Op)
	}
	return c, nil
}

// Apply applies one log entry and returns a claimResult for claims, nil or
// an error otherwise.
func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	c, err := decodeCommand(l.Data)
	if err != nil {
		return err
	}
	return f.apply(c)
}

func (f *fsm) apply(c command) any {
	f.mu.Lock()
	var res any
	changed := true
	switch c.Op {
	case opClaim:
		owners := f.st.Channels[c.Channel]
		switch {
		case slices.Contains(owners, c.Node):
			changed = false
		case len(owners) == 0:
			owners = []string{c.Node}
		case !c.Relay:
			changed = false
			res = claimResult{Owners: slices.Clone(owners), Refused: true}
		default:
			owners = append(slices.Clone(owners), c.Node)
		}
		if changed {
			f.st.Channels[c.Channel] = owners
		}
		if res == nil {
			res = claimResult{Owners: slices.Clone(owners)}
		}
	case opRelease:
		changed = f.releaseLocked(c.Channel, c.Node)
		_, held := f.st.Channels[c.Channel]
		res = claimResult{Ended: changed && !held}
		if changed && f.onRelease != nil {
			defer f.onRelease(c.Channel, c.Node, !held) // after the unlock below
		}
	case opReleaseNode:
		changed = false
		var ended []string
		for ch := range f.st.Channels {
			if f.releaseLocked(ch, c.Node) {
				changed = true
				if _, held := f.st.Channels[ch]; !held {
					ended = append(ended, ch)
				}
			}
		}
		slices.Sort(ended)
		res = claimResult{EndedChannels: ended}
	case opSetInfo:
		changed = f.st.Infos[c.Info.Name] != *c.Info
		f.st.Infos[c.Info.Name] = *c.Info
	case opDeleteInfo:
		_, changed = f.st.Infos[c.Node]
		delete(f.st.Infos, c.Node)
	}
	f.mu.Unlock()
	if changed && f.onChange != nil {
		f.onChange()
	}
	return res
}

func (f *fsm) releaseLocked(ch, node string) bool {
	owners := f.st.Channels[ch]
	i := slices.Index(owners, node)
	if i < 0 {
		return false
	}
	owners = slices.Delete(slices.Clone(owners), i, i+1)
	if len(owners) == 0 {
		delete(f.st.Channels, ch)
	} else {
		f.st.Channels[ch] = owners
	}
	return true
}

// owners returns the owners of ch (shared slice: do not modify).
func (f *fsm) owners(ch string) []string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.Channels[ch]
}

func (f *fsm) info(name string) (NodeInfo, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	i, ok := f.st.Infos[name]
	return i, ok
}

// copyState returns a copy whose maps may be read freely; owner slices
// are shared but never modified in place.
func (f *fsm) copyState() fsmState {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return fsmState{Channels: maps.Clone(f.st.Channels), Infos: maps.Clone(f.st.Infos)}
}

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	st := f.copyState()
	b, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	return fsmSnapshot(b), nil
}

func (f *fsm) Restore(r io.ReadCloser) error {
	defer r.Close()
	var st fsmState
	if err := json.NewDecoder(r).Decode(&st); err != nil {
		return fmt.Errorf("cluster: restore snapshot: %w", err)
	}
	if st.Channels == nil {
		st.Channels = map[string][]string{}
	}
	if st.Infos == nil {
		st.Infos = map[string]NodeInfo{}
	}
	f.mu.Lock()
	f.st = st
	f.mu.Unlock()
	if f.onChange != nil {
		f.onChange()
	}
	return nil
}

type fsmSnapshot []byte

func (s fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s fsmSnapshot) Release() {}
