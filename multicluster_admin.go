package shoal

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/shoal-sfu/shoal/internal/httpjson"
)

// The admin API's multi-cluster targets, served by the Node in front of
// the signaling package's admin handler (which knows nothing of other
// clusters). Each is POST / with the x-sora-target header, like the
// others, and the same bearer token.
const (
	// TargetSetMultiClusterConfiguration sets which clusters are joined:
	// {"clusters": ["tokyo", "frankfurt"], "comment": "..."}; answers the
	// configuration.
	TargetSetMultiClusterConfiguration = "Shoal_20261202.SetMultiClusterConfiguration"
	// TargetGetMultiClusterConfiguration answers {"configuration": ...},
	// null when none was set.
	TargetGetMultiClusterConfiguration = "Shoal_20261202.GetMultiClusterConfiguration"
	// TargetListGateways answers the gateway table, active and inactive.
	TargetListGateways = "Shoal_20261202.ListGateways"
	// TargetListChannelClusters: {"channel_id": "room"}; answers the
	// clusters where the channel has clients, with their bridge.
	TargetListChannelClusters = "Shoal_20261202.ListChannelClusters"
)

const maxMultiClusterBody = 64 << 10

// multiClusterAdmin serves the multi-cluster targets and hands every
// other request to next.
type multiClusterAdmin struct {
	n    *Node
	next http.Handler
}

func (h multiClusterAdmin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	target := r.Header.Get("x-sora-target")
	switch target {
	case TargetSetMultiClusterConfiguration, TargetGetMultiClusterConfiguration, TargetListGateways, TargetListChannelClusters:
	default:
		h.next.ServeHTTP(w, r)
		return
	}
	if r.Method != http.MethodPost || r.URL.Path != "/" {
		h.next.ServeHTTP(w, r) // the same answers as for any target
		return
	}
	if tok := h.n.cfg.Admin.Token; tok != "" {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(tok)) != 1 {
			w.Header().Set("WWW-Authenticate", "Bearer")
			httpjson.Error(w, http.StatusUnauthorized, "missing or wrong bearer token")
			return
		}
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxMultiClusterBody+1))
	if err != nil {
		httpjson.Error(w, http.StatusBadRequest, "reading the body: "+err.Error())
		return
	}
	if len(body) > maxMultiClusterBody {
		httpjson.Error(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes", maxMultiClusterBody))
		return
	}
	if h.n.mc == nil {
		httpjson.Error(w, http.StatusBadRequest, ErrNoMultiCluster.Error())
		return
	}
	switch target {
	case TargetSetMultiClusterConfiguration:
		var req struct {
			Clusters []string `json:"clusters"`
			Comment  string   `json:"comment"`
		}
		if err := strictJSON(body, &req); err != nil {
			httpjson.Error(w, http.StatusBadRequest, err.Error())
			return
		}
		if req.Clusters == nil {
			httpjson.Error(w, http.StatusBadRequest, `missing field "clusters" (a list of cluster ids)`)
			return
		}
		c, err := h.n.SetMultiClusterConfiguration(req.Clusters, req.Comment)
		if err != nil {
			httpjson.Error(w, http.StatusBadRequest, err.Error())
			return
		}
		httpjson.Write(w, http.StatusOK, c)
	case TargetGetMultiClusterConfiguration:
		c, _ := h.n.GetMultiClusterConfiguration()
		httpjson.Write(w, http.StatusOK, map[string]any{"configuration": c})
	case TargetListGateways:
		gws, _ := h.n.ListGateways()
		out := make([]map[string]any, 0, len(gws))
		for _, g := range gws {
			out = append(out, map[string]any{"address": g.Addr, "cluster_id": g.ClusterID, "node_name": g.Node,
				"relay_address": g.Relay, "status": g.Status.String(), "version": g.Version, "channels": g.Channels})
		}
		httpjson.Write(w, http.StatusOK, out)
	case TargetListChannelClusters:
		var req struct {
			ChannelID *string `json:"channel_id"`
		}
		if err := strictJSON(body, &req); err != nil {
			httpjson.Error(w, http.StatusBadRequest, err.Error())
			return
		}
		if req.ChannelID == nil || *req.ChannelID == "" {
			httpjson.Error(w, http.StatusBadRequest, `missing field "channel_id"`)
			return
		}
		cc, _ := h.n.ListChannelClusters(*req.ChannelID)
		if cc == nil {
			cc = []ChannelCluster{}
		}
		httpjson.Write(w, http.StatusOK, cc)
	}
}

// strictJSON decodes one JSON object into v, refusing unknown fields; an
// empty body is an empty object.
func strictJSON(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("body: %v", err)
	}
	if dec.More() {
		return errors.New("body: trailing data after the JSON object")
	}
	return nil
}
