package redischannel

import (
	"sync"
	"testing"
	"time"

	"github.com/shoal-sfu/shoal/cluster/multicluster"
	"github.com/shoal-sfu/shoal/internal/testutil"
)

var startRedis = testutil.Redis

func newChannel(t *testing.T, url, svc string) *Channel {
	t.Helper()
	c, err := New(url, svc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func gw(addr, cid string, st multicluster.Status, v uint64) multicluster.Gateway {
	return multicluster.Gateway{Addr: addr, ClusterID: cid, Node: "n@" + cid + ".example", Status: st, Version: v}
}

func data(gs ...multicluster.Gateway) multicluster.Data {
	d := multicluster.Data{Gateways: map[string]multicluster.Gateway{}}
	for _, g := range gs {
		d.Gateways[g.Addr] = g
	}
	return d
}

func TestPublishSynchronize(t *testing.T) {
	testutil.CheckLeaks(t)
	url, _ := startRedis(t)
	ctx := testutil.Context(t, 10*time.Second)
	a := newChannel(t, url, "svc")
	cfg := &multicluster.Configuration{Clusters: []string{"eu", "jp"}, Version: 1, Writer: "x@10.0.0.1"}
	mine := data(gw("10.0.0.1:7000", "jp", multicluster.Active, 3))
	mine.Config = cfg
	if err := a.Publish(ctx, mine); err != nil {
		t.Fatal(err)
	}
	// Another node that knows an older jp entry and its own eu entry.
	b := newChannel(t, url, "svc")
	theirs := data(gw("10.0.0.1:7000", "jp", multicluster.Active, 1), gw("10.0.1.1:7000", "eu", multicluster.Active, 1))
	got, err := b.Synchronize(ctx, theirs)
	if err != nil {
		t.Fatal(err)
	}
	if got.Config == nil || got.Config.Version != 1 || len(got.Gateways) != 1 || got.Gateways["10.0.0.1:7000"].Version != 3 {
		t.Fatalf("Synchronize returned %+v, want the configuration and the jp entry at v3", got)
	}
	// The channel kept the newer jp entry and took eu.
	all, err := a.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if all.Gateways["10.0.0.1:7000"].Version != 3 || all.Gateways["10.0.1.1:7000"].Version != 1 {
		t.Fatalf("channel holds %+v", all)
	}
	// A node up to date gets nothing back.
	if got, err := a.Synchronize(ctx, all); err != nil || !got.Empty() {
		t.Fatalf("Synchronize of everything = %+v, %v; want nothing", got, err)
	}
}

// TestStaleWriterNeverOverwrites: many writers race versions of one entry;
// the channel ends with the highest, never with a lower one written after
// it. Without the script's check (a plain HSET), a late low version wins.
func TestStaleWriterNeverOverwrites(t *testing.T) {
	testutil.CheckLeaks(t)
	url, _ := startRedis(t)
	ctx := testutil.Context(t, 20*time.Second)
	c := newChannel(t, url, "svc")
	const writers, per = 8, 40
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range per {
				// Writers interleave high and low versions.
				v := uint64(1 + (i*writers+w*7)%(writers*per))
				if err := c.Publish(ctx, data(gw("10.0.0.1:7000", "jp", multicluster.Active, v))); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	// Then, one more stale write after the newest.
	if err := c.Publish(ctx, data(gw("10.0.0.1:7000", "jp", multicluster.Active, 2))); err != nil {
		t.Fatal(err)
	}
	all, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	max := uint64(0)
	for w := range writers {
		for i := range per {
			max = maxU(max, uint64(1+(i*writers+w*7)%(writers*per)))
		}
	}
	if got := all.Gateways["10.0.0.1:7000"].Version; got != max {
		t.Fatalf("channel holds version %d, want the highest written, %d", got, max)
	}
	// At an equal version, inactive wins, as in Merge.
	if err := c.Publish(ctx, data(gw("10.0.0.1:7000", "jp", multicluster.Inactive, max))); err != nil {
		t.Fatal(err)
	}
	if err := c.Publish(ctx, data(gw("10.0.0.1:7000", "jp", multicluster.Active, max))); err != nil {
		t.Fatal(err)
	}
	if all, _ = c.Read(ctx); all.Gateways["10.0.0.1:7000"].Status != multicluster.Inactive {
		t.Fatalf("an active entry at the same version replaced the inactive one: %+v", all.Gateways)
	}
}

func maxU(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}

// TestServicesApart: two services on one Redis never see each other's
// entries.
func TestServicesApart(t *testing.T) {
	testutil.CheckLeaks(t)
	url, _ := startRedis(t)
	ctx := testutil.Context(t, 10*time.Second)
	a, b := newChannel(t, url, "svc-a"), newChannel(t, url, "svc-b")
	if err := a.Publish(ctx, data(gw("10.0.0.1:7000", "jp", multicluster.Active, 1))); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Read(ctx); err != nil || !got.Empty() {
		t.Fatalf("service b reads %+v, %v; want nothing", got, err)
	}
	if _, err := New(url, "bad service"); err == nil {
		t.Fatal("a service id with a space was accepted")
	}
}

// TestMalformedSkipped: an entry someone else wrote into the hash is
// skipped and counted, and the rest is read.
func TestMalformedSkipped(t *testing.T) {
	testutil.CheckLeaks(t)
	url, _ := startRedis(t)
	ctx := testutil.Context(t, 10*time.Second)
	c := newChannel(t, url, "svc")
	if err := c.Publish(ctx, data(gw("10.0.0.1:7000", "jp", multicluster.Active, 1))); err != nil {
		t.Fatal(err)
	}
	c.rdb.HSet(ctx, c.entries, "gw:10.0.0.9:1", `{"addr":"10.0.0.9:1","cluster":"a,b","node":"x","status":1,"v":1}`,
		"gw:junk", "{", "other", "1")
	got, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Gateways) != 1 || c.Malformed() != 3 {
		t.Fatalf("read %+v with %d malformed, want the good entry and 3 malformed", got, c.Malformed())
	}
}

// TestOneChannelDown: with two channels, one stopped, SynchronizeAll
// still answers from the other and reports the failed one; with both
// down it fails.
func TestOneChannelDown(t *testing.T) {
	testutil.CheckLeaks(t)
	url1, kill1 := startRedis(t)
	url2, kill2 := startRedis(t)
	ctx := testutil.Context(t, 20*time.Second)
	c1, c2 := newChannel(t, url1, "svc"), newChannel(t, url2, "svc")
	if err := c2.Publish(ctx, data(gw("10.0.1.1:7000", "eu", multicluster.Active, 4))); err != nil {
		t.Fatal(err)
	}
	kill1()
	chans := []multicluster.GossipChannel{c1, c2}
	got, failed, err := multicluster.SynchronizeAll(ctx, chans, multicluster.Data{})
	if err != nil {
		t.Fatalf("SynchronizeAll with one channel up: %v", err)
	}
	if len(failed) != 1 || got.Gateways["10.0.1.1:7000"].Version != 4 {
		t.Fatalf("got %+v, failed %v; want the eu entry and one failure", got, failed)
	}
	kill2()
	if _, failed, err := multicluster.SynchronizeAll(ctx, chans, multicluster.Data{}); err == nil || len(failed) != 2 {
		t.Fatalf("SynchronizeAll with both down = %v (%d failed), want an error", err, len(failed))
	}
}
