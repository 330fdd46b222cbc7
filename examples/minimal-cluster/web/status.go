package web

import (
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/shoal-sfu/shoal"
)

// Status is the JSON of StatusHandler: one node's view of the cluster and
// its own relay links.
type Status struct {
	NodeName   string          `json:"node_name"`
	InMajority bool            `json:"in_majority"`
	Time       int64           `json:"time"` // Unix milliseconds
	Nodes      []StatusNode    `json:"nodes"`
	Channels   []StatusChannel `json:"channels"`
	Relay      []StatusLink    `json:"relay"`
}

// StatusNode is one node as the view shows it.
type StatusNode struct {
	NodeName    string `json:"node_name"`
	Connected   bool   `json:"connected"`
	Mode        string `json:"mode"`
	Temporary   bool   `json:"temporary"`
	Connections int    `json:"connections"`
	Capacity    int    `json:"capacity"`
	// StatusURL is the node's own status (its external_api_url with
	// /cluster.json for /api), which the page asks for its majority and
	// relay links.
	StatusURL string `json:"status_url,omitempty"`
}

// StatusChannel is one channel's session: the nodes holding it, with
// their connections.
type StatusChannel struct {
	ChannelID string         `json:"channel_id"`
	Nodes     map[string]int `json:"nodes"`
}

// StatusLink is one relay link of the node, with counters since it
// started (the page makes rates of them).
type StatusLink struct {
	Peer       string  `json:"peer"`
	Connected  bool    `json:"connected"`
	PacketsOut uint64  `json:"packets_out"`
	PacketsIn  uint64  `json:"packets_in"`
	BytesOut   uint64  `json:"bytes_out"`
	BytesIn    uint64  `json:"bytes_in"`
	RTTMs      float64 `json:"rtt_ms"`
}

// StatusHandler serves n's Status as JSON (mount it at /cluster.json, where
// the cluster page and the other nodes' pages look for it). It is
// read-only and answers any origin, so that one page can show every node.
func StatusHandler(n *shoal.Node) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := n.View()
		st := Status{NodeName: n.Name(), InMajority: v.InMajority, Time: time.Now().UnixMilli(),
			Nodes: []StatusNode{}, Channels: []StatusChannel{}, Relay: []StatusLink{}}
		for _, nd := range v.Nodes {
			sn := StatusNode{NodeName: nd.Name, Connected: nd.Connected, Mode: nd.Mode.String(), Temporary: nd.Temporary,
				Connections: nd.Connections, Capacity: nd.Capacity}
			if base, ok := strings.CutSuffix(nd.APIURL, "/api"); ok {
				sn.StatusURL = base + "/cluster.json"
			}
			st.Nodes = append(st.Nodes, sn)
		}
		for ch, s := range v.Sessions {
			c := StatusChannel{ChannelID: ch, Nodes: map[string]int{}}
			for _, o := range s.Owners {
				if o.Node >= 0 && o.Node < len(v.Nodes) {
					c.Nodes[v.Nodes[o.Node].Name] = o.Connections
				}
			}
			st.Channels = append(st.Channels, c)
		}
		sort.Slice(st.Channels, func(i, j int) bool { return st.Channels[i].ChannelID < st.Channels[j].ChannelID })
		if rl := n.Relay(); rl != nil {
			for _, l := range rl.Stats().Links {
				st.Relay = append(st.Relay, StatusLink{Peer: l.Peer, Connected: l.Connected, PacketsOut: l.PacketsOut,
					PacketsIn: l.PacketsIn, BytesOut: l.BytesOut, BytesIn: l.BytesIn, RTTMs: float64(l.RTT) / float64(time.Millisecond)})
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Access-Control-Allow-Origin", "*")
		_ = json.NewEncoder(w).Encode(st)
	})
}
