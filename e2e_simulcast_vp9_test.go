package shoal_test

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/shoal-sfu/shoal/internal/testutil"
)

// withCodec returns a simulcastPage URL with the publisher's codec set.
func withCodec(t *testing.T, page, codec string) string {
	t.Helper()
	u, err := url.Parse(page)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("vcodec", codec)
	u.RawQuery = q.Encode()
	return u.String()
}

// TestE2ESimulcastVP9: the published sora-js-sdk publishes with
// simulcast: true and videoCodecType VP9: Chromium sends three VP9 rids,
// each with three temporal layers (scalabilityMode L1T3, which is what the
// forwarder's VP9 temporal layer steps read: TID and switching up point in
// the payload descriptor); a recvonly page with simulcastRid r0 decodes
// VP9 at a smaller frame size than one with r2.
func TestE2ESimulcastVP9(t *testing.T) {
	requireBrowser(t)
	dir := soraSDKDir(t)
	nodes := e2eCluster(t, false)
	r := newReports(t)
	serveSDK(t, r, dir)
	sims := serveSimulcast(t, r)
	node := nodes[0]
	simulcastPublisher(t, r, sims, withCodec(t, simulcastURL(r, node, "pub", "sendonly", ""), "VP9"))
	out := sims.get("pub").Out
	for _, rid := range []string{"r0", "r1", "r2"} {
		o := out[rid]
		t.Logf("publisher's %s: %s %dx%d, scalabilityMode %q", rid, o.Codec, o.Width, o.Height, o.Mode)
		if !strings.EqualFold(o.Codec, "video/VP9") {
			t.Errorf("publisher's %s is %q, want video/VP9", rid, o.Codec)
		}
		if o.Mode != "L1T3" {
			t.Errorf("publisher's %s has scalabilityMode %q, want L1T3 (three temporal layers)", rid, o.Mode)
		}
	}
	r.open(simulcastURL(r, node, "lo", "recvonly", "r0"), simulcastURL(r, node, "hi", "recvonly", "r2"))
	testutil.Eventually(t, func() bool {
		lo, hi := sims.get("lo").inbound(), sims.get("hi").inbound()
		return lo.Frames > 30 && hi.Frames > 30 && lo.Height > 0 && lo.Height < hi.Height
	}, 60*time.Second, "the r0 receiver decodes a smaller frame than the r2 receiver")
	lo, hi := sims.get("lo").inbound(), sims.get("hi").inbound()
	t.Logf("r0 receiver decodes %s %dx%d, r2 receiver %s %dx%d", lo.Codec, lo.Width, lo.Height, hi.Codec, hi.Width, hi.Height)
	for _, in := range []rtpStats{lo, hi} {
		if !strings.EqualFold(in.Codec, "video/VP9") {
			t.Errorf("a receiver decodes %q, want video/VP9", in.Codec)
		}
	}
}
