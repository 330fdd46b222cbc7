package cluster

import (
	"context"
	"sync"

	"github.com/shoal-sfu/shoal/affinity"
)

// Membership is what the rest of Shoal needs from the cluster layer: the
// view placement reads, the seed's cluster operations, channel ownership
// and load. *Node is the default implementation.
type Membership interface {
	// Snapshot returns a consistent, cheap view of the cluster. The result
	// must not be modified.
	Snapshot() affinity.View
	// InitCluster builds a cluster of exactly the named regular nodes,
	// this one included, and returns the list.
	InitCluster(ctx context.Context, nodeNames []string) ([]string, error)
	// RegisterClusterNode adds this node to the cluster that the contact
	// node belongs to, and returns the cluster's regular nodes.
	RegisterClusterNode(ctx context.Context, contact string) ([]string, error)
	// PurgeClusterNode removes a stopped regular node for good.
	PurgeClusterNode(ctx context.Context, target string) error
	// ListClusterNodes lists every member, reachable or not.
	ListClusterNodes(ctx context.Context) ([]NodeStatus, error)
	// ListClusterChannels lists the channels with a session and their owners.
	ListClusterChannels(ctx context.Context) ([]ChannelStatus, error)
	// SetMode sets this node's mode; reason says why (shown in ListClusterNodes).
	SetMode(ctx context.Context, mode affinity.Mode, reason string) error
	// ClaimChannel makes this node an owner of the channel's session
	// (creating the session if there is none) and returns the owners, the
	// creator first. With relay off and another owner it fails with an
	// *OwnedElsewhereError.
	ClaimChannel(ctx context.Context, channelID string) ([]string, error)
	// ReleaseChannel tells the cluster that this node holds no connection
	// of the channel any more; the session ends with its last owner.
	ReleaseChannel(ctx context.Context, channelID string) error
	// PublishLoad sets this node's connection counts, in total and per
	// channel; they reach the other nodes shortly after.
	PublishLoad(total int, perChannel map[string]int)
	// Subscribe calls fn for each change until cancel is called.
	Subscribe(fn func(Event)) (cancel func())
}

// NodeStatus is one entry of ListClusterNodes (SPEC §3.8), with the seed's
// JSON names.
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

// ChannelStatus is one entry of ListClusterChannels (SPEC §3.9).
type ChannelStatus struct {
	ChannelID string         `json:"channel_id"`
	Owners    []ChannelOwner `json:"owners"`
}

// ChannelOwner is one owner of a channel's session.
type ChannelOwner struct {
	NodeName  string `json:"node_name"`
	Connected bool   `json:"connected"`
}

// EventKind says what an Event is about.
type EventKind uint8

const (
	// EventMajority: this node entered or left the majority group. On
	// leaving it, an SFU disconnects every connection and refuses new ones
	// until the event comes back with InMajority true.
	EventMajority EventKind = iota + 1
	// EventNode: a node appeared, disappeared (Removed), became reachable
	// or unreachable, or changed mode.
	EventNode
	// EventChannel: a channel's owners changed, or its session ended
	// (Removed).
	EventChannel
)

func (k EventKind) String() string {
	switch k {
	case EventMajority:
		return "majority"
	case EventNode:
		return "node"
	case EventChannel:
		return "channel"
	}
	return "unknown"
}

// Event is one change of the cluster view. Read the new state from
// Snapshot.
type Event struct {
	Kind       EventKind
	InMajority bool   // EventMajority
	Node       string // EventNode
	Connected  bool   // EventNode
	Channel    string // EventChannel
	Removed    bool   // EventNode, EventChannel
}

// subscriber delivers events to one callback from its own goroutine, in
// order, never concurrently; a slow callback delays only its own queue.
type subscriber struct {
	fn   func(Event)
	mu   sync.Mutex
	q    []Event
	wake chan struct{}
	quit chan struct{}
	once sync.Once
}

func (s *subscriber) push(e Event) {
	s.mu.Lock()
	s.q = append(s.q, e)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *subscriber) stop() { s.once.Do(func() { close(s.quit) }) }

func (s *subscriber) run() {
	for {
		select {
		case <-s.wake:
		case <-s.quit:
			return
		}
		s.mu.Lock()
		q := s.q
		s.q = nil
		s.mu.Unlock()
		for _, e := range q {
			select {
			case <-s.quit:
				return
			default:
			}
			s.fn(e)
		}
	}
}

// Subscribe calls fn for every change of the view from now on, from a
// goroutine of its own: calls are in order and never concurrent, and a
// slow fn never stalls the node (its events queue up). cancel stops the
// calls and waits for a call in progress to return; do not call it from fn.
// Close cancels every subscription.
func (n *Node) Subscribe(fn func(Event)) (cancel func()) {
	s := &subscriber{fn: fn, wake: make(chan struct{}, 1), quit: make(chan struct{})}
	done := make(chan struct{})
	n.subsMu.Lock()
	select {
	case <-n.done:
		n.subsMu.Unlock()
		return func() {}
	default:
	}
	n.subs[s] = struct{}{}
	n.subsWG.Add(1)
	n.subsMu.Unlock()
	go func() {
		defer n.subsWG.Done()
		defer close(done)
		s.run()
	}()
	return func() {
		n.subsMu.Lock()
		delete(n.subs, s)
		n.subsMu.Unlock()
		s.stop()
		<-done
	}
}

func (n *Node) emit(e Event) {
	n.subsMu.Lock()
	defer n.subsMu.Unlock()
	for s := range n.subs {
		s.push(e)
	}
}
