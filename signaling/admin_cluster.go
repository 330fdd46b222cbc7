package signaling

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/shoal-sfu/shoal/affinity"
	"github.com/shoal-sfu/shoal/internal/httpjson"
)

// With relay on, one channel's session spans several nodes. A channel
// operation (ListChannelConnections, DisconnectChannel, PushChannel, and
// the per-connection DisconnectConnection, DisconnectClient,
// PushConnection, PushClient, since the connection may be on any node
// holding the channel) sent to a node
// holding part of the session runs there and, in parallel, on every other
// node holding a part, over their admin APIs; the answer merges them. Those
// calls carry ScopeHeader: ScopeNode, so that the node asked answers for its
// own connections only, and never asks further or answers 307 (no loops).

// ScopeHeader chooses how far a channel operation reaches. Absent, or
// ScopeCluster, means the whole cluster; ScopeNode means the connections of
// the node that answers only. Any other value is a 400.
const ScopeHeader = "x-shoal-scope"

// Values of ScopeHeader.
const (
	ScopeCluster = "cluster"
	ScopeNode    = "node"
)

// DefaultPeerTimeout bounds each call to another node's admin API when
// AdminConfig.HTTPClient is nil.
const DefaultPeerTimeout = 5 * time.Second

// maxPeerAnswer bounds the body read from another node's answer: a
// connection list of a large channel fits many times over.
const maxPeerAnswer = 32 << 20

// DisconnectChannelResult is the answer of DisconnectChannel,
// DisconnectConnection and DisconnectClient: the {"channel_id"} (plus the
// connection_id or client_id) the request named, and the connections
// closed, in all and per node. When a node failed the answer is 502 and
// Error and FailedNodes say which and why; Nodes then lists the nodes that
// succeeded. DisconnectConnection and DisconnectClient answer 404, with
// Error, when no node had the connection (or client).
type DisconnectChannelResult struct {
	ChannelID    string             `json:"channel_id"`
	ConnectionID string             `json:"connection_id,omitempty"`
	ClientID     string             `json:"client_id,omitempty"`
	Disconnected int                `json:"disconnected"`
	Nodes        []NodeDisconnected `json:"nodes"`
	Error        string             `json:"error,omitempty"`
	FailedNodes  []NodeFailure      `json:"failed_nodes,omitempty"`
}

// NodeDisconnected is one node's part of a disconnection.
type NodeDisconnected struct {
	NodeName     string `json:"node_name"`
	Disconnected int    `json:"disconnected"`
}

// PushResult is the answer of PushChannel, PushConnection and PushClient,
// shaped like DisconnectChannelResult: the ids the request named, and the
// connections the push was queued for ("pushed"), in all and per node;
// 502 with Error and FailedNodes when a node failed; 404 with Error when
// PushConnection or PushClient found no such connection on any node.
type PushResult struct {
	ChannelID    string        `json:"channel_id"`
	ConnectionID string        `json:"connection_id,omitempty"`
	ClientID     string        `json:"client_id,omitempty"`
	Pushed       int           `json:"pushed"`
	Nodes        []NodePushed  `json:"nodes"`
	Error        string        `json:"error,omitempty"`
	FailedNodes  []NodeFailure `json:"failed_nodes,omitempty"`
}

// NodePushed is one node's part of a push.
type NodePushed struct {
	NodeName string `json:"node_name"`
	Pushed   int    `json:"pushed"`
}

// countedOp is a channel operation that acts on connections and answers
// how many (all but ListChannelConnections).
type countedOp struct {
	field string // the answer's count: "disconnected" or "pushed"
	one   bool   // it names one connection or client: none anywhere is a 404
	run   func(ChannelOps, AdminRequest) (int, error)
}

