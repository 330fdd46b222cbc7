package cluster

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/shoal-sfu/shoal/affinity"
	"github.com/shoal-sfu/shoal/internal/testutil"
)

func TestRefusals(t *testing.T) {
	testutil.CheckLeaks(t)
	c := newTestCluster(t)
	a, b, tmp := c.add("a", false), c.add("b", false), c.add("t", true)
	ctx := ctxT(t)
	if _, err := b.RegisterClusterNode(ctx, a.self); !errors.Is(err, ErrNotInitialized) {
		t.Fatalf("register to an uninitialised cluster: %v", err)
	}
	if _, err := a.InitCluster(ctx, []string{b.self}); !errors.Is(err, ErrNotInList) {
		t.Fatalf("init without self: %v", err)
	}
	if _, err := a.InitCluster(ctx, []string{a.self, tmp.self}); !errors.Is(err, ErrTemporaryNode) {
		t.Fatalf("init naming a temporary node: %v", err)
	}
	if _, err := a.InitCluster(ctx, []string{a.self, "bad@localhost"}); err == nil || !strings.Contains(err.Error(), "dot") {
		t.Fatalf("init with a bad name: %v", err)
	}
	if _, err := a.ClaimChannel(ctx, "x"); !errors.Is(err, ErrNotInitialized) {
		t.Fatalf("claim before init: %v", err)
	}
	a.Close()
	a.cfg.MaxNodes = 1
	a.start(t)
	if _, err := a.InitCluster(ctx, []string{a.self, b.self}); !errors.Is(err, ErrTooManyNodes) {
		t.Fatalf("init over max_nodes: %v", err)
	}
	if _, err := a.InitCluster(ctx, []string{a.self}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.InitCluster(ctx, []string{a.self}); !errors.Is(err, ErrAlreadyInitialized) {
		t.Fatalf("second init: %v", err)
	}
	if _, err := b.RegisterClusterNode(ctx, a.self); !errors.Is(err, ErrTooManyNodes) {
		t.Fatalf("register over max_nodes: %v", err)
	}
	a.Close()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.ClaimChannel(ctx, "x"); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("claim after close: %v", err)
	}
	if _, err := a.ListClusterNodes(ctx); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("list after close: %v", err)
	}
}

func TestWrongKeyCannotJoin(t *testing.T) {
	c, ns, ctx := runCluster(t, 1)
	intruder := c.addWith("x", false, func(cfg *Config) { cfg.ClusterKey = []byte("another key of thirty-two bytes!") })
	if _, err := intruder.RegisterClusterNode(ctx, ns[0].self); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("register with the wrong key: %v", err)
	}
	if listed(ns[0], intruder.self) {
		t.Fatal("intruder listed")
	}
}

func TestSingleNodeWithoutCluster(t *testing.T) {
	testutil.CheckLeaks(t)
	n := newSolo(t, Config{MaxConnections: 10})
	ctx := ctxT(t)
	if _, err := n.ClaimChannel(ctx, "x"); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("claim before start: %v", err)
	}
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	v := n.Snapshot()
	if !v.InMajority || len(v.Nodes) != 1 || !v.Nodes[0].Connected || v.Settings.Cluster {
		t.Fatalf("view %+v", v)
	}
	if _, err := n.InitCluster(ctx, []string{n.self}); !errors.Is(err, ErrClusterDisabled) {
		t.Fatalf("init with cluster off: %v", err)
	}
	owners, err := n.ClaimChannel(ctx, "x")
	if err != nil || len(owners) != 1 {
		t.Fatal(owners, err)
	}
	n.PublishLoad(3, map[string]int{"x": 3})
	testutil.Eventually(t, func() bool {
		s, ok := n.Snapshot().Sessions["x"]
		return ok && s.Owners[0].Connections == 3 && n.Snapshot().Nodes[0].Connections == 3
	}, time.Second, "load in view")
	if err := n.SetMode(ctx, affinity.ModeBlockNewConnection, "disk full"); err != nil {
		t.Fatal(err)
	}
	if l, _ := n.ListClusterNodes(ctx); l[0].Mode != "block_new_connection" || l[0].ModeReason != "disk full" {
		t.Fatalf("list %+v", l)
	}
	if err := n.ReleaseChannel(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	if _, ok := n.Snapshot().Sessions["x"]; ok {
		t.Fatal("session survived its release")
	}
}
