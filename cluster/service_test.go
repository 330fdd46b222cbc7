package cluster

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestCheckClusterID(t *testing.T) {
	for _, ok := range []string{"tokyo", "eu-west-1", "a", strings.Repeat("x", MaxClusterIDLen)} {
		if err := CheckClusterID(ok); err != nil {
			t.Errorf("CheckClusterID(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a,b", "a b", "\x00", "東京", strings.Repeat("x", MaxClusterIDLen+1)} {
		err := CheckClusterID(bad)
		if err == nil || !errors.Is(err, ErrInvalid) {
			t.Errorf("CheckClusterID(%q) = %v, want an ErrInvalid", bad, err)
		}
	}
	if err := CheckServiceID(""); err != nil {
		t.Errorf("empty service id: %v", err)
	}
}

// TestOtherServiceIgnored: a node of another service (or another cluster
// id) that holds the same key cannot join, and the nodes of the cluster
// never list it.
func TestOtherServiceIgnored(t *testing.T) {
	c, ns, ctx := runCluster(t, 1)
	for _, tc := range []struct{ name, svc, cid string }{
		{"svc", "other", ""},
		{"cid", "", "other"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := c.addWith("x"+tc.name, true, func(cfg *Config) { cfg.ServiceID, cfg.ClusterID = tc.svc, tc.cid })
			_, err := o.RegisterClusterNode(ctx, ns[0].self)
			if err == nil {
				t.Fatalf("a node of service %q cluster %q registered with a node of service \"\" cluster \"\"", tc.svc, tc.cid)
			}
			time.Sleep(500 * time.Millisecond)
			if listed(ns[0], o.self) {
				t.Fatalf("%s lists the node of another service", ns[0].self)
			}
			for _, m := range ns[0].serf.Members() {
				if m.Name == o.self {
					t.Fatalf("gossip has merged the node of another service: %+v", m)
				}
			}
		})
	}
}
