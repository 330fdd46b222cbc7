package relay

import (
	"testing"
	"time"

	"github.com/shoal-sfu/shoal/internal/testutil"
)

// TestLinksDown: a peer is down from when it is named until its link is
// up, absent while it is up, and down again, since about the moment the
// link broke, after the cable is pulled; back up, it is absent again.
func TestLinksDown(t *testing.T) {
	testutil.CheckLeaks(t)
	fn := NewFaultNet()
	a := startNode(t, "a", testKey, func(c *Config) { c.Net = fn })
	b := startNode(t, "b", testKey, func(c *Config) { c.Net = fn })
	named := time.Now()
	if err := a.SetPeer(b.name, b.Addr()); err != nil {
		t.Fatal(err)
	}
	if since, ok := a.LinksDown()[b.name]; ok && since.Before(named) {
		t.Errorf("a link named at %v down since %v", named, since)
	}
	if err := b.SetPeer(a.name, a.Addr()); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, func() bool { return len(a.LinksDown()) == 0 && len(b.LinksDown()) == 0 },
		5*time.Second, "the link up: a %v, b %v", a.LinksDown(), b.LinksDown())

	pullCable(fn, a, b, true)
	cut := time.Now()
	testutil.Eventually(t, func() bool {
		_, da := a.LinksDown()[b.name]
		_, db := b.LinksDown()[a.name]
		return da && db
	}, a.cfg.LinkTimeout+2*time.Second, "both ends down after the cable was pulled")
	for _, n := range []*node{a, b} {
		for peer, since := range n.LinksDown() {
			if since.Before(cut) || time.Since(since) > time.Second {
				t.Errorf("%s: link to %s down since %v; the cable was pulled at %v", n.name, peer, since, cut)
			}
		}
	}
	pullCable(fn, a, b, false)
	testutil.Eventually(t, func() bool { return len(a.LinksDown()) == 0 && len(b.LinksDown()) == 0 },
		10*time.Second, "the link back up: a %v, b %v", a.LinksDown(), b.LinksDown())
}
