package cluster

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoal-sfu/shoal/affinity"
)

// TestSwapMode: SwapMode sets the mode only while it is still the one
// given, keeps it out of mode.json, and a restart comes back in the mode
// SetMode saved.
func TestSwapMode(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.DataDir = dir
	ctx := context.Background()
	n := newSolo(t, cfg)
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := n.SetMode(ctx, affinity.ModeBlockNewSession, "draining"); err != nil {
		t.Fatal(err)
	}
	const block = affinity.ModeBlockNewConnection
	if ok, err := n.SwapMode(affinity.ModeNormal, "", block, "fault"); ok || err != nil {
		t.Fatalf("SwapMode from a mode the node is not in: %v, %v; want false, nil", ok, err)
	}
	if ok, err := n.SwapMode(affinity.ModeBlockNewSession, "draining", block, "fault"); !ok || err != nil {
		t.Fatalf("SwapMode from the node's mode: %v, %v; want true, nil", ok, err)
	}
	if m, r := n.Mode(); m != block || r != "fault" {
		t.Fatalf("Mode after SwapMode = %v %q", m, r)
	}
	if mode, reason := modeOf(t, n, n.self); mode != "block_new_connection" || reason != "fault" {
		t.Fatalf("listed in mode %q (%q) after SwapMode", mode, reason)
	}
	if v := n.Snapshot(); v.Nodes[0].Mode != block {
		t.Fatalf("the view says mode %v after SwapMode", v.Nodes[0].Mode)
	}
	b, err := os.ReadFile(filepath.Join(dir, modeFileName))
	if err != nil || strings.Contains(string(b), "fault") || !strings.Contains(string(b), "draining") {
		t.Fatalf("mode.json = %s (%v); want the mode SetMode saved", b, err)
	}
	n.Close()
	n = newSolo(t, cfg)
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if m, r := n.Mode(); m != affinity.ModeBlockNewSession || r != "draining" {
		t.Fatalf("after a restart: mode %v %q; want block_new_session (draining)", m, r)
	}
	n.Close()
	if _, err := n.SwapMode(block, "x", affinity.ModeNormal, ""); err == nil {
		t.Fatal("SwapMode on a closed node succeeded")
	}
}
