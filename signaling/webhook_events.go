package signaling

import (
	"context"
	"encoding/json"
	"time"

	"github.com/shoal-sfu/shoal/signaling/wire"
)

// Event types (Event.Type): Sora's event webhook's connection events and
// its session webhook's session events.
const (
	// EventConnectionCreated: a served connection's client answered the
	// offer (signaling completed).
	EventConnectionCreated = "connection.created"
	// EventConnectionUpdated: sent by an EventWebhook every
	// UpdatedInterval for each live connection.
	EventConnectionUpdated = "connection.updated"
	// EventConnectionDestroyed: a connection that was created ended.
	EventConnectionDestroyed = "connection.destroyed"
	// EventConnectionFailed: a connection served here (offer sent) ended
	// before its client answered.
	EventConnectionFailed = "connection.failed"
	// EventSessionCreated: a channel's session began (its first
	// connection in the whole cluster). Sent by one node only: the one
	// whose claim created the session.
	EventSessionCreated = "session.created"
	// EventSessionDestroyed: a channel's session ended (its last
	// connection in the whole cluster left). Sent by one node only: the
	// one whose release removed the session's last owner.
	EventSessionDestroyed = "session.destroyed"
)

// Event is one event the server emits to Config.Events.
type Event struct {
	Type string
	// ID identifies the event, so that a receiver can drop a duplicate
	// (the same event delivered twice after a retry). Set by the sink when
	// empty.
	ID string
	// Time is when the event happened.
	Time time.Time
	// NodeName is the node sending the event.
	NodeName  string
	ChannelID string

	// Connection events.
	ConnectionID, ClientID, BundleID string
	Role                             wire.Role
	Simulcast                        bool
	// Audio and Video are nil when connect turned them off.
	Audio, Video *ConnectionMedia
	// EventMetadata is the auth hook's event_metadata, if any.
	EventMetadata json.RawMessage
	// Created is when the connection was served (offer sent), or when the
	// session began.
	Created time.Time
	// Reason is how a destroyed or failed connection ended: its close
	// reason (TYPE-DISCONNECT, MEDIA-CLOSED, ANSWER-TIMEOUT, ...).
	Reason string
}

// emit gives ev to Config.Events, if set.
func (s *Server) emit(ev Event) {
	if s.cfg.Events == nil {
		return
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	ev.NodeName = s.cfg.NodeName
	s.cfg.Events.Emit(ev)
}

// connectionEvent builds a connection event from the session's info.
func connectionEvent(typ string, info ConnectionInfo, bundleID string, simulcast bool) Event {
	return Event{Type: typ, ChannelID: info.ChannelID, ConnectionID: info.ConnectionID, ClientID: info.ClientID,
		BundleID: bundleID, Role: info.Role, Simulcast: simulcast, Audio: info.Audio, Video: info.Video, Created: info.CreatedTime}
}

// announceCreated sends connection.created for the session, once, when its
// client's first answer is applied.
func (se *session) announceCreated() {
	if se.announced {
		return
	}
	se.announced = true
	info, served := se.info()
	if !served {
		return
	}
	se.srv.countCreated(info)
	se.srv.emit(connectionEvent(EventConnectionCreated, info, se.bundleID, se.simulcast))
}

// announceEnd sends connection.destroyed (or connection.failed for a
// connection whose client never answered) for a served session that ended.
func (se *session) announceEnd(info ConnectionInfo, reason string) {
	typ := EventConnectionFailed
	if se.announced {
		typ = EventConnectionDestroyed
	}
	if reason == "" {
		reason = "CONNECTION-LOST"
	}
	se.srv.countEnded(info, se.announced)
	ev := connectionEvent(typ, info, se.bundleID, se.simulcast)
	ev.Reason = reason
	se.srv.emit(ev)
}

// ChannelReleaser is an optional interface of a Cluster: ReleaseChannel
// that also reports whether this release ended the session (it removed
// its last owner), so that one node alone sends session.destroyed.
// *cluster.Node implements it, as does MemCluster. Without it, a node
// sends session.destroyed when the view it reads after its release shows
// no session any more (which two nodes releasing at once may both see).
type ChannelReleaser interface {
	ReleaseChannelEnded(ctx context.Context, channelID string) (bool, error)
}

// releaseInCluster releases the channel and reports whether the release
// ended its session.
func (s *Server) releaseInCluster(ctx context.Context, channelID string) (bool, error) {
	if r, ok := s.cfg.Cluster.(ChannelReleaser); ok {
		return r.ReleaseChannelEnded(ctx, channelID)
	}
	if err := s.cfg.Cluster.ReleaseChannel(ctx, channelID); err != nil {
		return false, err
	}
	v := s.cfg.Cluster.Snapshot()
	_, held := v.Sessions[channelID]
	return !held, nil
}

// SessionEndedInCluster tells the server that the session of channelID
// ended without a release of this server's reporting it: the cluster's
// leader released the claims of a node that failed or was purged, or a
// release of this node's that had returned an error (committed late, or
// by the cluster's background retry) ended it.
// The server counts it and sends session.destroyed. The root package's
// Node calls it on cluster.EventSessionEnded, so that such a session too
// gets its one session.destroyed.
func (s *Server) SessionEndedInCluster(channelID string) {
	s.sessionEnded(channelID)
}

// sessionCreated reports whether the owners a claim returned say that
// this node's claim created the session.
func (s *Server) sessionCreated(owners []string) bool {
	return len(owners) == 1 && owners[0] == s.cfg.NodeName
}
