package signaling

import (
	"sync/atomic"
	"time"
)

// serverCounters are the server's totals since New, for GetStatsReport
// and the metrics.
type serverCounters struct {
	connCreated, connDestroyed, connFailed atomic.Uint64
	durationNs, setupNs                    atomic.Int64
	sessionCreated, sessionDestroyed       atomic.Uint64
}

// ServerCounters are the signaling server's totals since New.
type ServerCounters struct {
	// ConnectionsCreated counts connection.created (a client answered its
	// offer), ConnectionsDestroyed their ends, ConnectionsFailed the served
	// connections that ended before an answer.
	ConnectionsCreated, ConnectionsDestroyed, ConnectionsFailed uint64
	// Ongoing is the number of served connections now.
	Ongoing int
	// TotalDuration sums the lifetimes of the destroyed connections;
	// TotalSetup the times from offer to answer of the created ones.
	TotalDuration, TotalSetup time.Duration
	// SessionsCreated and SessionsDestroyed count the session events this
	// node sent (one node per session in a cluster).
	SessionsCreated, SessionsDestroyed uint64
}

// Counters returns the server's totals.
func (s *Server) Counters() ServerCounters {
	c := &s.counters
	s.mu.Lock()
	ongoing := s.total
	s.mu.Unlock()
	return ServerCounters{ConnectionsCreated: c.connCreated.Load(), ConnectionsDestroyed: c.connDestroyed.Load(),
		ConnectionsFailed: c.connFailed.Load(), Ongoing: ongoing,
		TotalDuration: time.Duration(c.durationNs.Load()), TotalSetup: time.Duration(c.setupNs.Load()),
		SessionsCreated: c.sessionCreated.Load(), SessionsDestroyed: c.sessionDestroyed.Load()}
}

func (s *Server) countCreated(info ConnectionInfo) {
	s.counters.connCreated.Add(1)
	s.counters.setupNs.Add(int64(time.Since(info.CreatedTime)))
}

func (s *Server) countEnded(info ConnectionInfo, created bool) {
	if !created {
		s.counters.connFailed.Add(1)
		return
	}
	s.counters.connDestroyed.Add(1)
	s.counters.durationNs.Add(int64(time.Since(info.CreatedTime)))
}

// sessionBegan counts and sends session.created.
func (s *Server) sessionBegan(channelID string) {
	s.counters.sessionCreated.Add(1)
	now := time.Now()
	s.emit(Event{Type: EventSessionCreated, ChannelID: channelID, Time: now, Created: now})
}

// sessionEnded counts and sends session.destroyed.
func (s *Server) sessionEnded(channelID string) {
	s.counters.sessionDestroyed.Add(1)
	s.emit(Event{Type: EventSessionDestroyed, ChannelID: channelID})
}
