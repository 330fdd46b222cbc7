package signaling

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/shoal-sfu/shoal/affinity"
	"github.com/shoal-sfu/shoal/signaling/wire"
)

// Defaults of Config's timers and limits.
const (
	DefaultConnectTimeout = 10 * time.Second
	DefaultAuthTimeout    = 10 * time.Second
	DefaultJoinTimeout    = 10 * time.Second
	DefaultAnswerTimeout  = 30 * time.Second
	DefaultPingInterval   = 5 * time.Second
	DefaultPongTimeout    = 15 * time.Second
	DefaultWriteTimeout   = 10 * time.Second
	DefaultRedirectLinger = 3 * time.Second
	DefaultMaxCandidates  = 200
)

// Config configures a Server. Media and Authenticator are required; the
// rest have useful zero values.
type Config struct {
	// Logger receives the server's logs; nil means slog.Default().
	Logger *slog.Logger
	// NodeName is this node's node_name, the Contacted of placement and the
	// node_name of the auth request. Required when Cluster is set.
	NodeName string
	// Authenticator decides every connect. Use AllowAll in development.
	Authenticator Authenticator
	// Media creates the peer connections of served clients.
	Media Media
	// Cluster, when set, makes the server place every connect and redirect
	// or refuse as placement decides, hold this node's max_connections (the
	// view's Capacity) as a hard limit, and close every connection while the
	// view says the node is out of the majority (see the package doc,
	// Admission). Nil means a plain single node, whose only limit is
	// Media's capacity.
	Cluster Cluster
	// Placer decides placement; nil means affinity.Default{}.
	Placer affinity.Placer
	// MaxMessageSize limits one client message; 0 means
	// wire.DefaultMaxMessageSize.
	MaxMessageSize int
	// MaxCandidates limits the candidates one client may trickle; 0 means
	// DefaultMaxCandidates.
	MaxCandidates int
	// ConnectTimeout is how long a new socket may stay silent before its
	// connect; 0 means DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// AuthTimeout bounds one call of the Authenticator; 0 means
	// DefaultAuthTimeout. A Webhook's own Timeout applies too.
	AuthTimeout time.Duration
	// JoinTimeout bounds Media.Join (it gathers candidates); 0 means
	// DefaultJoinTimeout.
	JoinTimeout time.Duration
	// AnswerTimeout is how long the server waits for an answer to an offer
	// or re-offer; 0 means DefaultAnswerTimeout.
	AnswerTimeout time.Duration
	// PingInterval is the period of the server's ping; 0 means
	// DefaultPingInterval, a negative value turns pings off.
	PingInterval time.Duration
	// PongTimeout is how long a ping may stay unanswered before the
	// connection is dropped; 0 means DefaultPongTimeout.
	PongTimeout time.Duration
	// WriteTimeout bounds one write to a client; 0 means DefaultWriteTimeout.
	WriteTimeout time.Duration
	// RedirectLinger is how long the server waits, after a redirect, for
	// the client to close the socket before it closes it itself; 0 means
	// DefaultRedirectLinger.
	RedirectLinger time.Duration
	// OriginPatterns lists the web origins (host patterns, as
	// websocket.AcceptOptions) allowed to open signaling from a browser; the
	// request's own host is always allowed. AnyOrigin allows every origin.
	OriginPatterns []string
	AnyOrigin      bool
	// DataChannelSignaling is the default of connect's
	// data_channel_signaling, which a connect that sets the field
	// overrides. When in effect, the server sends "switched" once the data
	// channels are open and then signals over them (see the package doc).
	// False by default, as in Sora.
	DataChannelSignaling bool
	// IgnoreDisconnectWebSocket is the default of connect's
	// ignore_disconnect_websocket, which a connect that sets the field
	// overrides. With data-channel signaling in effect, "switched" carries
	// it: the client then closes its WebSocket and the session lives on
	// over the data channels. False by default, as in Sora.
	IgnoreDisconnectWebSocket bool
	// Events, when set, receives the connection and session events
	// (connection.created, .destroyed, .failed, session.created,
	// .destroyed; see Event). An *EventWebhook POSTs them to a URL. Emit
	// must not block.
	Events EventSink
}

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.ConnectTimeout, DefaultConnectTimeout)
	def(&c.AuthTimeout, DefaultAuthTimeout)
	def(&c.JoinTimeout, DefaultJoinTimeout)
	def(&c.AnswerTimeout, DefaultAnswerTimeout)
	def(&c.PingInterval, DefaultPingInterval)
	def(&c.PongTimeout, DefaultPongTimeout)
	def(&c.WriteTimeout, DefaultWriteTimeout)
	def(&c.RedirectLinger, DefaultRedirectLinger)
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = wire.DefaultMaxMessageSize
	}
	if c.MaxCandidates == 0 {
		c.MaxCandidates = DefaultMaxCandidates
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Placer == nil {
		c.Placer = affinity.Default{}
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.Media == nil:
		return errors.New("signaling: Config.Media is nil: the server needs a media side to serve clients")
	case c.Authenticator == nil:
		return errors.New("signaling: Config.Authenticator is nil: every connect is authenticated (use signaling.AllowAll in development)")
	case c.Cluster != nil && c.NodeName == "":
		return errors.New("signaling: Config.NodeName is empty: placement needs this node's node_name when Cluster is set")
	case c.MaxMessageSize < 0:
		return fmt.Errorf("signaling: Config.MaxMessageSize %d is negative", c.MaxMessageSize)
	case c.MaxCandidates < 0:
		return fmt.Errorf("signaling: Config.MaxCandidates %d is negative", c.MaxCandidates)
	}
	for name, d := range map[string]time.Duration{"ConnectTimeout": c.ConnectTimeout, "AuthTimeout": c.AuthTimeout,
		"JoinTimeout": c.JoinTimeout, "AnswerTimeout": c.AnswerTimeout, "PongTimeout": c.PongTimeout,
		"WriteTimeout": c.WriteTimeout, "RedirectLinger": c.RedirectLinger} {
		if d < 0 {
			return fmt.Errorf("signaling: Config.%s %v is negative", name, d)
		}
	}
	return nil
}
