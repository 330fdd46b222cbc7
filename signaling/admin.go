package signaling

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/shoal-sfu/shoal/affinity"
	"github.com/shoal-sfu/shoal/internal/httpjson"
	"github.com/shoal-sfu/shoal/signaling/wire"
)

// Admin API targets (the x-sora-target header). The cluster and channel
// ones are Sora's names and dates, so that scripts written for Sora work;
// the mode change has no Sora name and carries ours.
const (
	TargetInitCluster            = "Sora_20221221.InitCluster"
	TargetRegisterClusterNode    = "Sora_20211215.RegisterClusterNode"
	TargetPurgeClusterNode       = "Sora_20220629.PurgeClusterNode"
	TargetListClusterNodes       = "Sora_20211215.ListClusterNodes"
	TargetListClusterChannels    = "Sora_20211215.ListClusterChannels"
	TargetDisconnectChannel      = "Sora_20151104.DisconnectChannel"
	TargetDisconnectConnection   = "Sora_20151104.DisconnectConnection"
	TargetDisconnectClient       = "Sora_20151104.DisconnectClient"
	TargetPushChannel            = "Sora_20160711.PushChannel"
	TargetPushConnection         = "Sora_20160711.PushConnection"
	TargetPushClient             = "Sora_20160711.PushClient"
	TargetListChannelConnections = "Sora_20201013.ListChannelConnections"
	TargetSetNodeMode            = "Shoal_20261123.SetClusterNodeMode"
	// TargetRequestSimulcastRid changes the simulcast layer a connection
	// receives: {"channel_id", "receiver_connection_id", "rid": "none" |
	// "r0" | "r1" | "r2", "sender_connection_id" (optional: every
	// publisher when absent)}.
	TargetRequestSimulcastRid = "Sora_20251210.RequestSimulcastRid"
	// TargetRequestRtpStream is RequestSimulcastRid's older Sora name, with
	// the keys recv_connection_id and send_connection_id; DecodeAdminRequest
	// turns it into TargetRequestSimulcastRid.
	TargetRequestRtpStream = "Sora_20201005.RequestRtpStream"

	// TargetListChannelConnectionsShoal is the name ListChannelConnections
	// had before Sora's was known. It is still accepted, as an alias
	// that DecodeAdminRequest turns into TargetListChannelConnections.
	//
	// Deprecated: use TargetListChannelConnections.
	TargetListChannelConnectionsShoal = "Shoal_20261123.ListChannelConnections"
)

// DefaultMaxAdminBody limits an admin request body.
const DefaultMaxAdminBody = 64 << 10

// Admin is the cluster side of the admin API: Sora's cluster
// operations plus the view (to find which node is responsible for a
// channel). *cluster.Node satisfies Admin[cluster.NodeStatus,
// cluster.ChannelStatus]; N and C are encoded as JSON as they are.
type Admin[N, C any] interface {
	InitCluster(ctx context.Context, nodeNames []string) ([]string, error)
	RegisterClusterNode(ctx context.Context, contact string) ([]string, error)
	PurgeClusterNode(ctx context.Context, target string) error
	ListClusterNodes(ctx context.Context) ([]N, error)
	ListClusterChannels(ctx context.Context) ([]C, error)
	SetMode(ctx context.Context, mode affinity.Mode, reason string) error
	Snapshot() affinity.View
}

// ChannelOps are the channel operations of the admin API on this node's
// own connections. *Server implements it. Each returns how many
// connections it acted on; the push methods get data as a JSON object.
type ChannelOps interface {
	Connections(channelID string) []ConnectionInfo
	DisconnectChannel(channelID, reason string) (int, error)
	DisconnectConnection(channelID, connectionID, reason string) (int, error)
	DisconnectClient(channelID, clientID, reason string) (int, error)
	PushChannel(channelID string, data json.RawMessage) (int, error)
	PushConnection(channelID, connectionID string, data json.RawMessage) (int, error)
	PushClient(channelID, clientID string, data json.RawMessage) (int, error)
}

var _ ChannelOps = (*Server)(nil)

