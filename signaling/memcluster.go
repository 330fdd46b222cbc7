package signaling

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/shoal-sfu/shoal/affinity"
)

// MemCluster is an in-memory cluster shared by several servers of one
// process: the twin of cluster.Node for tests, benchmarks and
// single-process demos. Every node sees the same view at once (no gossip
// delay); loads published by one node are visible to all. Its methods are
// safe for concurrent use.
type MemCluster struct {
	mu       sync.Mutex
	settings affinity.Settings
	nodes    []affinity.Node // sorted by name; Connections filled from loads
	minority map[string]bool
	owners   map[string][]string       // channel -> owners, creator first
	loads    map[string]map[string]int // node -> channel -> connections
	totals   map[string]int
}

// NewMemCluster returns a cluster of the given nodes (their Connections are
// ignored: nodes publish their load) with the given settings.
func NewMemCluster(settings affinity.Settings, nodes ...affinity.Node) *MemCluster {
	m := &MemCluster{
		settings: settings,
		nodes:    slices.Clone(nodes),
		minority: map[string]bool{},
		owners:   map[string][]string{},
		loads:    map[string]map[string]int{},
		totals:   map[string]int{},
	}
	slices.SortFunc(m.nodes, func(a, b affinity.Node) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return m
}

// Node returns the Cluster as the named node sees it.
func (m *MemCluster) Node(name string) Cluster { return &memNode{m: m, name: name} }

// SetMinority puts the named node outside (true) or back inside (false)
// the majority group; a node outside sees every other node disconnected.
func (m *MemCluster) SetMinority(name string, minority bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.minority[name] = minority
}

// UpdateNode changes the named node's entry (mode, capacity, URLs,
// Connected) with fn.
func (m *MemCluster) UpdateNode(name string, fn func(*affinity.Node)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.nodes {
		if m.nodes[i].Name == name {
			fn(&m.nodes[i])
			m.nodes[i].Name = name
			return nil
		}
	}
	return fmt.Errorf("signaling: mem cluster: no node %q", name)
}

type memNode struct {
	m    *MemCluster
	name string
}

var _ Cluster = (*memNode)(nil)

func (n *memNode) Snapshot() affinity.View {
	m := n.m
	m.mu.Lock()
	defer m.mu.Unlock()
	v := affinity.View{Settings: m.settings, Nodes: slices.Clone(m.nodes), Sessions: map[string]affinity.Session{},
		InMajority: !m.minority[n.name], Now: time.Now()}
	for i := range v.Nodes {
		v.Nodes[i].Connections = m.totals[v.Nodes[i].Name]
		if !v.InMajority && v.Nodes[i].Name != n.name {
			v.Nodes[i].Connected = false
		}
	}
	for ch, owners := range m.owners {
		s := affinity.Session{}
		for _, o := range owners {
			if i := v.NodeIndex(o); i >= 0 {
				s.Owners = append(s.Owners, affinity.Owner{Node: i, Connections: m.loads[o][ch]})
			}
		}
		v.Sessions[ch] = s
	}
	return v
}

func (n *memNode) ClaimChannel(ctx context.Context, channelID string) ([]string, error) {
	m := n.m
	m.mu.Lock()
	defer m.mu.Unlock()
	owners := m.owners[channelID]
	switch {
	case m.minority[n.name]:
		return nil, fmt.Errorf("signaling: mem cluster: claim %q: %s is not in the majority", channelID, n.name)
	case slices.Contains(owners, n.name):
	case len(owners) > 0 && !m.settings.Relay:
		return nil, fmt.Errorf("signaling: mem cluster: channel %q is held by node %s", channelID, owners[0])
	default:
		m.owners[channelID] = append(owners, n.name)
	}
	return slices.Clone(m.owners[channelID]), nil
}

func (n *memNode) ReleaseChannel(ctx context.Context, channelID string) error {
	_, err := n.ReleaseChannelEnded(ctx, channelID)
	return err
}

// ReleaseChannelEnded implements ChannelReleaser.
func (n *memNode) ReleaseChannelEnded(ctx context.Context, channelID string) (bool, error) {
	m := n.m
	m.mu.Lock()
	defer m.mu.Unlock()
	before := m.owners[channelID]
	owners := slices.DeleteFunc(slices.Clone(before), func(o string) bool { return o == n.name })
	if len(owners) == 0 {
		delete(m.owners, channelID)
	} else {
		m.owners[channelID] = owners
	}
	return len(before) > 0 && len(owners) == 0, nil
}

func (n *memNode) PublishLoad(total int, perChannel map[string]int) {
	m := n.m
	m.mu.Lock()
	defer m.mu.Unlock()
	m.totals[n.name] = total
	m.loads[n.name] = maps.Clone(perChannel)
}
