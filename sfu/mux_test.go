package sfu_test

import (
	"fmt"
	"testing"

	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/sfu"
)

// muxSFU is an SFU whose connections share one UDP port on loopback.
func muxSFU(t testing.TB, set func(*sfu.Config)) *sfu.SFU {
	ip := testutil.LoopbackIP(t)
	port := testutil.FreePort(t, ip)
	return newSFU(t, func(c *sfu.Config) {
		c.Network.UDPPort = port
		c.Network.ListenIP = ip
		c.Network.IPFilter = nil
		if set != nil {
			set(c)
		}
	})
}

// With the UDP mux, a fan-out's packets go out in batches: the mean batch
// of what was sent while one publisher's video reached 4 subscribers is
// above one packet. With Config.DisableBatchedSends nothing is batched and
// the media still flows.
func TestMuxBatchedSends(t *testing.T) {
	testutil.CheckLeaks(t)
	for _, off := range []bool{false, true} {
		t.Run(fmt.Sprintf("disabled=%v", off), func(t *testing.T) {
			s := muxSFU(t, func(c *sfu.Config) { c.DisableBatchedSends = off })
			pub := join(t, s, clientOpts{channel: "mux", id: "PUB", role: sfu.RoleSendonly, video: true})
			var subs []*testClient
			for i := range 4 {
				subs = append(subs, join(t, s, clientOpts{channel: "mux", id: fmt.Sprintf("S%d", i), role: sfu.RoleRecvonly}))
			}
			before := s.MuxStats()
			pub.writeVideoUntil(t, 5, 10, func() bool {
				for _, c := range subs {
					if len(c.payloads("PUB/PUB-video")) < 30 {
						return false
					}
				}
				return true
			}, "media through the mux to every subscriber")
			st := s.MuxStats()
			t.Logf("mux stats %+v (before the media: %+v)", st, before)
			if off {
				st.DirectConns, st.DirectPackets, st.DirectFallback = 0, 0, 0 // the direct path (direct.go) needs no batching
				if st != (sfu.MuxStats{}) {
					t.Errorf("batched sends disabled, yet stats %+v", st)
				}
				return
			}
			calls, sent := st.Calls-before.Calls, st.Datagrams-before.Datagrams
			if !st.Batched || sent < 4*30 || float64(sent)/float64(calls) < 1.5 || st.Failed != 0 {
				t.Errorf("%d packets in %d calls (%d failed); want at least 120 in batches of 1.5 or more on average", sent, calls, st.Failed)
			}
		})
	}
}
