package cluster

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-sfu/shoal/affinity"
	"github.com/shoal-sfu/shoal/internal/testutil"
)

// modeOf returns the mode and reason from lists for the node named name.
func modeOf(t *testing.T, from *Node, name string) (string, string) {
	t.Helper()
	l, err := from.ListClusterNodes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range l {
		if s.Name == name {
			return s.Mode, s.ModeReason
		}
	}
	return "", ""
}

// TestModeKeptAcrossRestart: a regular node restarted from its DataDir is
// back in the mode it was set to, with the reason, at once and in the
// others' listings; a temporary node (no DataDir) starts normal.
func TestModeKeptAcrossRestart(t *testing.T) {
	c, ns, ctx := runCluster(t, 3)
	n := ns[2]
	if err := n.SetMode(ctx, affinity.ModeBlockNewConnection, "disk replacement"); err != nil {
		t.Fatal(err)
	}
	n.restart(t)
	if mode, reason := modeOf(t, n.Node, n.self); mode != "block_new_connection" || reason != "disk replacement" {
		t.Fatalf("after a restart %s is in mode %q (%q), want block_new_connection (disk replacement)", n.self, mode, reason)
	}
	c.waitMajority(n, true, 15*time.Second)
	testutil.Eventually(t, func() bool {
		mode, reason := modeOf(t, ns[0].Node, n.self)
		return connected(ns[0], n.self) && mode == "block_new_connection" && reason == "disk replacement"
	}, 10*time.Second, "%s sees the restarted node's mode", ns[0].self)

	// Back to normal, and so after the next restart.
	if err := n.SetMode(ctx, affinity.ModeNormal, ""); err != nil {
		t.Fatal(err)
	}
	n.restart(t)
	if mode, reason := modeOf(t, n.Node, n.self); mode != "normal" || reason != "" {
		t.Fatalf("after a restart %s is in mode %q (%q), want normal", n.self, mode, reason)
	}
	c.waitMajority(n, true, 15*time.Second)

	tmp := c.add("tmp", true)
	if err := tmp.SetMode(ctx, affinity.ModeBlockNewSession, "draining"); err != nil {
		t.Fatal(err)
	}
	tmp.restart(t)
	if mode, _ := modeOf(t, tmp.Node, tmp.self); mode != "normal" {
		t.Fatalf("a temporary node keeps nothing, yet restarted in mode %q", mode)
	}
}

// TestModeKeptWithoutCluster: a node with clustering off keeps its mode
// in its DataDir too; a mode file it cannot read stops it from starting,
// naming the file.
func TestModeKeptWithoutCluster(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.DataDir = dir
	start := func() (*Node, error) {
		n := newSolo(t, cfg)
		return n, n.Start(context.Background())
	}
	n, err := start()
	if err != nil {
		t.Fatal(err)
	}
	if err := n.SetMode(context.Background(), affinity.ModeBlockNewSession, "maintenance"); err != nil {
		t.Fatal(err)
	}
	n.Close()
	n, err = start()
	if err != nil {
		t.Fatal(err)
	}
	if mode, reason := modeOf(t, n, n.self); mode != "block_new_session" || reason != "maintenance" {
		t.Fatalf("after a restart: mode %q (%q), want block_new_session (maintenance)", mode, reason)
	}
	if v := n.Snapshot(); v.Nodes[0].Mode != affinity.ModeBlockNewSession {
		t.Fatalf("the view says mode %v", v.Nodes[0].Mode)
	}
	n.Close()

	path := filepath.Join(dir, modeFileName)
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := start(); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("start with a damaged mode file: %v, want an error naming %s", err, path)
	}
}