// SimulcastOps is the simulcast operation of the admin API, on this node's
// own connections: an optional interface of ChannelOps (without it,
// RequestSimulcastRid answers 400). *Server implements it. It returns how
// many connections it asked: 0 or 1.
type SimulcastOps interface {
	RequestSimulcastRid(channelID, receiverID, senderID, rid string) (int, error)
}

var _ SimulcastOps = (*Server)(nil)

// AdminConfig configures the admin handler.
type AdminConfig struct {
	// Logger receives the handler's logs; nil means slog.Default().
	Logger *slog.Logger
	// NodeName is this node's node_name, as the view names it: channel
	// operations on a channel whose session this node holds no part of, and
	// another node does, answer 307 to that node's external_api_url; when
	// it holds a part, the other holders are asked for theirs. Required.
	NodeName string
	// Channels runs channel operations; nil answers them 400.
	Channels ChannelOps
	// Token, when set, must come as "Authorization: Bearer <Token>";
	// otherwise the answer is 401.
	Token string
	// CORSOrigin, when set, adds Sora's CORS headers with this
	// access-control-allow-origin ("*" for any) and answers OPTIONS
	// preflights. Off by default: an admin API any web page can call is a
	// risk.
	CORSOrigin string
	// MaxBodySize limits a request body; 0 means DefaultMaxAdminBody.
	MaxBodySize int64
	// Stats answers the stats targets (GetStatsReport,
	// GetStatsAllConnections, GetStatsConnection; stats_admin.go); nil
	// answers them 400. The root package's Node sets it.
	Stats StatsProvider
	// HTTPClient makes the calls to the other nodes holding part of a
	// channel (see ScopeHeader); nil means a client with a timeout of
	// DefaultPeerTimeout per call. Redirects are never followed, whatever
	// the client's CheckRedirect says: a node asked for its own part
	// answers itself.
	HTTPClient *http.Client
}

// AdminRequest is a decoded admin API request. Target is the canonical
// name (an alias is replaced).
type AdminRequest struct {
	Target          string
	NodeNameList    []string
	ContactNodeName string
	TargetNodeName  string
	ChannelID       string
	ConnectionID    string          // DisconnectConnection, PushConnection; RequestSimulcastRid's receiver
	SenderID        string          // RequestSimulcastRid's sender_connection_id
	Rid             string          // RequestSimulcastRid's rid
	ClientID        string          // DisconnectClient, PushClient
	Data            json.RawMessage // the push targets: a JSON object
	Mode            affinity.Mode
	Reason          string
	Cluster         bool // the stats targets' "cluster": ask every node
}

// AdminError is a request the admin API refuses; Status is the HTTP status.
type AdminError struct {
	Status int
	Msg    string
}

func (e *AdminError) Error() string { return "signaling: admin: " + e.Msg }

// HTTPStatus makes an AdminError an HTTPStatuser.
func (e *AdminError) HTTPStatus() int { return e.Status }

func badRequest(format string, args ...any) *AdminError {
	return &AdminError{Status: http.StatusBadRequest, Msg: fmt.Sprintf(format, args...)}
}

