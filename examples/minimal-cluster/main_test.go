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
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-sfu/shoal/internal/testutil"
)

// TestRunThree runs the one-command cluster, checks that every node serves
// its page and that the admin API lists three connected nodes, then cancels
// it as Ctrl-C does: it must return nil and leave no goroutine behind.
func TestRunThree(t *testing.T) {
	testutil.CheckLeaks(t)
	lo := netip.MustParseAddr("127.0.0.1")
	o := options{httpPort: testutil.FreePort(t, lo), maxConns: 10, relay: true, affinity: true,
		minPort: testutil.FreePort(t, lo)}
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
