package relay

import "time"

// LinksDown returns the peers whose link has no session now, each with the
// time it went down; for a link that has never been up, the time the relay
// first heard of the peer (SetPeer, or a dial from it). A peer whose link is
// up is not in the map. A node that watches its own health reads it (the
// root package blocks a node whose links stay down, docs/cluster.md).
func (r *Relay) LinksDown() map[string]time.Time {
	r.mu.Lock()
	links := make([]*link, 0, len(r.peers))
	for _, l := range r.peers {
		links = append(links, l)
	}
	r.mu.Unlock()
	down := map[string]time.Time{}
	now := time.Now()
	for _, l := range links {
		if l.sess.Load() != nil {
			continue
		}
		since := now // going down at this moment (the session has just ended)
		if ns := l.downSince.Load(); ns != 0 {
			since = time.Unix(0, ns)
		}
		down[l.peer] = since
	}
	return down
}
