package testutil

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

func TestLoopbackIPs(t *testing.T) {
	ips := LoopbackIPs(t, 3)
	if len(ips) != 3 || ips[0] == ips[1] || ips[1] == ips[2] || ips[0] == ips[2] {
		t.Fatalf("LoopbackIPs(3) = %v, want three distinct addresses", ips)
	}
}

func TestBufferLogger(t *testing.T) {
	l, buf := BufferLogger(slog.LevelInfo)
	l.Debug("hidden")
	l.Warn("shown", "k", "v")
	if m := buf.Missing("level=WARN msg=shown k=v", "hidden", "absent"); !slices.Equal(m, []string{"hidden", "absent"}) {
		t.Errorf("Missing = %q, want [hidden absent]; output:\n%s", m, buf)
	}
}

func TestAdminPostAndClusterNodes(t *testing.T) {
	var target, body string
	var gone atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if gone.Load() {
			http.NotFound(w, r)
			return
		}
		b, _ := io.ReadAll(r.Body)
		target, body = r.Header.Get("x-sora-target"), string(b)
		w.Header().Set("Location", "http://elsewhere/api")
		io.WriteString(w, ` [{"node_name":"a@127.0.0.1","connected":true},{"node_name":"b@127.0.0.2","connected":false}] `)
	}))
	defer srv.Close()
	status, loc, resp, err := AdminPost(Context(t, 5*time.Second), http.DefaultClient, srv.URL, "T.X", `{"a":1}`)
	if err != nil || status != 200 || loc != "http://elsewhere/api" || resp[0] != '[' || target != "T.X" || body != `{"a":1}` {
		t.Errorf("AdminPost = %d %q %q %v; server saw %q %q", status, loc, resp, err, target, body)
	}
	nodes, err := ClusterNodes(srv.URL)
	if err != nil || len(nodes) != 2 || !nodes["a@127.0.0.1"] || nodes["b@127.0.0.2"] || target != "Sora_20211215.ListClusterNodes" {
		t.Errorf("ClusterNodes = %v, %v (target %q)", nodes, err, target)
	}
	gone.Store(true)
	if _, err := ClusterNodes(srv.URL); err == nil {
		t.Error("ClusterNodes of a 404 gave no error")
	}
}
