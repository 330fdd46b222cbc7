package shoal_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/signaling"
)

// TestAdminCallerMistakes: through HTTP against real nodes, a caller's
// mistake on the cluster operations is a 4xx with a JSON error naming the
// problem, never a 500; a node out of the majority answers 503.
func TestAdminCallerMistakes(t *testing.T) {
	testutil.CheckLeaks(t)
	nodes, faults := startNodes(t, slog.LevelError, 10, 10, 10, 10)
	a, b, c, d := nodes[0], nodes[1], nodes[2], nodes[3] // d never joins
	ctx := testutil.Context(t, 60*time.Second)

	// call posts target and body to node n's admin API and checks the
	// status and, for an error, that the JSON error mentions each of want.
	call := func(n *itNode, target, body string, status int, want ...string) {
		t.Helper()
		got, _, resp, err := testutil.AdminPost(ctx, http.DefaultClient, n.apiURL, target, body)
		if err != nil {
			t.Fatal(err)
		}
		if got != status {
			t.Errorf("%s %s on %s: %d %s; want %d", target, body, n.name, got, resp, status)
			return
		}
		if status < 400 {
			return
		}
		var e struct {
			Error string `json:"error"`
		}
		if err := json.Unmarshal([]byte(resp), &e); err != nil || e.Error == "" {
			t.Errorf("%s %s on %s: %d with body %s; want a JSON error", target, body, n.name, got, resp)
			return
		}
		for _, w := range want {
			if !strings.Contains(e.Error, w) {
				t.Errorf("%s %s on %s: error %q does not mention %q", target, body, n.name, e.Error, w)
			}
		}
	}
	list := func(names ...string) string {
		b, _ := json.Marshal(map[string][]string{"node_name_list": names})
		return string(b)
	}
	named := func(key, name string) string {
		b, _ := json.Marshal(map[string]string{key: name})
		return string(b)
	}
	const (
		initCluster = signaling.TargetInitCluster
		register    = signaling.TargetRegisterClusterNode
		purge       = signaling.TargetPurgeClusterNode
	)

	// InitCluster.
	call(a, initCluster, list(a.name, "b@"), http.StatusBadRequest, `"b@"`)
	call(a, initCluster, list(a.name, "bad name@127.0.0.1"), http.StatusBadRequest, "bad name@127.0.0.1")
	call(a, initCluster, list(b.name, c.name), http.StatusBadRequest, "does not name this node")
	call(a, initCluster, list(a.name, b.name, a.name), http.StatusBadRequest, a.name, "twice")
	call(a, purge, named("target_node_name", b.name), http.StatusConflict, "not initialised")
	call(a, initCluster, list(a.name, b.name, c.name), http.StatusOK)
	for _, n := range []*itNode{a, b, c} {
		testutil.Eventually(t, func() bool { return n.cluster.Snapshot().InMajority }, 15*time.Second, "%s in the majority", n.name)
	}
	call(a, initCluster, list(a.name, b.name, c.name), http.StatusConflict, "already")
	call(b, initCluster, list(a.name, b.name, c.name), http.StatusConflict, "already")

	// RegisterClusterNode.
	call(d, register, named("contact_node_name", "a-at-nowhere"), http.StatusBadRequest, "a-at-nowhere")
	call(d, register, named("contact_node_name", d.name), http.StatusBadRequest, "this node")
	call(c, register, named("contact_node_name", a.name), http.StatusConflict, "already")

	// PurgeClusterNode.
	call(a, purge, named("target_node_name", "ghost@127.0.0.1"), http.StatusNotFound, "ghost@127.0.0.1")
	call(a, purge, named("target_node_name", "not a node"), http.StatusBadRequest, "not a node")
	call(a, purge, named("target_node_name", a.name), http.StatusConflict, a.name)
	call(a, purge, named("target_node_name", b.name), http.StatusConflict, "alive")
	call(d, purge, named("target_node_name", b.name), http.StatusConflict, "not initialised")

	// Out of the majority: 503.
	faults.Partition([]netip.Addr{a.ip, b.ip}, []netip.Addr{c.ip, d.ip})
	testutil.Eventually(t, func() bool { return !c.cluster.Snapshot().InMajority }, 15*time.Second, "c out of the majority")
	call(c, purge, named("target_node_name", a.name), http.StatusServiceUnavailable, "majority")
	faults.Heal()
}
