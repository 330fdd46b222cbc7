package wire

import "fmt"

// Message types a client sends.
const (
	TypeConnect    = "connect"
	TypeAnswer     = "answer"
	TypeReAnswer   = "re-answer"
	TypeCandidate  = "candidate"
	TypePong       = "pong"
	TypeDisconnect = "disconnect"
	TypeUpdate     = "update"
)

// Message types the server sends.
const (
	TypeOffer    = "offer"
	TypeReOffer  = "re-offer"
	TypeRedirect = "redirect"
	TypePing     = "ping"
	TypeNotify   = "notify"
	TypePush     = "push"
	TypeSwitched = "switched"
	TypeClose    = "close"
)

// WebSocket close codes. The Sora SDKs have no error message: a refusal is
// a WebSocket close before `offer`, and connect() rejects with the code and
// the reason. 1000 (a normal end: TYPE-DISCONNECT, MEDIA-CLOSED,
// REDIRECTED, an API disconnect) has no name here.
const (
	CloseServerShutdown    = 1001 // the server is closing (going away)
	CloseInvalidMessage    = 4400 // not JSON, unknown type, missing or wrong-typed field
	CloseAuthDenied        = 4401 // the auth hook said no (the reason is the hook's)
	CloseAnswerTimeout     = 4408 // no answer (or re-answer) within the server's answer timeout
	CloseConnectTimeout    = 4409 // no connect within the server's connect timeout
	CloseMessageTooLarge   = 4413 // a message over the size limit
	CloseTooManyCandidates = 4429 // more candidates than the server's limit
	CloseInvalidChannelID  = 4490 // channel_id missing, empty, too long or not UTF-8
	CloseInvalidRole       = 4491 // role not sendrecv, sendonly or recvonly
	CloseUnexpected        = 4492 // a message that is valid but not expected now (answer before offer)
	CloseInternalError     = 4500 // the server failed; the reason says where
	CloseRefused           = 4503 // placement refused: no capacity, not in majority, node blocked
	ClosePingTimeout       = 4504 // no pong within the keepalive timeout
)

// MaxCloseReason is the longest close reason sent, in bytes (a close frame
// holds 125 bytes after the code; the Sora SDKs show the reason as is).
const MaxCloseReason = 123

// MaxChannelIDLen is the longest channel_id accepted, in bytes.
const MaxChannelIDLen = 255

// DefaultMaxMessageSize is the default limit on one client message. The
// largest legitimate messages are a connect or answer carrying a full SDP
// (about 6 KB from a browser) and a pong carrying getStats() reports.
const DefaultMaxMessageSize = 1 << 20

// Role is a connection's role.
type Role string

// The three roles.
const (
	RoleSendrecv Role = "sendrecv"
	RoleSendonly Role = "sendonly"
	RoleRecvonly Role = "recvonly"
)

// Sends reports whether the role publishes media.
func (r Role) Sends() bool { return r == RoleSendrecv || r == RoleSendonly }

// Receives reports whether the role receives media.
func (r Role) Receives() bool { return r == RoleSendrecv || r == RoleRecvonly }

func (r Role) valid() bool { return r == RoleSendrecv || r == RoleSendonly || r == RoleRecvonly }

// EventType is notify's event_type.
type EventType string

// The notify events the server sends.
const (
	EventConnectionCreated   EventType = "connection.created"
	EventConnectionDestroyed EventType = "connection.destroyed"
	EventSimulcastSwitched   EventType = "simulcast.switched"
)

// ProtocolError is a message or request the server refuses. Code is the
// WebSocket close code the client sees; Reason is the close reason, short
// and upper-case as Sora's are (e.g. "INVALID-CHANNEL-ID"); Err, if set,
// says more for the server's logs.
type ProtocolError struct {
	Code   int
	Reason string
	Err    error
}

func (e *ProtocolError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("signaling: %s (%d): %v", e.Reason, e.Code, e.Err)
	}
	return fmt.Sprintf("signaling: %s (%d)", e.Reason, e.Code)
}

func (e *ProtocolError) Unwrap() error { return e.Err }

// Errorf returns a *ProtocolError whose Err is fmt.Errorf(format, args...).
func Errorf(code int, reason string, format string, args ...any) *ProtocolError {
	return &ProtocolError{Code: code, Reason: reason, Err: fmt.Errorf(format, args...)}
}
