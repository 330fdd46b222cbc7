package multiclustertest

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	shoal "github.com/shoal-sfu/shoal"
	"github.com/shoal-sfu/shoal/cluster/multicluster"
	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/signaling"
)

// TestAdminTargets: the multi-cluster targets of the admin API set and
// read the configuration, list the gateways and a channel's clusters, and
// answer the caller's mistakes with 400 and a JSON error naming them.
func TestAdminTargets(t *testing.T) {
	testutil.CheckLeaks(t)
	mem := multicluster.NewMemoryChannel("mem")
	r := startRegion(t, "tokyo", mem, nil, func(c *shoal.Config) { c.Admin.Token = "secret" })
	hc := &http.Client{Timeout: 10 * time.Second}
	post := func(url, target, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		req.Header.Set("x-sora-target", target)
		req.Header.Set("Authorization", "Bearer secret")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	api := r.nodes[0].api
	st, body := post(api, shoal.TargetGetMultiClusterConfiguration, "")
	if st != 200 || body != `{"configuration":null}` {
		t.Fatalf("Get before any set: %d %s", st, body)
	}
	st, body = post(api, shoal.TargetSetMultiClusterConfiguration, `{"clusters":["tokyo","frankfurt"],"comment":"two"}`)
	if st != 200 || !strings.Contains(body, `"clusters":["frankfurt","tokyo"]`) {
		t.Fatalf("Set: %d %s", st, body)
	}
	// Read on another node once gossip brought it.
	testutil.Eventually(t, func() bool {
		st, body := post(r.nodes[2].api, shoal.TargetGetMultiClusterConfiguration, "{}")
		return st == 200 && strings.Contains(body, `"comment":"two"`)
	}, 10*time.Second, "the configuration on another node")
	testutil.Eventually(t, func() bool {
		st, body := post(api, shoal.TargetListGateways, "")
		var gws []map[string]any
		return st == 200 && json.Unmarshal([]byte(body), &gws) == nil && len(gws) == 3 && gws[0]["status"] == "active"
	}, 10*time.Second, "three active gateways listed")
	if st, body := post(api, shoal.TargetListChannelClusters, `{"channel_id":"nobody"}`); st != 200 || body != "[]" {
		t.Fatalf("ListChannelClusters of an empty channel: %d %s", st, body)
	}
	for _, tc := range []struct{ target, body, want string }{
		{shoal.TargetSetMultiClusterConfiguration, `{"clusters":["a,b"]}`, "must not contain a comma"},
		{shoal.TargetSetMultiClusterConfiguration, `{"clusters":[]}`, "names no cluster"},
		{shoal.TargetSetMultiClusterConfiguration, `{}`, `missing field \"clusters\"`},
		{shoal.TargetSetMultiClusterConfiguration, `{"clusters":["a"],"extra":1}`, "unknown field"},
		{shoal.TargetSetMultiClusterConfiguration, `[`, "body:"},
		{shoal.TargetListChannelClusters, `{}`, `missing field \"channel_id\"`},
	} {
		st, body := post(api, tc.target, tc.body)
		if st != 400 || !strings.Contains(body, tc.want) || !strings.HasPrefix(body, `{"error":`) {
			t.Errorf("%s %s: %d %s, want 400 with an error containing %q", tc.target, tc.body, st, body, tc.want)
		}
	}
	// Without the token: 401, as every target.
	req, _ := http.NewRequest(http.MethodPost, api, strings.NewReader(""))
	req.Header.Set("x-sora-target", shoal.TargetListGateways)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("ListGateways without the token: %d, want 401", resp.StatusCode)
	}
	// The cluster's own targets still reach the signaling handler.
	if st, body := post(api, "Sora_20211215.ListClusterNodes", "{}"); st != 200 || !strings.Contains(body, "tokyo1@") {
		t.Fatalf("ListClusterNodes through the wrapper: %d %s", st, body)
	}
}

// TestConfigErrors: a node with multi-cluster on but a config that cannot
// work is refused by New with an error naming the problem.
func TestConfigErrors(t *testing.T) {
	base := func() shoal.Config {
		cfg := shoal.DefaultConfig()
		cfg.NodeName = "x1@127.0.0.1"
		cfg.Cluster, cfg.MaxConnections, cfg.ClusterKey = true, 10, []byte("cluster-key-0123456789abcdef0123")
		cfg.ExternalSignalingURL, cfg.ExternalAPIURL = "ws://127.0.0.1:1/signaling", "http://127.0.0.1:1/"
		cfg.ClusterID = "x"
		cfg.Authenticator = signaling.AllowAll
		cfg.MultiCluster = shoal.MultiClusterConfig{Key: mcKey, GossipPort: 40001, RelayPort: 40002}
		return cfg
	}
	for _, tc := range []struct {
		name string
		mod  func(*shoal.Config)
		want string
	}{
		{"no cluster id", func(c *shoal.Config) { c.ClusterID = "" }, "multi-cluster needs a ClusterID"},
		{"relay off", func(c *shoal.Config) { c.Relay = false }, "needs Cluster and Relay on"},
		{"no gossip port", func(c *shoal.Config) { c.MultiCluster.GossipPort = 0 }, "GossipPort 0 is out of range"},
		{"same ports", func(c *shoal.Config) { c.MultiCluster.RelayPort = 40001 }, "must differ"},
		{"short key", func(c *shoal.Config) { c.MultiCluster.Key = []byte("short") }, "multi-cluster key is 5 bytes"},
		{"dns host", func(c *shoal.Config) { c.NodeName = "x1@node.example" }, "needs an IP address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base()
			tc.mod(&cfg)
			n, err := shoal.New(cfg)
			if err == nil {
				n.Close()
				t.Fatalf("New accepted it")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
