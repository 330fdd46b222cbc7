package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/shoal-sfu/shoal/internal/testutil"
)

// TestRunThree runs the one-command cluster, checks that every node serves
// its page and that the admin API lists three connected nodes, then cancels
// it as Ctrl-C does: it must return nil and leave no goroutine behind.
func TestRunThree(t *testing.T) {
	testutil.CheckLeaks(t)
	lo := netip.MustParseAddr("127.0.0.1")
	o := options{httpPort: testutil.FreePort(t, lo), maxConns: 10, relay: true, affinity: true,
		minPort: testutil.FreePort(t, lo), origins: "localhost:3000", key: strings.Repeat("ab", 32)}
	o.maxPort = o.minPort + 3
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- runThree(ctx, o, testutil.LoggerLevel(t, slog.LevelWarn)) }()

	get := func(url string) (int, string) {
		resp, err := http.Get(url)
		if err != nil {
			return 0, ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for i := 1; i <= 3; i++ {
		base := fmt.Sprintf("http://127.0.0.%d:%d", i, o.httpPort)
		testutil.Eventually(t, func() bool {
			code, body := get(base + "/")
			return code == 200 && strings.Contains(body, "shoal.js")
		}, 30*time.Second, "page of node %d", i)
		if code, body := get(base + "/shoal.js"); code != 200 || !strings.Contains(body, "export async function connect") {
			t.Fatalf("node %d /shoal.js: %d", i, code)
		}
	}
	testutil.Eventually(t, func() bool {
		nodes, err := testutil.ClusterNodes(fmt.Sprintf("http://127.0.0.1:%d/api", o.httpPort))
		return err == nil && len(nodes) == 3 && !slices.Contains(slices.Collect(maps.Values(nodes)), false)
	}, 30*time.Second, "three connected nodes listed")
	base2 := fmt.Sprintf("127.0.0.2:%d", o.httpPort)
	for _, p := range []string{"/cluster.html", "/cluster.json", "/metrics"} {
		if code, body := get("http://" + base2 + p); code != 200 || len(body) == 0 {
			t.Errorf("%s: %d", p, code)
		}
	}

	// -origins holds in the three-node mode: a page of the user's app on
	// localhost:3000 may open signaling on any node, as may the nodes' own
	// pages; another origin gets 403.
	for origin, want := range map[string]int{"http://localhost:3000": http.StatusSwitchingProtocols,
		"http://127.0.0.1:" + fmt.Sprint(o.httpPort): http.StatusSwitchingProtocols, "http://elsewhere.example:3000": http.StatusForbidden} {
		if got := upgradeStatus(t, "ws://"+base2+"/signaling", origin); got != want {
			t.Errorf("origin %s: HTTP %d, want %d", origin, got, want)
		}
	}

	// One command scales out with a temporary node, and its Ctrl-C scales
	// in: it leaves the cluster.
	ot := o
	ot.name, ot.register, ot.temporary, ot.fast, ot.loopback = "node4@127.0.0.4", "node1@127.0.0.1", true, true, true
	ot.origins = ""
	tctx, tcancel := context.WithCancel(context.Background())
	tdone := make(chan error, 1)
	go func() { tdone <- runOne(tctx, ot, testutil.LoggerLevel(t, slog.LevelWarn)) }()
	testutil.Eventually(t, func() bool {
		nodes, err := testutil.ClusterNodes(fmt.Sprintf("http://127.0.0.1:%d/api", o.httpPort))
		return err == nil && len(nodes) == 4 && nodes["node4@127.0.0.4"]
	}, 30*time.Second, "the temporary node joined")
	tcancel()
	if err := <-tdone; err != nil {
		t.Errorf("temporary node: %v", err)
	}
	testutil.Eventually(t, func() bool {
		nodes, err := testutil.ClusterNodes(fmt.Sprintf("http://127.0.0.1:%d/api", o.httpPort))
		_, there := nodes["node4@127.0.0.4"]
		return err == nil && !there
	}, 30*time.Second, "the temporary node left the cluster")

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("runThree: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("runThree did not stop within 30 s of Ctrl-C")
	}
	http.DefaultClient.CloseIdleConnections()
}

// TestBindHint: a port in use and an address missing get a hint each that
// says what to do.
func TestBindHint(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = net.Listen("tcp", ln.Addr().String())
	if err == nil {
		t.Fatal("a second listener on one port")
	}
	if h := bindHint(fmt.Errorf("start: %w", err), lo); !strings.Contains(h, "TIME_WAIT") {
		t.Errorf("hint for %v: %q", err, h)
	}
	_, err = net.Listen("tcp", "192.0.2.1:0") // TEST-NET-1: not on this machine
	if h := bindHint(err, lo); err == nil || !strings.Contains(h, "ifconfig lo0 alias") {
		t.Errorf("hint for %v: %q", err, h)
	}
	if h := bindHint(errors.New("other"), lo); h != "" {
		t.Errorf("hint for another error: %q", h)
	}
}

// upgradeStatus opens a WebSocket upgrade to url with the given Origin and
// returns the HTTP status.
func upgradeStatus(t *testing.T, url, origin string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http"+strings.TrimPrefix(url, "ws"), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Origin", origin)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// The origin guard says what the signaling server does (the same origins
// refused), and logs a refused origin once, naming the flag.
func TestOriginGuard(t *testing.T) {
	testutil.CheckLeaks(t)
	patterns := []string{"localhost:3000", "*.example.com", "https://app.example.org"}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{OriginPatterns: patterns})
		if err == nil {
			c.CloseNow()
		}
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	for _, origin := range []string{"http://localhost:3000", "http://LOCALHOST:3000", "http://localhost:3001", "http://a.example.com",
		"http://example.com", "https://app.example.org", "http://app.example.org", "http://" + host, "http://evil.test"} {
		refused := upgradeStatus(t, "ws://"+host, origin) == http.StatusForbidden
		if allowed := originAllowed(host, origin, patterns); allowed == refused {
			t.Errorf("origin %s: guard allows %v, the server refuses %v", origin, allowed, refused)
		}
	}

	var logs strings.Builder
	log := slog.New(slog.NewTextHandler(&logs, nil))
	g := newOriginGuard(http.NotFoundHandler(), []string{"127.0.0.1:5000"}, log)
	for range 3 {
		r := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:5000/signaling", nil)
		r.Header.Set("Origin", "http://localhost:3000")
		g.ServeHTTP(httptest.NewRecorder(), r)
	}
	r := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:5000/signaling", nil)
	r.Header.Set("Origin", "http://127.0.0.1:5000")
	g.ServeHTTP(httptest.NewRecorder(), r)
	if n := strings.Count(logs.String(), "refused"); n != 1 || !strings.Contains(logs.String(), "-origins localhost:3000") {
		t.Errorf("logs %q: want one line naming -origins localhost:3000", logs.String())
	}
	for i := range 2 * maxNotedOrigins {
		r := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:5000/signaling", nil)
		r.Header.Set("Origin", fmt.Sprintf("http://flood%d.test", i))
		g.ServeHTTP(httptest.NewRecorder(), r)
	}
	if n := strings.Count(logs.String(), "refused"); n != maxNotedOrigins {
		t.Errorf("%d lines after a flood of origins, want %d", n, maxNotedOrigins)
	}
}