var countedOps = map[string]countedOp{
	TargetDisconnectChannel: {"disconnected", false, func(c ChannelOps, r AdminRequest) (int, error) {
		return c.DisconnectChannel(r.ChannelID, r.Reason)
	}},
	TargetDisconnectConnection: {"disconnected", true, func(c ChannelOps, r AdminRequest) (int, error) {
		return c.DisconnectConnection(r.ChannelID, r.ConnectionID, r.Reason)
	}},
	TargetDisconnectClient: {"disconnected", true, func(c ChannelOps, r AdminRequest) (int, error) {
		return c.DisconnectClient(r.ChannelID, r.ClientID, r.Reason)
	}},
	TargetPushChannel: {"pushed", false, func(c ChannelOps, r AdminRequest) (int, error) {
		return c.PushChannel(r.ChannelID, r.Data)
	}},
	TargetPushConnection: {"pushed", true, func(c ChannelOps, r AdminRequest) (int, error) {
		return c.PushConnection(r.ChannelID, r.ConnectionID, r.Data)
	}},
	TargetPushClient: {"pushed", true, func(c ChannelOps, r AdminRequest) (int, error) {
		return c.PushClient(r.ChannelID, r.ClientID, r.Data)
	}},
	TargetRequestSimulcastRid: {"requested", true, func(c ChannelOps, r AdminRequest) (int, error) {
		so, ok := c.(SimulcastOps)
		if !ok {
			return 0, &AdminError{Status: http.StatusBadRequest, Msg: "simulcast operations are not available on this node"}
		}
		return so.RequestSimulcastRid(r.ChannelID, r.ConnectionID, r.SenderID, r.Rid)
	}},
}

// RequestSimulcastRidResult is the answer of RequestSimulcastRid: Sora's
// echo of the request ({"channel_id", "receiver_connection_id", "rid",
// "sender_connection_id"}), plus the connections asked ("requested", 1
// when the receiver was found) and per node, shaped like PushResult: 404
// with Error when no node serves the receiver, 502 when a node failed.
type RequestSimulcastRidResult struct {
	ChannelID            string          `json:"channel_id"`
	ReceiverConnectionID string          `json:"receiver_connection_id"`
	Rid                  string          `json:"rid"`
	SenderConnectionID   string          `json:"sender_connection_id,omitempty"`
	Requested            int             `json:"requested"`
	Nodes                []NodeRequested `json:"nodes"`
	Error                string          `json:"error,omitempty"`
	FailedNodes          []NodeFailure   `json:"failed_nodes,omitempty"`
}

// NodeRequested is one node's part of a RequestSimulcastRid.
type NodeRequested struct {
	NodeName  string `json:"node_name"`
	Requested int    `json:"requested"`
}

// ChannelConnectionsFailure is the 502 answer of ListChannelConnections
// when a node failed: the nodes that failed and why, and the connections
// of the nodes that answered. (Success is a plain array of ConnectionInfo.)
type ChannelConnectionsFailure struct {
	Error       string           `json:"error"`
	FailedNodes []NodeFailure    `json:"failed_nodes"`
	Connections []ConnectionInfo `json:"connections"`
}

// NodeFailure is a node whose part of a channel operation failed. Status
// is the HTTP status it answered with, 0 if it gave none (not connected,
// unreachable, timed out).
type NodeFailure struct {
	NodeName string `json:"node_name"`
	Status   int    `json:"status,omitempty"`
	Error    string `json:"error"`
}

// parseScope reads ScopeHeader and reports whether it is ScopeNode.
func parseScope(h http.Header) (bool, error) {
	vs := h.Values(ScopeHeader)
	switch {
	case len(vs) == 0:
		return false, nil
	case len(vs) > 1:
		return false, fmt.Errorf("header %s given %d times", ScopeHeader, len(vs))
	}
	switch strings.TrimSpace(vs[0]) {
	case ScopeNode:
		return true, nil
	case ScopeCluster:
		return false, nil
	}
	return false, fmt.Errorf("header %s: %.40q is not %q or %q", ScopeHeader, vs[0], ScopeNode, ScopeCluster)
}

// route decides where a channel operation runs, from the view. When the
// channel has a session and this node holds no part of it, redirect is
// true and loc is the API URL of a node that does (the gathering node, or
// the first connected one if it is not). Otherwise the operation runs here
// and on peers, the other nodes holding part of the session.
func (h *adminHandler[N, C]) route(v affinity.View, channelID string) (loc string, redirect bool, peers []affinity.Node) {
	s, ok := v.Sessions[channelID]
	if !ok || len(s.Owners) == 0 {
		return "", false, nil
	}
	var owners []affinity.Node
	mine := false
	for _, o := range s.Owners {
		if o.Node < 0 || o.Node >= len(v.Nodes) {
			continue
		}
		n := v.Nodes[o.Node]
		if n.Name == h.cfg.NodeName {
			mine = true
			continue
		}
		if !slices.ContainsFunc(owners, func(x affinity.Node) bool { return x.Name == n.Name }) {
			owners = append(owners, n)
		}
	}
	if mine {
		return "", false, owners
	}
	if len(owners) == 0 {
		return "", true, nil // owners unknown to the view
	}
	for _, n := range owners {
		if n.Connected && n.APIURL != "" {
			return n.APIURL, true, nil
		}
	}
	return owners[0].APIURL, true, nil
}

