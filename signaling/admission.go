package signaling

import (
	"slices"
	"time"

	"github.com/shoal-sfu/shoal/affinity"
	"github.com/shoal-sfu/shoal/signaling/wire"
)

// Admission: the two rules that placement alone cannot hold, because it
// decides on a snapshot while connects run concurrently and the cluster
// changes under them. Both apply only with a Cluster.
//
//   - max_connections is a hard limit. The view's load of this node is what
//     the server published after the fact, so a burst of connects would all
//     see the same free room. Placement therefore reads this node's load as
//     at least its reserved slots, and a decision to serve here takes a slot
//     in the same critical section; the slot is given back when the
//     connection fails or ends.
//   - No connection survives leaving the majority. While the view says the
//     node is out of it, every served connection is closed (4503
//     NOT-IN-MAJORITY) and a connection about to be served is refused: the
//     majority is checked again, under the lock the drop takes, where the
//     connection becomes served, so that one placed before the change and
//     joined after it cannot slip between the two.

// majorityPoll is how often the server reads its Cluster's view for the
// drop.
const majorityPoll = 50 * time.Millisecond

// errNotInMajority ends a connection when its node is out of the majority.
var errNotInMajority = ending{code: wire.CloseRefused, reason: "NOT-IN-MAJORITY", err: affinity.ErrNotInMajority}

// place decides where req goes on a fresh view in which this node's load
// is at least its reserved slots. With reserve, a decision to serve here
// takes a slot (see session.takeSlot). s.cfg.Cluster must be set.
func (s *Server) place(req affinity.Request, reserve bool) (*affinity.View, affinity.Decision) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.cfg.Cluster.Snapshot()
	if i := v.NodeIndex(s.cfg.NodeName); i >= 0 && v.Nodes[i].Connections < s.reserved {
		v.Nodes = slices.Clone(v.Nodes) // the snapshot's slice is shared
		v.Nodes[i].Connections = s.reserved
	}
	d := s.cfg.Placer.Place(&v, req)
	if reserve && d.Action == affinity.ActionServe {
		s.reserved++
	}
	return &v, d
}

// releaseSlot gives back the session's slot, if it holds one. Called by
// the session goroutine only.
func (se *session) releaseSlot() {
	if !se.slot {
		return
	}
	se.slot = false
	s := se.srv
	s.mu.Lock()
	s.reserved--
	s.mu.Unlock()
}

// outOfMajority reports whether the Cluster's view says this node is out
// of the majority (never with clustering off). s.cfg.Cluster must be set.
func (s *Server) outOfMajority() bool {
	v := s.cfg.Cluster.Snapshot()
	return v.Settings.Cluster && !v.InMajority
}

// markServed makes the session's connection served (listed, pushed to,
// disconnected by the API and the drop, published in the load), unless the
// node is out of the majority: then it returns the ending. The check and
// the marking are one critical section under s.mu, which the drop takes
// too.
func (s *Server) markServed(se *session, info ConnectionInfo, media MediaConn) *ending {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.Cluster != nil && s.outOfMajority() {
		return ended(errNotInMajority)
	}
	se.mu.Lock()
	se.media, se.served, se.infoV = media, true, info
	se.mu.Unlock()
	s.addServed(info.ChannelID, +1)
	return nil
}

// watchMajority is the drop: while the Cluster's view says this node is
// out of the majority it closes every served connection. It runs from the
// first session until Close.
func (s *Server) watchMajority() {
	defer s.wg.Done()
	t := time.NewTicker(majorityPoll)
	defer t.Stop()
	out := false
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		if !s.outOfMajority() {
			if out {
				s.logger.Info("back in the cluster majority: serving again")
			}
			out = false
			continue
		}
		n, _ := s.DisconnectAll(errNotInMajority.code, errNotInMajority.reason)
		if !out {
			s.logger.Warn("left the cluster majority: connections closed, new ones refused until it is back", "connections", n)
		}
		out = true
	}
}
