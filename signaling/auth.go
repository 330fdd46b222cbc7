package signaling

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/shoal-sfu/shoal/signaling/wire"
)

// AuthRequest is what the auth hook is asked about one connect. As JSON it
// is the body of the webhook's POST.
type AuthRequest struct {
	ChannelID    string          `json:"channel_id"`
	ClientID     string          `json:"client_id,omitempty"`
	BundleID     string          `json:"bundle_id,omitempty"`
	ConnectionID string          `json:"connection_id"`
	Role         wire.Role       `json:"role"`
	Metadata     json.RawMessage `json:"metadata,omitempty"`
	// NodeName is the node the client is talking to.
	NodeName string `json:"node_name"`
	// ChannelConnections is the channel's number of connections in the
	// whole cluster before this one.
	ChannelConnections int `json:"channel_connections"`
	// Redirect is true when the client came by a redirect; the hook runs
	// again on every node the client talks to.
	Redirect    bool   `json:"redirect"`
	SoraClient  string `json:"sora_client,omitempty"`
	Environment string `json:"environment,omitempty"`
}

// AuthResult is the auth hook's answer.
type AuthResult struct {
	Allowed bool `json:"allowed"`
	// Reason is shown to a denied client as the WebSocket close reason.
	Reason string `json:"reason,omitempty"`
	// ClusterAffinity, when set, overrides default_cluster_affinity for this
	// connection: true gathers it on the session's node, false serves it
	// where it landed.
	ClusterAffinity *bool `json:"cluster_affinity,omitempty"`
	// Metadata, when set, is given to the client in the offer.
	Metadata json.RawMessage `json:"metadata,omitempty"`
}

// Authenticator decides whether a connect is allowed. Authenticate may be
// called concurrently; it must honour ctx's deadline. An error denies the
// connection: the client sees the error's reason (see AuthError).
type Authenticator interface {
	Authenticate(ctx context.Context, req *AuthRequest) (AuthResult, error)
}

// AuthFunc adapts a function to Authenticator.
type AuthFunc func(ctx context.Context, req *AuthRequest) (AuthResult, error)

var _ Authenticator = AuthFunc(nil)

// Authenticate calls f.
func (f AuthFunc) Authenticate(ctx context.Context, req *AuthRequest) (AuthResult, error) {
	return f(ctx, req)
}

// AllowAll is an Authenticator that allows every connect and leaves
// affinity to the configuration. Use it only in development.
var AllowAll Authenticator = AuthFunc(func(context.Context, *AuthRequest) (AuthResult, error) {
	return AuthResult{Allowed: true}, nil
})

// AuthError is an auth hook that failed: the webhook timed out, answered a
// non-2xx status, or answered something that is not the expected JSON.
// Reason is what the client sees.
type AuthError struct {
	Reason string
	Err    error
}

func (e *AuthError) Error() string { return "signaling: auth hook: " + e.Reason + ": " + e.Err.Error() }
func (e *AuthError) Unwrap() error { return e.Err }

// DefaultWebhookTimeout is the webhook's time limit when none is set.
const DefaultWebhookTimeout = 5 * time.Second

// maxWebhookAnswer bounds what is read of a webhook's answer.
const maxWebhookAnswer = 1 << 20

// Webhook is an Authenticator that POSTs the AuthRequest as JSON to URL and
// reads an AuthResult from the answer, which must be 2xx. Its zero value is
// not usable: set URL.
type Webhook struct {
	// URL receives the POST.
	URL string
	// Client sends it; nil means a client with no timeout of its own (the
	// Timeout below applies).
	Client *http.Client
	// Timeout limits one call, connect to answer. Zero means
	// DefaultWebhookTimeout.
	Timeout time.Duration
	// Header is added to every request (e.g. an Authorization header).
	Header http.Header
}

var _ Authenticator = (*Webhook)(nil)

// Authenticate asks the webhook. A timeout, a transport error, a non-2xx
// status or an answer that is not a JSON object with a boolean "allowed"
// returns an *AuthError, which denies the connection.
func (w *Webhook) Authenticate(ctx context.Context, req *AuthRequest) (AuthResult, error) {
	timeout := w.Timeout
	if timeout <= 0 {
		timeout = DefaultWebhookTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	body, err := json.Marshal(req)
	if err != nil {
		return AuthResult{}, &AuthError{Reason: "AUTH-WEBHOOK-ERROR", Err: err}
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return AuthResult{}, &AuthError{Reason: "AUTH-WEBHOOK-ERROR", Err: err}
	}
	for k, vs := range w.Header {
		hreq.Header[k] = append([]string(nil), vs...)
	}
	hreq.Header.Set("Content-Type", "application/json")
	client := w.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(hreq)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
			return AuthResult{}, &AuthError{Reason: "AUTH-WEBHOOK-TIMEOUT", Err: err}
		}
		return AuthResult{}, &AuthError{Reason: "AUTH-WEBHOOK-ERROR", Err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxWebhookAnswer))
		return AuthResult{}, &AuthError{Reason: "AUTH-WEBHOOK-STATUS", Err: fmt.Errorf("status %d", resp.StatusCode)}
	}
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxWebhookAnswer+1))
	if err != nil {
		if ctx.Err() != nil {
			return AuthResult{}, &AuthError{Reason: "AUTH-WEBHOOK-TIMEOUT", Err: err}
		}
		return AuthResult{}, &AuthError{Reason: "AUTH-WEBHOOK-ERROR", Err: err}
	}
	if len(answer) > maxWebhookAnswer {
		return AuthResult{}, &AuthError{Reason: "AUTH-WEBHOOK-BAD-RESPONSE", Err: errors.New("answer over 1 MiB")}
	}
	return DecodeAuthResult(answer)
}

// DecodeAuthResult parses a webhook's answer: a JSON object whose "allowed"
// is a boolean, "reason" a string, "cluster_affinity" a boolean and
// "metadata" any JSON. Anything else is an *AuthError.
func DecodeAuthResult(b []byte) (AuthResult, error) {
	var raw struct {
		Allowed         *bool           `json:"allowed"`
		Reason          string          `json:"reason"`
		ClusterAffinity *bool           `json:"cluster_affinity"`
		Metadata        json.RawMessage `json:"metadata"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return AuthResult{}, &AuthError{Reason: "AUTH-WEBHOOK-BAD-RESPONSE", Err: err}
	}
	if raw.Allowed == nil {
		return AuthResult{}, &AuthError{Reason: "AUTH-WEBHOOK-BAD-RESPONSE", Err: errors.New(`answer has no boolean "allowed"`)}
	}
	res := AuthResult{Allowed: *raw.Allowed, Reason: raw.Reason, ClusterAffinity: raw.ClusterAffinity}
	if len(raw.Metadata) > 0 && !bytes.Equal(raw.Metadata, []byte("null")) {
		res.Metadata = raw.Metadata
	}
	return res, nil
}
