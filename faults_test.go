package shoal_test

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	shoal "github.com/shoal-sfu/shoal"
	"github.com/shoal-sfu/shoal/affinity"
	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/internal/testutil/pionapi"
	"github.com/shoal-sfu/shoal/relay"
	"github.com/shoal-sfu/shoal/signaling/client"
	"github.com/shoal-sfu/shoal/signaling/wire"
)

// fastSelfBlock checks every 100 ms and counts a relay link down for 1 s
// as failing.
var fastSelfBlock = shoal.SelfBlockConfig{Interval: 100 * time.Millisecond, RelayDownFor: time.Second}

// modeOf returns the mode and mode_reason of node as ListClusterNodes on
// n shows them.
func modeOf(t *testing.T, n *shoal.Node, node string) (string, string) {
	t.Helper()
	list, err := n.Membership().ListClusterNodes(testutil.Context(t, 5*time.Second))
	if err != nil {
		t.Fatalf("ListClusterNodes on %s: %v", n.Name(), err)
	}
	for _, s := range list {
		if s.Name == node {
			return s.Mode, s.ModeReason
		}
	}
	t.Fatalf("ListClusterNodes on %s does not list %s: %+v", n.Name(), node, list)
	return "", ""
}

// waitMode waits until ListClusterNodes on n shows node in mode with a
// mode_reason containing reason (any reason when it is "", none when it
// is "-").
func waitMode(t *testing.T, n *shoal.Node, node, mode, reason string, timeout time.Duration) {
	t.Helper()
	var m, r string
	if !testutil.WaitFor(func() bool {
		m, r = modeOf(t, n, node)
		return m == mode && (reason == "-" && r == "" || reason != "-" && strings.Contains(r, reason))
	}, timeout) {
		t.Fatalf("%s shows %s in mode %q (reason %q); want %q with a reason containing %q", n.Name(), node, m, r, mode, reason)
	}
}

// TestNodeBlocksOnRelayFault: three nodes; the relay of the first loses
// its links to both others (cut on the relay's network only: gossip and
// Raft go on). After RelayDownFor it shows block_new_connection with a
// reason naming the relay, on every node's ListClusterNodes, and a connect
// to it is redirected; the two others, which each lost one link of two,
// stay normal. When the links are back it is normal again and serves.
func TestNodeBlocksOnRelayFault(t *testing.T) {
	testutil.CheckLeaks(t)
	rnet := relay.NewFaultNet()
	nodes, names, ips := ntStartThree(t, "rf", func(cfg *shoal.Config) {
		cfg.RelayLink.Net = rnet
		cfg.SelfBlock = fastSelfBlock
	})
	if _, err := nodes[0].InitCluster(testutil.Context(t, 20*time.Second), names); err != nil {
		t.Fatalf("InitCluster: %v", err)
	}
	for _, n := range nodes {
		testutil.Eventually(t, n.Ready, 15*time.Second, "%s ready", n.Name())
		testutil.Eventually(t, func() bool { return len(n.Relay().LinksDown()) == 0 && len(n.Relay().Stats().Links) == 2 },
			15*time.Second, "%s's relay links up: down %v", n.Name(), n.Relay().LinksDown())
	}
	for _, n := range nodes {
		for _, name := range names {
			waitMode(t, n.Node, name, "normal", "-", 5*time.Second)
		}
	}

	cut := time.Now()
	rnet.Block(ips[0], ips[1])
	rnet.Block(ips[0], ips[2])
	for _, n := range nodes {
		waitMode(t, n.Node, names[0], "block_new_connection", "relay", 15*time.Second)
	}
	if d := time.Since(cut); d < time.Second {
		t.Errorf("%s blocked %v after the cut, before RelayDownFor (1s)", names[0], d)
	}
	_, reason := modeOf(t, nodes[1].Node, names[0])
	t.Logf("%s blocked %v after the cut: %q", names[0], time.Since(cut).Round(10*time.Millisecond), reason)
	if !strings.Contains(reason, names[1]) || !strings.Contains(reason, names[2]) {
		t.Errorf("mode_reason %q does not name the peers it lost", reason)
	}
	time.Sleep(500 * time.Millisecond) // the others had as long, and more
	for _, n := range nodes[1:] {
		if m, r := modeOf(t, n.Node, n.Name()); m != "normal" {
			t.Errorf("%s, which lost one relay link of two, is %s (%q); want normal", n.Name(), m, r)
		}
	}
	c, err := ntClient(t, nodes[0].url, "relay-fault")
	if err != nil {
		t.Fatalf("connect to the blocked node: %v; want redirected", err)
	}
	if c.Redirects != 1 || c.URL == nodes[0].url {
		t.Errorf("connect to the blocked node: served at %s after %d redirects; want redirected to another node", c.URL, c.Redirects)
	}
	c.Close()

	rnet.Heal()
	for _, n := range nodes {
		waitMode(t, n.Node, names[0], "normal", "-", 15*time.Second)
	}
	testutil.Eventually(t, func() bool {
		return nodes[0].SFU().Counts().Total == 0 && nodes[1].SFU().Counts().Total == 0 &&
			nodes[2].SFU().Counts().Total == 0
	}, 10*time.Second, "the first client gone")
	testutil.Eventually(t, func() bool {
		for _, nd := range nodes[0].View().Nodes {
			if nd.Connections != 0 {
				return false
			}
		}
		return true
	}, 10*time.Second, "no load left in the view")
	c, err = ntClient(t, nodes[0].url, "relay-back")
	if err != nil {
		t.Fatalf("connect after the relay came back: %v", err)
	}
	if c.Redirects != 0 {
		t.Errorf("connect to the healed node was redirected to %s", c.URL)
	}
}

