package cluster

// Which node reports a session's end when this node's release ended it.
//
// ReleaseChannelEnded tells its caller whether its release ended the
// session, and the caller (the signaling server) sends session.destroyed.
// When it returns an error the release may still be committed: the leader
// committed it but the answer was lost or late, or the background retry
// (reconcileSelf) commits it later. Every node applies every committed
// release, so this node's state machine sees the one release of its own
// that ended the session, whoever committed it; releases tracks, per
// channel, whether its caller learnt the outcome, so that the end is
// reported exactly once: by the caller, or else by EventSessionEnded.

// releasePhase is where one of this node's releases of a channel stands.
type releasePhase uint8

const (
	// releaseInflight: ReleaseChannelEnded has not returned; its caller
	// will learn the outcome if it returns without error.
	releaseInflight releasePhase = iota
	// releaseApplied: applied here while in flight (ended says whether it
	// ended the session); whether the caller learnt it is decided when
	// ReleaseChannelEnded returns.
	releaseApplied
	// releaseUnreported: ReleaseChannelEnded returned without the outcome
	// (an error, or this node's state machine had not yet applied its own
	// claim); the application of the release reports the end.
	releaseUnreported
)

type releaseState struct {
	phase releasePhase
	ended bool
}

// releaseStarted records a release of channelID in flight. Call with
// n.local held.
func (n *Node) releaseStarted(channelID string) {
	n.local.releases[channelID] = releaseState{phase: releaseInflight}
}

// releaseFinished records how ReleaseChannelEnded returned: reported when
// its caller got the outcome (no error).
func (n *Node) releaseFinished(channelID string, reported bool) {
	n.local.Lock()
	st, ok := n.local.releases[channelID]
	switch {
	case !ok || st.phase != releaseInflight && st.phase != releaseApplied:
		// A newer release of the channel took over the entry.
		n.local.Unlock()
		return
	case reported:
		delete(n.local.releases, channelID)
		n.local.Unlock()
		return
	case st.phase == releaseApplied:
		delete(n.local.releases, channelID)
		n.local.Unlock()
		if st.ended {
			n.emit(Event{Kind: EventSessionEnded, Channel: channelID})
		}
		return
	}
	n.local.releases[channelID] = releaseState{phase: releaseUnreported}
	n.local.Unlock()
}

// releaseApplied is the state machine's onRelease: a committed release
// removed node from channelID's owners, and ended the session if ended.
// It runs on Raft's FSM goroutine, for every node's releases.
func (n *Node) releaseApplied(channelID, node string, ended bool) {
	if node != n.self {
		return
	}
	n.local.Lock()
	st, ok := n.local.releases[channelID]
	switch {
	case !ok:
		n.local.Unlock()
		return
	case st.phase == releaseInflight:
		n.local.releases[channelID] = releaseState{phase: releaseApplied, ended: ended}
		n.local.Unlock()
		return
	case st.phase == releaseApplied:
		// A second release of ours applied while the call is in flight
		// (its retry): the first one removed the owner; this one cannot
		// have. Nothing to record.
		n.local.Unlock()
		return
	}
	delete(n.local.releases, channelID)
	n.local.Unlock()
	if ended {
		n.emit(Event{Kind: EventSessionEnded, Channel: channelID})
	}
}
