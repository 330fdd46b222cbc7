package signaling

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"

	"github.com/shoal-sfu/shoal/affinity"
)

// The admin API's stats targets (they need AdminConfig.Stats).
const (
	// TargetGetStatsReport answers this node's StatsReport; with
	// {"cluster": true}, a list of every connected node's report.
	TargetGetStatsReport = "Sora_20171010.GetStatsReport"
	// TargetGetStatsAllConnections answers this node's connections'
	// ConnectionStatsReport list; with {"cluster": true}, every connected
	// node's, merged.
	TargetGetStatsAllConnections = "Sora_20171101.GetStatsAllConnections"
	// TargetGetStatsConnection answers one connection's
	// ConnectionStatsReport: {"channel_id", "connection_id"}; the nodes
	// holding the channel are asked, as for the channel operations.
	TargetGetStatsConnection = "Sora_20171101.GetStatsConnection"
	// TargetGetLicense answers a LicenseReport for this node. Shoal has no
	// license; monitoring written for Sora asks it to decide that a node is
	// up (sora_exporter's sora_up), so it answers this node's capacity and
	// no expiry.
	TargetGetLicense = "Sora_20171218.GetLicense"
)

func isStatsTarget(t string) bool {
	return t == TargetGetStatsReport || t == TargetGetStatsAllConnections || t == TargetGetStatsConnection ||
		t == TargetGetLicense
}

// decodeStats reads the stats targets' fields: "cluster" (a boolean), or
// Sora's "local" (false means the same as "cluster": true) and, for
// GetStatsConnection, "channel_id" and "connection_id".
func decodeStats(req *AdminRequest, raw map[string]json.RawMessage, str func(string, bool) (string, error)) error {
	if req.Target == TargetGetLicense {
		return nil
	}
	flag := func(key string) (set, val bool, err error) {
		v, ok := raw[key]
		if !ok || bytes.Equal(v, []byte("null")) {
			return false, false, nil
		}
		if json.Unmarshal(v, &val) != nil {
			return false, false, badRequest("field %q must be a boolean", key)
		}
		return true, val, nil
	}
	cSet, cluster, err := flag("cluster")
	if err != nil {
		return err
	}
	lSet, local, err := flag("local")
	if err != nil {
		return err
	}
	if cSet && lSet && cluster == local {
		return badRequest(`fields "cluster" and "local" disagree: give one of them`)
	}
	req.Cluster = cluster || (lSet && !local)
	if req.Target != TargetGetStatsConnection {
		return nil
	}
	if req.ChannelID, err = adminID(str, "channel_id"); err == nil {
		req.ConnectionID, err = adminID(str, "connection_id")
	}
	return err
}

// StatsReportsResult is GetStatsReport's answer with "cluster": true when a
// node failed (502): the reports of the nodes that answered and the
// failures. Without failures the answer is the list of reports.
type StatsReportsResult struct {
	Error       string        `json:"error"`
	FailedNodes []NodeFailure `json:"failed_nodes"`
	Reports     []StatsReport `json:"reports"`
}

// ConnectionStatsResult is GetStatsAllConnections' answer with "cluster":
// true when a node failed (502): the connections of the nodes that
// answered and the failures.
type ConnectionStatsResult struct {
	Error       string                  `json:"error"`
	FailedNodes []NodeFailure           `json:"failed_nodes"`
	Stats       []ConnectionStatsReport `json:"stats"`
}

// LicenseReport is GetLicense's answer, with the keys of Sora's that
// monitoring reads: Shoal has no license, so product_name is "Shoal", type
// "open-source", serial_code empty, expired_at "9999-12" (no expiry, in
// Sora's year-month form), max_connections this node's capacity as the
// cluster view has it (0: no limit) and max_nodes null (no limit).
type LicenseReport struct {
	ProductName    string `json:"product_name"`
	Type           string `json:"type"`
	SerialCode     string `json:"serial_code"`
	ExpiredAt      string `json:"expired_at"`
	MaxConnections int    `json:"max_connections"`
	MaxNodes       *int   `json:"max_nodes"`
}