// DecodeAdminRequest checks the target and decodes its JSON body (empty
// means {}). Unknown fields are ignored; a missing or wrong-typed field, an
// unknown target or a body that is not a JSON object is an *AdminError.
func DecodeAdminRequest(target string, body []byte) (AdminRequest, error) {
	req := AdminRequest{Target: target}
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		body = []byte("{}")
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil || raw == nil {
		return req, badRequest("body is not a JSON object")
	}
	str := func(key string, required bool) (string, error) {
		v, ok := raw[key]
		if !ok || bytes.Equal(v, []byte("null")) {
			if required {
				return "", badRequest("missing field %q", key)
			}
			return "", nil
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return "", badRequest("field %q must be a string", key)
		}
		if required && s == "" {
			return "", badRequest("field %q is empty", key)
		}
		return s, nil
	}
	var err error
	switch target {
	case TargetInitCluster:
		v, ok := raw["node_name_list"]
		if !ok {
			return req, badRequest(`missing field "node_name_list"`)
		}
		if err := json.Unmarshal(v, &req.NodeNameList); err != nil {
			return req, badRequest(`field "node_name_list" must be an array of strings`)
		}
		if len(req.NodeNameList) == 0 {
			return req, badRequest(`field "node_name_list" is empty`)
		}
		for i, n := range req.NodeNameList {
			if n == "" {
				return req, badRequest(`node_name_list[%d] is empty`, i)
			}
			if slices.Contains(req.NodeNameList[:i], n) {
				return req, badRequest(`node_name_list names %.80q twice`, n)
			}
		}
	case TargetRegisterClusterNode:
		req.ContactNodeName, err = str("contact_node_name", true)
	case TargetPurgeClusterNode:
		req.TargetNodeName, err = str("target_node_name", true)
	case TargetListClusterNodes, TargetListClusterChannels:
	case TargetSetNodeMode:
		var m string
		if m, err = str("mode", true); err == nil {
			if req.Mode, err = affinity.ParseMode(m); err != nil {
				err = badRequest("field \"mode\": %.40q is not normal, block_new_session or block_new_connection", m)
			}
		}
		if err == nil {
			req.Reason, err = str("reason", false)
		}
	case TargetListChannelConnectionsShoal, TargetListChannelConnections, TargetDisconnectChannel,
		TargetDisconnectConnection, TargetDisconnectClient, TargetPushChannel, TargetPushConnection, TargetPushClient,
		TargetRequestSimulcastRid, TargetRequestRtpStream:
		switch target {
		case TargetListChannelConnectionsShoal:
			req.Target = TargetListChannelConnections
		case TargetRequestRtpStream:
			req.Target = TargetRequestSimulcastRid
		}
		id := func(key string) (string, error) { return adminID(str, key) }
		req.ChannelID, err = id("channel_id")
		if err == nil {
			switch target {
			case TargetDisconnectConnection, TargetPushConnection:
				req.ConnectionID, err = id("connection_id")
			case TargetDisconnectClient, TargetPushClient:
				req.ClientID, err = id("client_id")
			case TargetRequestSimulcastRid:
				req.ConnectionID, err = id("receiver_connection_id")
				if err == nil {
					req.SenderID, err = str("sender_connection_id", false)
				}
			case TargetRequestRtpStream:
				req.ConnectionID, err = id("recv_connection_id")
				if err == nil {
					req.SenderID, err = str("send_connection_id", false)
				}
			}
			if err == nil && req.Target == TargetRequestSimulcastRid {
				req.Rid, err = simulcastRid(raw, str)
			}
		}
		if err != nil {
			break
		}
		switch target {
		case TargetDisconnectChannel, TargetDisconnectConnection, TargetDisconnectClient:
			// Sora's reason is any JSON; keep a string, or the JSON text.
			if v, ok := raw["reason"]; ok {
				var s string
				if json.Unmarshal(v, &s) == nil {
					req.Reason = s
				} else {
					req.Reason = string(v)
				}
			}
		case TargetPushChannel, TargetPushConnection, TargetPushClient:
			v, ok := raw["data"]
			switch {
			case !ok || bytes.Equal(v, []byte("null")):
				err = badRequest(`missing field "data"`)
			case !isJSONObject(v):
				err = badRequest(`field "data" must be a JSON object`)
			default:
				req.Data = v
			}
		}
	case TargetGetStatsReport, TargetGetStatsAllConnections, TargetGetStatsConnection, TargetGetLicense:
		err = decodeStats(&req, raw, str)
	case "":
		return req, badRequest("missing x-sora-target header")
	default:
		return req, badRequest("unknown x-sora-target %.80q", target)
	}
	return req, err
}

type adminHandler[N, C any] struct {
	admin  Admin[N, C]
	cfg    AdminConfig
	client *http.Client // cfg.HTTPClient or the default, never following redirects
	logger *slog.Logger
}

