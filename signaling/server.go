package signaling

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"

	"github.com/coder/websocket"

	"github.com/shoal-sfu/shoal/affinity"
	"github.com/shoal-sfu/shoal/internal/lograte"
	"github.com/shoal-sfu/shoal/internal/mailbox"
	"github.com/shoal-sfu/shoal/signaling/wire"
)

// ErrClosed is returned by calls on a closed Server; it wraps net.ErrClosed.
var ErrClosed = fmt.Errorf("signaling: server closed: %w", net.ErrClosed)

// Server is the signaling server, an http.Handler to mount on the path the
// clients' signaling URLs name. Create it with New; Close it to end every
// session.
type Server struct {
	cfg    Config
	logger *slog.Logger
	// endedLog limits the Info lines of sessions ended on an error, per
	// close code: a client causes one per connection at will (session.go).
	endedLog *lograte.Limiter
	ctx      context.Context // cancelled by Close; parent of every session
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	mu         sync.Mutex
	closed     bool
	watching   bool                  // watchMajority runs
	sessions   map[*session]struct{} // every open socket
	channels   map[string]*channelState
	total      int            // served connections
	perChannel map[string]int // served connections per channel
	// reserved counts the slots taken by connections placement chose to
	// serve here, from that decision until their session ends: the served
	// ones and those still joining. It is this node's load as placement
	// reads it (see place).
	reserved int

	// counters are the totals of GetStatsReport (stats.go).
	counters serverCounters
}

// channelState serialises the claim and release of one channel and counts
// its served connections.
type channelState struct {
	mu     sync.Mutex // held across ClaimChannel/ReleaseChannel
	refs   int        // sessions using this entry (guarded by Server.mu)
	served int        // served connections (guarded by mu)
}

var _ http.Handler = (*Server)(nil)

// New validates cfg and returns a Server. It starts nothing.
func New(cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		cfg:        cfg,
		logger:     cfg.Logger.With("component", "signaling"),
		endedLog:   lograte.New(lograte.DefaultBurst, lograte.DefaultInterval),
		ctx:        ctx,
		cancel:     cancel,
		sessions:   map[*session]struct{}{},
		channels:   map[string]*channelState{},
		perChannel: map[string]int{},
	}, nil
}

// Close closes every session (close code 1001) and waits for their
// goroutines. Later connections are answered 503. Safe to call twice.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}

// ServeHTTP upgrades the request to a WebSocket and runs the session until
// it ends.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		http.Error(w, "signaling server closed", http.StatusServiceUnavailable)
		return
	}
	s.wg.Add(1)
	if s.cfg.Cluster != nil && !s.watching {
		s.watching = true
		s.wg.Add(1)
		go s.watchMajority()
	}
	s.mu.Unlock()
	defer s.wg.Done()
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		OriginPatterns:     s.cfg.OriginPatterns,
		InsecureSkipVerify: s.cfg.AnyOrigin,
	})
	if err != nil {
		s.logger.Debug("websocket upgrade failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	se := &session{
		srv:    s,
		ws:     ws,
		logger: s.logger.With("remote", r.RemoteAddr),
		in:     make(chan inMsg, 16),
		events: mailbox.New[queued](maxQueued),
		killed: make(chan struct{}),
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ws.Close(wire.CloseServerShutdown, "SERVER-SHUTDOWN")
		return
	}
	s.sessions[se] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.sessions, se)
		s.mu.Unlock()
	}()
	se.run(s.ctx)
}

// acquire counts a connection of channelID about to be served, claiming
// the channel in the cluster for its first one. It returns the session's
// owners (the creator first) when it made the claim, nil otherwise.
func (s *Server) acquire(ctx context.Context, channelID string) ([]string, error) {
	s.mu.Lock()
	st := s.channels[channelID]
	if st == nil {
		st = &channelState{}
		s.channels[channelID] = st
	}
	st.refs++
	s.mu.Unlock()
	st.mu.Lock()
	defer st.mu.Unlock()
	var owners []string
	if st.served == 0 && s.cfg.Cluster != nil {
		var err error
		if owners, err = s.cfg.Cluster.ClaimChannel(ctx, channelID); err != nil {
			s.unref(channelID, st)
			return nil, err
		}
	}
	if st.served == 0 && (s.cfg.Cluster == nil || s.sessionCreated(owners)) {
		s.sessionBegan(channelID)
	}
	st.served++
	return owners, nil
}

// release undoes acquire; the last connection releases the channel.
func (s *Server) release(channelID string) {
	s.mu.Lock()
	st := s.channels[channelID]
	s.mu.Unlock()
	if st == nil {
		return
	}
	st.mu.Lock()
	st.served--
	if st.served == 0 && s.cfg.Cluster != nil {
		// Not the session's context: the release must happen even when the
		// server is closing.
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.JoinTimeout)
		ended, err := s.releaseInCluster(ctx, channelID)
		if err != nil {
			s.logger.Warn("release channel", "channel", channelID, "err", err)
		}
		cancel()
		if ended {
			s.sessionEnded(channelID)
		}
	} else if st.served == 0 {
		s.sessionEnded(channelID)
	}
	st.mu.Unlock()
	s.unref(channelID, st)
}

func (s *Server) unref(channelID string, st *channelState) {
	s.mu.Lock()
	st.refs--
	if st.refs == 0 {
		delete(s.channels, channelID)
	}
	s.mu.Unlock()
}

// served adds delta to the served counts and publishes the load. The
// publication happens under s.mu so that concurrent changes reach the
// cluster in order.
func (s *Server) served(channelID string, delta int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addServed(channelID, delta)
}

// addServed is served with s.mu held.
func (s *Server) addServed(channelID string, delta int) {
	s.total += delta
	if s.perChannel[channelID] += delta; s.perChannel[channelID] <= 0 {
		delete(s.perChannel, channelID)
	}
	if s.cfg.Cluster != nil {
		s.cfg.Cluster.PublishLoad(s.total, s.perChannel)
	}
}

// channelConnections is the channel's connection count, for the auth hook.
func (s *Server) channelConnections(view *affinity.View, channelID string) int {
	if view != nil {
		n := 0
		for _, o := range view.Sessions[channelID].Owners {
			n += o.Connections
		}
		return n
	}
	return len(s.Connections(channelID))
}