// license answers GetLicense from the cluster view.
func (h *adminHandler[N, C]) license() LicenseReport {
	r := LicenseReport{ProductName: "Shoal", Type: "open-source", ExpiredAt: "9999-12"}
	for _, n := range h.admin.Snapshot().Nodes {
		if n.Name == h.cfg.NodeName {
			r.MaxConnections = n.Capacity
		}
	}
	return r
}

// statsOp answers the stats targets.
func (h *adminHandler[N, C]) statsOp(ctx context.Context, req AdminRequest, body []byte, nodeScope bool) (int, any, error) {
	if req.Target == TargetGetLicense {
		return http.StatusOK, h.license(), nil
	}
	st := h.cfg.Stats
	if st == nil {
		return http.StatusBadRequest, nil, errors.New("stats are not available on this node (AdminConfig.Stats is nil)")
	}
	switch req.Target {
	case TargetGetStatsReport:
		own := st.StatsReport()
		if !req.Cluster || nodeScope {
			return http.StatusOK, own, nil
		}
		reports := []StatsReport{own}
		failed := h.askAll(ctx, req.Target, body, h.otherNodes(), func(node string, b []byte) error {
			var r StatsReport
			if err := json.Unmarshal(b, &r); err != nil || r.NodeName == "" {
				return fmt.Errorf("malformed answer %.80q: want a stats report", b)
			}
			reports = append(reports, r)
			return nil
		})
		slices.SortFunc(reports, func(a, b StatsReport) int { return cmp.Compare(a.NodeName, b.NodeName) })
		if len(failed) > 0 {
			return http.StatusBadGateway, StatsReportsResult{Error: failedMsg(failed), FailedNodes: failed, Reports: reports}, nil
		}
		return http.StatusOK, reports, nil
	}
	own := st.ConnectionStats()
	var peers []affinity.Node
	switch {
	case nodeScope:
	case req.Target == TargetGetStatsConnection:
		own = slices.DeleteFunc(own, func(c ConnectionStatsReport) bool {
			return c.ChannelID != req.ChannelID || c.ConnectionID != req.ConnectionID
		})
		if len(own) == 0 {
			peers = h.holders(req.ChannelID)
		}
	case req.Cluster:
		peers = h.otherNodes()
	}
	all := own
	failed := h.askAll(ctx, req.Target, body, peers, func(node string, b []byte) error {
		var list []ConnectionStatsReport
		if err := json.Unmarshal(b, &list); err != nil || list == nil {
			return fmt.Errorf("malformed answer %.80q: want a JSON array", b)
		}
		all = append(all, list...)
		return nil
	})
	slices.SortFunc(all, func(a, b ConnectionStatsReport) int {
		return cmp.Or(cmp.Compare(a.NodeName, b.NodeName), cmp.Compare(a.ChannelID, b.ChannelID), cmp.Compare(a.ConnectionID, b.ConnectionID))
	})
	if all == nil {
		all = []ConnectionStatsReport{}
	}
	if len(failed) > 0 {
		return http.StatusBadGateway, ConnectionStatsResult{Error: failedMsg(failed), FailedNodes: failed, Stats: all}, nil
	}
	if req.Target == TargetGetStatsConnection && !nodeScope {
		for _, c := range all {
			if c.ConnectionID == req.ConnectionID && c.ChannelID == req.ChannelID {
				return http.StatusOK, c, nil
			}
		}
		return http.StatusNotFound, nil, fmt.Errorf("no connection %.80q in channel %.80q", req.ConnectionID, req.ChannelID)
	}
	return http.StatusOK, all, nil
}

// otherNodes returns every node of the view but this one.
func (h *adminHandler[N, C]) otherNodes() []affinity.Node {
	v := h.admin.Snapshot()
	var out []affinity.Node
	for _, n := range v.Nodes {
		if n.Name != h.cfg.NodeName {
			out = append(out, n)
		}
	}
	return out
}