// channelOp runs a channel operation: by 307, here only, or here and on
// every peer.
func (h *adminHandler[N, C]) channelOp(ctx context.Context, w http.ResponseWriter, req AdminRequest, body []byte, nodeScope bool) (int, any, error) {
	var peers []affinity.Node
	if !nodeScope {
		loc, redirect, p := h.route(h.admin.Snapshot(), req.ChannelID)
		if redirect {
			if loc == "" {
				return http.StatusServiceUnavailable, nil, fmt.Errorf("channel %q is held by another node that has no external_api_url", req.ChannelID)
			}
			w.Header().Set("Location", loc)
			httpjson.Write(w, http.StatusTemporaryRedirect, map[string]string{"location": loc})
			return http.StatusTemporaryRedirect, nil, nil
		}
		peers = p
	}
	// Ask the peers while this node does its part.
	var answers []peerAnswer
	var wg sync.WaitGroup
	if len(peers) > 0 {
		h.logger.Debug("channel operation on other nodes too", "target", req.Target, "channel_id", req.ChannelID, "nodes", len(peers))
		wg.Go(func() { answers = h.askPeers(ctx, req.Target, body, peers) })
	}
	local := h.localPart(req)
	wg.Wait()
	return h.merge(req, local, answers, nodeScope)
}

// part is one node's result of a channel operation.
type part struct {
	conns []ConnectionInfo // ListChannelConnections
	n     int              // the others: connections acted on
	err   error
}

func (h *adminHandler[N, C]) localPart(req AdminRequest) part {
	if op, ok := countedOps[req.Target]; ok {
		n, err := op.run(h.cfg.Channels, req)
		return part{n: n, err: err}
	}
	// TargetListChannelConnections
	list := h.cfg.Channels.Connections(req.ChannelID)
	for i := range list {
		if list[i].NodeName == "" {
			list[i].NodeName = h.cfg.NodeName
		}
	}
	return part{conns: list}
}

// peerAnswer is a peer's answer to a channel operation, decoded.
type peerAnswer struct {
	node   string
	status int // the HTTP status, 0 if none
	part
}

// askPeers sends the operation to every peer at once, with ScopeNode, and
// returns their answers in the order of peers. A peer that the view shows
// disconnected, or that has no external_api_url, is not asked and fails.
func (h *adminHandler[N, C]) askPeers(ctx context.Context, target string, body []byte, peers []affinity.Node) []peerAnswer {
	out := make([]peerAnswer, len(peers))
	var wg sync.WaitGroup
	for i, n := range peers {
		out[i].node = n.Name
		if out[i].err = unreachable(n); out[i].err != nil {
			continue
		}
		wg.Go(func() {
			out[i].status, out[i].part = h.askPeer(ctx, n, target, body)
		})
	}
	wg.Wait()
	return out
}

func (h *adminHandler[N, C]) askPeer(ctx context.Context, n affinity.Node, target string, body []byte) (int, part) {
	rep, err := h.post(ctx, n.APIURL, target, body)
	if err != nil {
		return rep.status, part{err: err}
	}
	if !rep.ok() {
		msg := rep.line
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(rep.body, &e) == nil && e.Error != "" {
			msg += ": " + clip(e.Error, 200)
		}
		if rep.location != "" {
			msg += " (to " + clip(rep.location, 200) + ", not followed)"
		}
		return rep.status, part{err: errors.New(msg)}
	}
	b := rep.body
	if op, ok := countedOps[target]; ok {
		var res map[string]json.RawMessage
		var count *int
		if err := json.Unmarshal(b, &res); err != nil || json.Unmarshal(res[op.field], &count) != nil || count == nil || *count < 0 {
			return rep.status, part{err: fmt.Errorf("malformed answer %.80q: want {%q: n, ...}", b, op.field)}
		}
		return rep.status, part{n: *count}
	}
	var list []ConnectionInfo
	if err := json.Unmarshal(b, &list); err != nil || list == nil {
		return rep.status, part{err: fmt.Errorf("malformed answer %.80q: want a JSON array of connections", b)}
	}
	for i := range list {
		if list[i].NodeName == "" {
			list[i].NodeName = n.Name
		}
	}
	return rep.status, part{conns: list}
}