// TestNodeBlocksOnDataDirFault: a node whose data directory cannot be
// written blocks itself, and goes back to its mode when it can be. The
// write is made to fail by a directory where the node's probe file goes
// (the tests run as root, which a read-only mode does not stop). The
// operator's mode wins: a block_new_session set before comes back after
// the fault, a mode set during the fault stays, and mode.json only ever
// holds the operator's.
func TestNodeBlocksOnDataDirFault(t *testing.T) {
	testutil.CheckLeaks(t)
	dir := t.TempDir()
	cfg := testSoloConfig(t, slog.LevelError)
	cfg.DataDir = dir
	cfg.SelfBlock = fastSelfBlock
	n := ntStart(t, cfg)
	self := n.Name()
	ctx := testutil.Context(t, 60*time.Second)
	probe := filepath.Join(dir, ".shoal-write-probe")
	breakDir := func() { // the probe file may be there for a moment: try again
		t.Helper()
		var err error
		if !testutil.WaitFor(func() bool { err = os.MkdirAll(filepath.Join(probe, "x"), 0o700); return err == nil }, 5*time.Second) {
			t.Fatal(err)
		}
	}
	mendDir := func() {
		t.Helper()
		if err := os.RemoveAll(probe); err != nil {
			t.Fatal(err)
		}
	}
	refused := func(channel string) {
		t.Helper()
		var ce *client.CloseError
		if _, err := ntClient(t, n.url, channel); !errors.As(err, &ce) || ce.Code != wire.CloseRefused || ce.Reason != "NODE-BLOCKED" {
			t.Errorf("connect to %s: %v; want refused with %d NODE-BLOCKED", channel, err, wire.CloseRefused)
		}
	}
	saved := func() string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, "mode.json"))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		return string(b)
	}

	waitMode(t, n.Node, self, "normal", "-", 5*time.Second)
	if _, err := ntClient(t, n.url, "before"); err != nil {
		t.Fatalf("connect to the healthy node: %v", err)
	}
	breakDir()
	waitMode(t, n.Node, self, "block_new_connection", "data directory", 10*time.Second)
	_, reason := modeOf(t, n.Node, self)
	t.Logf("blocked: %q", reason)
	refused("during")
	mendDir()
	waitMode(t, n.Node, self, "normal", "-", 10*time.Second)
	if _, err := ntClient(t, n.url, "after"); err != nil {
		t.Errorf("connect after the data directory mended: %v", err)
	}
	if s := saved(); strings.Contains(s, "fault") {
		t.Errorf("mode.json holds the fault's block: %s", s)
	}

	// An operator's block_new_session before the fault comes back after it.
	if err := n.Membership().SetMode(ctx, affinity.ModeBlockNewSession, "draining"); err != nil {
		t.Fatal(err)
	}
	breakDir()
	waitMode(t, n.Node, self, "block_new_connection", "data directory", 10*time.Second)
	mendDir()
	waitMode(t, n.Node, self, "block_new_session", "draining", 10*time.Second)

	// A mode set during the fault stays: the fault's end does not undo it.
	if err := n.Membership().SetMode(ctx, affinity.ModeNormal, ""); err != nil {
		t.Fatal(err)
	}
	breakDir()
	waitMode(t, n.Node, self, "block_new_connection", "data directory", 10*time.Second)
	if err := n.Membership().SetMode(ctx, affinity.ModeBlockNewConnection, "maintenance"); err != nil {
		t.Fatal(err)
	}
	mendDir()
	time.Sleep(time.Second) // ten checks
	if m, r := modeOf(t, n.Node, self); m != "block_new_connection" || r != "maintenance" {
		t.Errorf("after the fault the node is %s (%q); want the operator's block_new_connection (maintenance)", m, r)
	}
	if s := saved(); !strings.Contains(s, "maintenance") {
		t.Errorf("mode.json = %s; want the operator's mode", s)
	}
}

// TestNodeBlocksOnMediaSocketFault: a node whose SFU's UDP mux socket
// fails blocks itself, naming the media socket. The socket is the host's,
// opened through a network that lets the test close it under the SFU
// (pionapi.ClosableNet).
func TestNodeBlocksOnMediaSocketFault(t *testing.T) {
	testutil.CheckLeaks(t)
	ip := testutil.LoopbackIP(t)
	rn, err := pionapi.NewClosableNet()
	if err != nil {
		t.Fatal(err)
	}
	cfg := testSoloConfig(t, slog.LevelError)
	cfg.SFU.Net = rn
	cfg.SFU.Network.ListenIP = ip
	cfg.SFU.Network.UDPPort = testutil.FreePort(t, ip)
	cfg.SelfBlock = fastSelfBlock
	n := ntStart(t, cfg)
	self := n.Name()

	c, err := ntClient(t, n.url, "media") // opens the mux socket
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	c.Close()
	waitMode(t, n.Node, self, "normal", "-", 5*time.Second)
	rn.CloseUDP()
	waitMode(t, n.Node, self, "block_new_connection", "media socket", 10*time.Second)
	_, reason := modeOf(t, n.Node, self)
	t.Logf("blocked: %q", reason)
	var ce *client.CloseError
	if _, err := ntClient(t, n.url, "media-after"); !errors.As(err, &ce) || ce.Code != wire.CloseRefused || ce.Reason != "NODE-BLOCKED" {
		t.Errorf("connect after the media socket failed: %v; want refused with %d NODE-BLOCKED", err, wire.CloseRefused)
	}
}