// NewAdminHandler returns the admin API: POST / with an x-sora-target
// header and a JSON body; JSON answers; 400 {"error": "..."} for bad input;
// 307 to the responsible node for channel operations; when an operation
// fails, {"error": "..."} with the status its error carries (see
// HTTPStatuser: 4xx for the caller's mistakes, 503 while the node is not
// in the majority), 500 for any other failure. It is a thin layer over admin and cfg.Channels, except
// that channel operations reach every node holding part of the channel
// (see ScopeHeader), and answer 502 when some of them failed.
func NewAdminHandler[N, C any](admin Admin[N, C], cfg AdminConfig) (http.Handler, error) {
	if admin == nil {
		return nil, errors.New("signaling: admin: Admin is nil")
	}
	if cfg.NodeName == "" {
		return nil, errors.New("signaling: admin: AdminConfig.NodeName is empty: it decides which channels this node answers for")
	}
	if cfg.MaxBodySize <= 0 {
		cfg.MaxBodySize = DefaultMaxAdminBody
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	var hc http.Client
	if cfg.HTTPClient != nil {
		hc = *cfg.HTTPClient
	} else {
		hc.Timeout = DefaultPeerTimeout
	}
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &adminHandler[N, C]{admin: admin, cfg: cfg, client: &hc, logger: cfg.Logger.With("component", "admin-api")}, nil
}

func (h *adminHandler[N, C]) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.cfg.CORSOrigin != "" {
		hd := w.Header()
		hd.Set("Access-Control-Allow-Origin", h.cfg.CORSOrigin)
		hd.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
		hd.Set("Access-Control-Allow-Headers", "Origin, X-Requested-With, Content-Type, Accept, Authorization, x-sora-target, "+ScopeHeader)
		hd.Set("Access-Control-Max-Age", "1000")
		if r.Method == http.MethodOptions {
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		httpjson.Error(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed; use POST")
		return
	}
	if r.URL.Path != "/" {
		httpjson.Error(w, http.StatusNotFound, "no such path; the admin API is POST /")
		return
	}
	if h.cfg.Token != "" {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(h.cfg.Token)) != 1 {
			w.Header().Set("WWW-Authenticate", "Bearer")
			httpjson.Error(w, http.StatusUnauthorized, "missing or wrong bearer token")
			return
		}
	}
	nodeScope, err := parseScope(r.Header)
	if err != nil {
		httpjson.Error(w, http.StatusBadRequest, err.Error())
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, h.cfg.MaxBodySize+1))
	if err != nil {
		httpjson.Error(w, http.StatusBadRequest, "reading the body: "+err.Error())
		return
	}
	if int64(len(body)) > h.cfg.MaxBodySize {
		httpjson.Error(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes", h.cfg.MaxBodySize))
		return
	}
	req, err := DecodeAdminRequest(r.Header.Get("x-sora-target"), body)
	if err != nil {
		var ae *AdminError
		if errors.As(err, &ae) {
			httpjson.Error(w, ae.Status, ae.Msg)
		} else {
			httpjson.Error(w, http.StatusBadRequest, err.Error())
		}
		return
	}
	status, v, err := h.do(r.Context(), w, req, body, nodeScope)
	if err != nil {
		h.logger.Info("admin operation failed", "target", req.Target, "err", err)
		httpjson.Error(w, status, err.Error())
		return
	}
	if status == http.StatusTemporaryRedirect {
		return // written by do
	}
	httpjson.Write(w, status, v)
}

// HTTPStatuser is an error that says which status the admin API answers
// a call failing with it: an Admin's error whose chain holds one (found
// with errors.As) is answered with its HTTPStatus, when that is 4xx or
// 5xx. *cluster.Node's sentinel errors are: 400 for a malformed node_name
// or a list not naming the node, 404 for an unknown node, 409 for a call
// the cluster's state refuses (already initialised, not initialised, a
// live node purged, ...), 503 while the node is not in the majority, 502
// when a node it needed could not be reached. Other errors are 500.
type HTTPStatuser interface {
	error
	HTTPStatus() int
}

func opStatus(err error) int {
	var hs HTTPStatuser
	switch {
	case errors.Is(err, net.ErrClosed):
		return http.StatusServiceUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	case errors.Is(err, ErrPushData):
		return http.StatusBadRequest
	case errors.As(err, &hs) && hs.HTTPStatus() >= 400 && hs.HTTPStatus() <= 599:
		return hs.HTTPStatus()
	}
	return http.StatusInternalServerError
}

// do runs req. body is the request's body as it came, which channel
// operations forward to the other nodes; nodeScope is ScopeNode.
func (h *adminHandler[N, C]) do(ctx context.Context, w http.ResponseWriter, req AdminRequest, body []byte, nodeScope bool) (int, any, error) {
	switch req.Target {
	case TargetInitCluster:
		return nodeNameList(h.admin.InitCluster(ctx, req.NodeNameList))
	case TargetRegisterClusterNode:
		if req.ContactNodeName == h.cfg.NodeName {
			return http.StatusBadRequest, nil, fmt.Errorf("contact_node_name %s is this node: name a node of the cluster to join", req.ContactNodeName)
		}
		return nodeNameList(h.admin.RegisterClusterNode(ctx, req.ContactNodeName))
	case TargetPurgeClusterNode:
		return answer(map[string]string{"target_node_name": req.TargetNodeName}, h.admin.PurgeClusterNode(ctx, req.TargetNodeName))
	case TargetListClusterNodes:
		return listAnswer(h.admin.ListClusterNodes(ctx))
	case TargetListClusterChannels:
		return listAnswer(h.admin.ListClusterChannels(ctx))
	case TargetSetNodeMode:
		return answer(map[string]string{"node_name": h.cfg.NodeName, "mode": req.Mode.String()}, h.admin.SetMode(ctx, req.Mode, req.Reason))
	}
	if isStatsTarget(req.Target) {
		return h.statsOp(ctx, req, body, nodeScope)
	}
	// Channel operations.
	if h.cfg.Channels == nil {
		return http.StatusBadRequest, nil, errors.New("channel operations are not available on this node")
	}
	return h.channelOp(ctx, w, req, body, nodeScope)
}

// answer is a cluster operation's answer: 200 and v, or err with its
// status.
func answer(v any, err error) (int, any, error) {
	if err != nil {
		return opStatus(err), nil, err
	}
	return http.StatusOK, v, nil
}

// nodeNameList answers {"node_name_list": names}.
func nodeNameList(names []string, err error) (int, any, error) {
	return answer(map[string][]string{"node_name_list": names}, err)
}

// listAnswer answers a list, [] for none.
func listAnswer[T any](l []T, err error) (int, any, error) {
	if l == nil {
		l = []T{}
	}
	return answer(l, err)
}

// simulcastRid reads RequestSimulcastRid's rid ("none", "r0", "r1", "r2"
// or "auto") and its optional boolean auto: true means "auto", and then rid
// may be left out or be "auto".
func simulcastRid(raw map[string]json.RawMessage, str func(string, bool) (string, error)) (string, error) {
	auto := false
	if v, ok := raw["auto"]; ok && !bytes.Equal(v, []byte("null")) {
		if json.Unmarshal(v, &auto) != nil {
			return "", badRequest(`field "auto" must be a boolean`)
		}
	}
	rid, err := str("rid", !auto)
	switch {
	case err != nil:
	case auto && rid != "" && rid != "auto":
		err = badRequest(`field "rid" is %.20q with "auto": true; give one of them`, rid)
	case auto:
		rid = "auto"
	case rid != "none" && rid != "r0" && rid != "r1" && rid != "r2" && rid != "auto":
		err = badRequest(`field "rid": %.20q is not none, r0, r1, r2 or auto`, rid)
	}
	return rid, err
}

// adminID reads the id field key with str: required, at most
// wire.MaxChannelIDLen bytes, UTF-8.
func adminID(str func(string, bool) (string, error), key string) (string, error) {
	s, err := str(key, true)
	switch {
	case err != nil:
	case len(s) > wire.MaxChannelIDLen:
		err = badRequest("%s is %d bytes, over the limit of %d", key, len(s), wire.MaxChannelIDLen)
	case !utf8.ValidString(s):
		err = badRequest("%s is not valid UTF-8", key)
	}
	return s, err
}