// merge builds the answer from this node's part and the peers'. Any
// failure lists every failed node; the status is 502 if a peer failed, or
// this node's own error status if only it did. An operation naming one
// connection or client that no node had answers 404, unless asked with
// ScopeNode (a node's own part is then 200 with 0: the node asking sums).
func (h *adminHandler[N, C]) merge(req AdminRequest, local part, answers []peerAnswer, nodeScope bool) (int, any, error) {
	all := append([]peerAnswer{{node: h.cfg.NodeName, part: local}}, answers...)
	slices.SortFunc(all, func(a, b peerAnswer) int { return cmp.Compare(a.node, b.node) })
	var failed []NodeFailure
	status := http.StatusOK
	for _, a := range all {
		if a.err == nil {
			continue
		}
		failed = append(failed, NodeFailure{NodeName: a.node, Status: a.status, Error: a.err.Error()})
		switch {
		case a.node != h.cfg.NodeName:
			status = http.StatusBadGateway
		case status == http.StatusOK:
			status = opStatus(a.err)
		}
	}
	if len(failed) > 0 {
		h.logger.Info("channel operation failed on some nodes", "target", req.Target, "channel_id", req.ChannelID, "failed", failed)
	}
	var msg string
	if len(failed) > 0 {
		names := make([]string, len(failed))
		for i, f := range failed {
			names[i] = f.NodeName
		}
		msg = fmt.Sprintf("%d of %d nodes holding channel %q failed: %s", len(failed), len(all), clip(req.ChannelID, 80), strings.Join(names, ", "))
	}
	if op, ok := countedOps[req.Target]; ok {
		total := 0
		for _, a := range all {
			if a.err == nil {
				total += a.n
			}
		}
		if total == 0 && status == http.StatusOK && op.one && !nodeScope {
			status = http.StatusNotFound
			if req.ConnectionID != "" {
				msg = fmt.Sprintf("no connection %q in channel %q on any node (%d asked)", clip(req.ConnectionID, 80), clip(req.ChannelID, 80), len(all))
			} else {
				msg = fmt.Sprintf("no connection with client_id %q in channel %q on any node (%d asked)", clip(req.ClientID, 80), clip(req.ChannelID, 80), len(all))
			}
		}
		if op.field == "requested" {
			return status, RequestSimulcastRidResult{ChannelID: req.ChannelID, ReceiverConnectionID: req.ConnectionID, Rid: req.Rid,
				SenderConnectionID: req.SenderID, Requested: total,
				Nodes: nodeCounts(all, func(a peerAnswer) NodeRequested { return NodeRequested{NodeName: a.node, Requested: a.n} }),
				Error: msg, FailedNodes: failed}, nil
		}
		if op.field == "pushed" {
			return status, PushResult{ChannelID: req.ChannelID, ConnectionID: req.ConnectionID, ClientID: req.ClientID, Pushed: total,
				Nodes: nodeCounts(all, func(a peerAnswer) NodePushed { return NodePushed{NodeName: a.node, Pushed: a.n} }),
				Error: msg, FailedNodes: failed}, nil
		}
		return status, DisconnectChannelResult{ChannelID: req.ChannelID, ConnectionID: req.ConnectionID, ClientID: req.ClientID,
			Disconnected: total, Nodes: nodeCounts(all, func(a peerAnswer) NodeDisconnected { return NodeDisconnected{NodeName: a.node, Disconnected: a.n} }),
			Error: msg, FailedNodes: failed}, nil
	}
	list := []ConnectionInfo{}
	for _, a := range all {
		if a.err == nil {
			list = append(list, a.conns...)
		}
	}
	sortConnections(list)
	if len(failed) > 0 {
		return status, ChannelConnectionsFailure{Error: msg, FailedNodes: failed, Connections: list}, nil
	}
	return status, list, nil
}

// nodeCounts is the "nodes" of a counted answer: f of every node that
// answered, in order; [] when none did.
func nodeCounts[T any](all []peerAnswer, f func(peerAnswer) T) []T {
	out := []T{}
	for _, a := range all {
		if a.err == nil {
			out = append(out, f(a))
		}
	}
	return out
}

// sortConnections orders a channel's connections by node, then age.
func sortConnections(list []ConnectionInfo) {
	slices.SortFunc(list, func(a, b ConnectionInfo) int {
		return cmp.Or(cmp.Compare(a.NodeName, b.NodeName), a.CreatedTime.Compare(b.CreatedTime),
			cmp.Compare(a.ConnectionID, b.ConnectionID))
	})
}

// clip shortens s to at most n bytes, on a rune boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
