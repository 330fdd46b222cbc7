package cluster

import (
	"errors"
	"strings"
	"testing"

	"github.com/shoal-sfu/shoal/affinity"
)

func TestParseNodeName(t *testing.T) {
	for _, tc := range []struct {
		in, err string
	}{
		{"a@10.0.0.1", ""},
		{"node_1-x@sfu.example.com", ""},
		{"a@::1", ""},
		{"a@localhost", "host must contain a dot or be an IP address"},
		{"a", "want NAME@HOST"},
		{"@10.0.0.1", "NAME is empty"},
		{"a b@10.0.0.1", "NAME may hold only"},
		{"a@", "HOST is empty"},
		{"a@bad_host.example", "not a valid host name"},
		{"a@-x.example", "not a valid host name"},
		{"a@x..example", "not a valid host name"},
	} {
		_, err := ParseNodeName(tc.in)
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("ParseNodeName(%q) = %v, want error containing %q", tc.in, err, tc.err)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseNodeName(%q) = %v, not an ErrInvalid", tc.in, err)
		}
	}
}

func TestConfigValidation(t *testing.T) {
	good := func() Config {
		c := DefaultConfig()
		c.NodeName = "a@10.0.0.1"
		c.Cluster = true
		c.ExternalSignalingURL = "wss://a.example/signaling"
		c.ExternalAPIURL = "https://a.example/api"
		c.ClusterKey = testKey
		c.MaxConnections = 100
		return c
	}
	if _, err := New(good()); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		err  string
	}{
		{"host without dot", func(c *Config) { c.NodeName = "a@localhost" }, "host must contain a dot"},
		{"min port out of range", func(c *Config) { c.ListenMinPort = 70000 }, "cluster_listen_min_port 70000 is out of range"},
		{"max port out of range", func(c *Config) { c.ListenMaxPort = -1 }, "cluster_listen_max_port -1 is out of range"},
		{"one port", func(c *Config) { c.ListenMaxPort = c.ListenMinPort }, "a node needs two ports"},
		{"no signaling url", func(c *Config) { c.ExternalSignalingURL = "" }, "external_signaling_url is required"},
		{"no api url", func(c *Config) { c.ExternalAPIURL = "" }, "external_api_url is required"},
		{"short key", func(c *Config) { c.ClusterKey = []byte("short") }, "cluster key is 5 bytes"},
		{"negative max", func(c *Config) { c.MaxConnections = -1 }, "max_connections -1 is negative"},
		// It would pass and then refuse every connect: placement sees no room.
		{"no max", func(c *Config) { c.MaxConnections = 0 }, "max_connections (Config.MaxConnections) is 0"},
		{"bad timing", func(c *Config) { c.Timing.Tick = -1 }, "Timing has a zero or negative field"},
		{"comma in cluster id", func(c *Config) { c.ClusterID = "tokyo,osaka" }, `cluster id "tokyo,osaka" must not contain a comma`},
		{"space in cluster id", func(c *Config) { c.ClusterID = "to kyo" }, "only printable ASCII without spaces"},
		{"long cluster id", func(c *Config) { c.ClusterID = strings.Repeat("x", 33) }, "is 33 bytes, at most 32"},
		{"long service id", func(c *Config) { c.ServiceID = strings.Repeat("s", 65) }, "service id"},
		{"control in service id", func(c *Config) { c.ServiceID = "a\nb" }, "only printable ASCII"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good()
			tc.mod(&c)
			_, err := New(c)
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("New = %v, want error containing %q", err, tc.err)
			}
		})
	}
	// With clustering off, URLs and key are not needed.
	if _, err := New(Config{NodeName: "solo@10.0.0.1"}); err != nil {
		t.Fatal(err)
	}
}

// TestMaxConnectionsZeroClusterOff: with cluster off, max_connections 0 is
// no limit (a plain SFU); placement serves and the listing still says 0.
func TestMaxConnectionsZeroClusterOff(t *testing.T) {
	n, err := New(Config{NodeName: "solo@10.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	v := n.Snapshot()
	v.Nodes[0].Connections = 1 << 30
	if d := affinity.Place(&v, affinity.Request{ChannelID: "x", Contacted: "solo@10.0.0.1"}); d.Action != affinity.ActionServe {
		t.Errorf("placement with cluster off and max_connections 0: %v %v, want serve", d.Action, d.Reason)
	}
	if st := n.snap.Load().nodes; len(st) != 1 || st[0].MaxConnections != 0 {
		t.Errorf("ListClusterNodes: %+v, want license_max_connections 0", st)
	}
}
