package sfu_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtcp"

	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/sfu"
)

// An RTCP compound packet larger than pion's default receive MTU (1460
// bytes) still reaches the SFU. pion clients send transport-cc feedback of
// that size when many packets arrive within one feedback interval; pion's
// default would drop it, with an error line each time, before SRTCP.
func TestLargeRTCPReachesSFU(t *testing.T) {
	testutil.CheckLeaks(t)
	s := newSFU(t, func(c *sfu.Config) { c.KeyframeInterval = 50 * time.Millisecond })
	ch := channel(t, s, "mtu")
	var requests atomic.Int64
	w := addRemoteVideo(t, ch, "v", "REMOTE", sfu.KeyframeRequesterFunc(func() { requests.Add(1) }))
	sub := join(t, s, clientOpts{channel: "mtu", id: "SUB", role: sfu.RoleRecvonly})
	ssrc := remoteSSRC(t, w, sub, "REMOTE/v")
	testutil.Eventually(t, func() bool { return requests.Load() >= 1 }, wait, "the new subscriber's request passes")

	// Two receiver reports of 31 blocks each, then the PLI: 1,524 bytes
	// before SRTCP adds its index and tag.
	rr := func(base uint32) *rtcp.ReceiverReport {
		r := &rtcp.ReceiverReport{SSRC: 1}
		for i := range uint32(31) {
			r.Reports = append(r.Reports, rtcp.ReceptionReport{SSRC: base + i})
		}
		return r
	}
	pkts := []rtcp.Packet{rr(1000), rr(2000), &rtcp.PictureLossIndication{MediaSSRC: ssrc}}
	b, err := rtcp.Marshal(pkts)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) <= 1460 {
		t.Fatalf("the compound is %d bytes, not above 1460", len(b))
	}
	time.Sleep(100 * time.Millisecond) // past the keyframe interval
	base := requests.Load()
	testutil.Eventually(t, func() bool {
		if err := sub.pc.WriteRTCP(pkts); err != nil {
			t.Fatal(err)
		}
		return requests.Load() > base
	}, 5*time.Second, "a %d-byte RTCP compound's PLI reaches the publisher", len(b))
}
