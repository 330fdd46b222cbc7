package shoal_test

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	shoal "github.com/shoal-sfu/shoal"
	"github.com/shoal-sfu/shoal/affinity"
	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/signaling/client"
	"github.com/shoal-sfu/shoal/signaling/wire"
)

// TestNodeNoClusterColumn: with cluster off the ready wiring holds the "no
// cluster" column of the placement table: the contacted node serves, a
// full node fails the connect, and the node's mode is honoured.
func TestNodeNoClusterColumn(t *testing.T) {
	testutil.CheckLeaks(t)
	cfg := testSoloConfig(t, slog.LevelWarn)
	cfg.MaxConnections = 2
	n := ntStart(t, cfg)
	ctx := testutil.Context(t, 30*time.Second)

	refused := func(channel, reason string) {
		t.Helper()
		var ce *client.CloseError
		if _, err := ntClient(t, n.url, channel); !errors.As(err, &ce) || ce.Code != wire.CloseRefused || ce.Reason != reason {
			t.Errorf("connect to %s: %v; want refused with %d %s", channel, err, wire.CloseRefused, reason)
		}
	}
	served := func(channel string) *client.Conn {
		t.Helper()
		c, err := ntClient(t, n.url, channel)
		if err != nil {
			t.Fatalf("connect to %s: %v; want served", channel, err)
		}
		return c
	}
	setMode := func(m affinity.Mode) {
		t.Helper()
		if err := n.Membership().SetMode(ctx, m, ""); err != nil {
			t.Fatal(err)
		}
	}

	served("room")
	other := served("other")
	refused("third", "NO-CAPACITY") // full at max_connections
	other.Close()
	testutil.Eventually(t, func() bool { return n.View().Nodes[0].Connections == 1 }, 5*time.Second, "the load published")

	setMode(affinity.ModeBlockNewConnection)
	refused("room", "NODE-BLOCKED")
	setMode(affinity.ModeBlockNewSession)
	refused("new", "NODE-BLOCKED")
	served("room") // a session the node holds
	if got := n.SFU().Counts().Total; got != 2 {
		t.Errorf("SFU serves %d connections, want 2", got)
	}
}

// TestNodeConfigMaxConnections: cluster on with max_connections 0 would
// refuse every connect; New says so, naming the field.
func TestNodeConfigMaxConnections(t *testing.T) {
	cfg := testClusterConfig("m@127.0.0.1", 49010)
	cfg.ExternalSignalingURL, cfg.ExternalAPIURL = "ws://127.0.0.1/signaling", "http://127.0.0.1/api"
	cfg.MaxConnections = 0
	if _, err := shoal.New(cfg); err == nil || !strings.Contains(err.Error(), "MaxConnections") {
		t.Fatalf("New with cluster on and MaxConnections 0: %v; want an error naming MaxConnections", err)
	}
}
