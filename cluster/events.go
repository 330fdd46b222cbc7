package cluster

import (
	"sync"

	"github.com/shoal-sfu/shoal/internal/mailbox"
)

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
	// EventSessionEnded: a session (Channel) ended and no caller of
	// ReleaseChannelEnded learnt it: on the Raft leader, because it
	// released the claims of a node that failed, was purged or left; or on
	// a node whose ReleaseChannelEnded returned an error although its
	// release, committed then (a late or lost answer) or by the background
	// retry, ended the session. Sent once per such session, so that this
	// node's signaling server sends session.destroyed for it.
	EventSessionEnded
)

func (k EventKind) String() string {
	switch k {
	case EventMajority:
		return "majority"
	case EventNode:
		return "node"
	case EventChannel:
		return "channel"
	case EventSessionEnded:
		return "session-ended"
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
	Channel    string // EventChannel, EventSessionEnded
	Removed    bool   // EventNode, EventChannel
}

// subscriber delivers events to one callback from its own goroutine, in
// order, never concurrently; a slow callback delays only its own queue.
type subscriber struct {
	fn   func(Event)
	box  *mailbox.Box[Event]
	quit chan struct{}
	once sync.Once
}

func (s *subscriber) stop() {
	s.once.Do(func() {
		close(s.quit)
		s.box.Close()
	})
}

func (s *subscriber) run() {
	for {
		select {
		case <-s.box.Wake():
		case <-s.quit:
			return
		}
		q, _ := s.box.Take()
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
	s := &subscriber{fn: fn, box: mailbox.New[Event](0), quit: make(chan struct{})}
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
		s.box.Put(e)
	}
}