// holders returns the nodes other than this one holding part of the
// channel's session.
func (h *adminHandler[N, C]) holders(channelID string) []affinity.Node {
	v := h.admin.Snapshot()
	var out []affinity.Node
	for _, o := range v.Sessions[channelID].Owners {
		if o.Node >= 0 && o.Node < len(v.Nodes) && v.Nodes[o.Node].Name != h.cfg.NodeName {
			out = append(out, v.Nodes[o.Node])
		}
	}
	return out
}

// askAll sends target and body to every peer at once (ScopeNode), gives
// each 2xx answer to use (under a lock), and returns the failures, sorted
// by node.
func (h *adminHandler[N, C]) askAll(ctx context.Context, target string, body []byte, peers []affinity.Node, use func(node string, b []byte) error) []NodeFailure {
	var (
		mu     sync.Mutex
		failed []NodeFailure
		wg     sync.WaitGroup
	)
	fail := func(node string, status int, err error) {
		mu.Lock()
		failed = append(failed, NodeFailure{NodeName: node, Status: status, Error: clip(err.Error(), 300)})
		mu.Unlock()
	}
	for _, n := range peers {
		if err := unreachable(n); err != nil {
			fail(n.Name, 0, err)
			continue
		}
		wg.Go(func() {
			rep, err := h.post(ctx, n.APIURL, target, body)
			if err == nil && !rep.ok() {
				err = fmt.Errorf("%s: %s", rep.line, clip(string(rep.body), 200))
			}
			if err == nil {
				mu.Lock()
				err = use(n.Name, rep.body)
				mu.Unlock()
			}
			if err != nil {
				fail(n.Name, rep.status, err)
			}
		})
	}
	wg.Wait()
	slices.SortFunc(failed, func(a, b NodeFailure) int { return cmp.Compare(a.NodeName, b.NodeName) })
	return failed
}

// unreachable says why n cannot be asked, if the view shows it
// disconnected or without an external_api_url.
func unreachable(n affinity.Node) error {
	switch {
	case !n.Connected:
		return errors.New("node is not connected")
	case n.APIURL == "":
		return errors.New("node has no external_api_url")
	}
	return nil
}

// peerReply is another node's answer to a ScopeNode call.
type peerReply struct {
	status   int    // its HTTP status code
	line     string // its status line, such as "404 Not Found"
	location string // its Location header
	body     []byte
}

func (r peerReply) ok() bool { return r.status >= 200 && r.status <= 299 }

// post makes one ScopeNode call to another node's admin API at url and
// returns its answer, whatever the status; the error is for a call that
// failed or an answer that could not be read whole (status is then that
// of the answer, if any).
func (h *adminHandler[N, C]) post(ctx context.Context, url, target string, body []byte) (peerReply, error) {
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return peerReply{}, fmt.Errorf("external_api_url %q: %w", url, err)
	}
	r.Header.Set("x-sora-target", target)
	r.Header.Set(ScopeHeader, ScopeNode)
	r.Header.Set("Content-Type", "application/json")
	if h.cfg.Token != "" {
		r.Header.Set("Authorization", "Bearer "+h.cfg.Token)
	}
	resp, err := h.client.Do(r)
	if err != nil {
		return peerReply{}, err
	}
	defer resp.Body.Close()
	rep := peerReply{status: resp.StatusCode, line: resp.Status, location: resp.Header.Get("Location")}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxPeerAnswer+1))
	switch {
	case err != nil:
		return rep, fmt.Errorf("reading the answer: %w", err)
	case len(b) > maxPeerAnswer:
		return rep, fmt.Errorf("answer over %d bytes", maxPeerAnswer)
	}
	rep.body = b
	return rep, nil
}

func failedMsg(failed []NodeFailure) string {
	return fmt.Sprintf("%d node(s) failed to answer; the answer holds the others'", len(failed))
}
