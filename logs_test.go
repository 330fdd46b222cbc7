package shoal_test

import (
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/shoal-sfu/shoal/internal/testutil"
)

var nodeAttr = regexp.MustCompile(`(^| )node=`)

// Every line a Node logs, whichever part logs it, names the node once.
func TestNodeLogsNameTheNodeOnce(t *testing.T) {
	testutil.CheckLeaks(t)
	logger, buf := testutil.BufferLogger(slog.LevelDebug)
	ip := testutil.LoopbackIP(t)
	port := testutil.FreePort(t, ip)
	cfg := testClusterConfig("logs@"+ip.String(), port)
	cfg.Logger = logger
	n := ntStart(t, cfg)
	if _, err := n.InitCluster(testutil.Context(t, 10*time.Second), []string{cfg.NodeName}); err != nil {
		t.Fatalf("InitCluster: %v", err)
	}
	testutil.Eventually(t, n.Ready, 10*time.Second, "ready")
	c, err := ntClient(t, n.url, "logs")
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	c.Close()
	n.Close()

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	bad := 0
	components := map[string]bool{}
	for _, l := range lines {
		if k := len(nodeAttr.FindAllString(l, -1)); k != 1 {
			bad++
			if bad <= 5 {
				t.Errorf("node= %d times in %q", k, l)
			}
		}
		if m := regexp.MustCompile(`component=(\S+)`).FindStringSubmatch(l); m != nil {
			components[m[1]] = true
		}
	}
	t.Logf("%d of %d lines carry node= other than once; components seen: %v", bad, len(lines), components)
}
