package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-sfu/shoal/internal/testutil"
)

// syncBuffer is the printed output, read while run writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRun runs the one command with two regions on fresh loopback
// addresses: it prints a page per node, every node serves its page and
// /multicluster.json shows the configuration and six active gateways;
// cancelled as Ctrl-C does, it returns nil and leaves no goroutine behind.
func TestRun(t *testing.T) {
	testutil.CheckLeaks(t)
	ips := testutil.LoopbackIPs(t, 6)
	o := options{httpPort: testutil.FreePort(t, ips[0]), minPort: testutil.FreePort(t, ips[0]),
		regions: []region{{id: "tokyo", ips: ips[:3]}, {id: "frankfurt", ips: ips[3:]}}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, o, testutil.LoggerLevel(t, slog.LevelWarn), &out) }()
	testutil.Eventually(t, func() bool { return strings.Contains(out.String(), "multicluster.json") }, 60*time.Second,
		"the pages printed")
	if n := strings.Count(out.String(), "?channel=sora"); n != 6 {
		t.Fatalf("%d pages printed, want 6:\n%s", n, out.String())
	}
	get := func(url string) (int, []byte) {
		resp, err := http.Get(url)
		if err != nil {
			return 0, nil
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	for _, ip := range ips {
		base := "http://" + netip.AddrPortFrom(ip, uint16(o.httpPort)).String()
		if code, body := get(base + "/"); code != 200 || !strings.Contains(string(body), "shoal.js") {
			t.Fatalf("page of %v: %d", ip, code)
		}
	}
	testutil.Eventually(t, func() bool {
		code, body := get("http://" + netip.AddrPortFrom(ips[5], uint16(o.httpPort)).String() + "/multicluster.json")
		var st multiStatus
		if code != 200 || json.Unmarshal(body, &st) != nil || st.Configuration == nil || len(st.Configuration.Clusters) != 2 {
			return false
		}
		active := 0
		for _, g := range st.Gateways {
			if g.Status == 1 {
				active++
			}
		}
		return active == 6
	}, 30*time.Second, "configuration and six active gateways in /multicluster.json")
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run after cancel: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}
