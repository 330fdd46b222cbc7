package sfu_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"

	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/internal/testutil/pionapi"
	"github.com/shoal-sfu/shoal/sfu"
)

// srRecorder keeps the sender reports a client's receivers get.
type srRecorder struct {
	mu  sync.Mutex
	srs []rtcp.SenderReport
}

// read reads the RTCP of every receiver of pc until it closes.
func (r *srRecorder) read(pc *webrtc.PeerConnection) {
	for _, rcv := range pc.GetReceivers() {
		go func() {
			for {
				pkts, _, err := rcv.ReadRTCP()
				if err != nil {
					return
				}
				r.mu.Lock()
				for _, p := range pkts {
					if sr, ok := p.(*rtcp.SenderReport); ok {
						r.srs = append(r.srs, *sr)
					}
				}
				r.mu.Unlock()
			}
		}()
	}
}

// reports returns the reports received for ssrc.
func (r *srRecorder) reports(ssrc uint32) []rtcp.SenderReport {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []rtcp.SenderReport
	for _, sr := range r.srs {
		if sr.SSRC == ssrc {
			out = append(out, sr)
		}
	}
	return out
}

// TestDirectSendE2E: with the UDP mux, every connection switches to the
// direct send path and real pion clients decrypt what it sends (pion's
// SRTP authentication would refuse a packet under wrong keys or a wrong
// roll-over count), under either SRTP profile Chromium negotiates
// (AES-128-GCM, AES-CM-HMAC-SHA1-80): a publisher's audio and video reach
// its subscribers,
// the packets are counted as sent directly, and the subscribers get sender
// reports whose counts follow what the direct path sent. With
// Config.DisableDirectSend nothing is sent directly and the media still
// flows.
func TestDirectSendE2E(t *testing.T) {
	testutil.CheckLeaks(t)
	for _, off := range []bool{false, true} {
		t.Run(fmt.Sprintf("disabled=%v", off), func(t *testing.T) {
			s := muxSFU(t, func(c *sfu.Config) { c.DisableDirectSend = off })
			pub := join(t, s, clientOpts{channel: "direct", id: "PUB", role: sfu.RoleSendonly, audio: true, video: true})
			rec := &srRecorder{}
			subs := []*testClient{
				join(t, s, clientOpts{channel: "direct", id: "S0", role: sfu.RoleRecvonly}),
				join(t, s, clientOpts{channel: "direct", id: "S1", role: sfu.RoleRecvonly}),
				// the other profile Chromium may negotiate
				join(t, s, clientOpts{channel: "direct", id: "S2", role: sfu.RoleRecvonly, api: pionapi.Local(func(se *webrtc.SettingEngine) {
					se.SetSRTPProtectionProfiles(dtls.SRTP_AES128_CM_HMAC_SHA1_80)
				})}),
			}
			pub.pumpAudio(t)
			pub.writeVideoUntil(t, 5, 10, func() bool {
				for _, c := range subs {
					if len(c.payloads("PUB/PUB-video")) < 100 || len(c.payloads("PUB/PUB-audio")) < 20 {
						return false
					}
				}
				return true
			}, "audio and video to every subscriber")
			rec.read(subs[0].pc)
			st := s.MuxStats()
			t.Logf("mux stats %+v", st)
			if off {
				if st.DirectConns != 0 || st.DirectPackets != 0 {
					t.Errorf("direct send disabled, yet %d connections and %d packets sent directly", st.DirectConns, st.DirectPackets)
				}
				return
			}
			if st.DirectConns != 4 || st.DirectFallback != 0 || st.DirectPackets < 3*120 {
				t.Errorf("%d connections direct, %d through pion, %d packets sent directly; want 4, 0 and at least 360", st.DirectConns, st.DirectFallback, st.DirectPackets)
			}
			// Sender reports count what was sent directly.
			pub.pump(t, 6)
			ssrc := subs[0].ssrcOf("PUB/PUB-video")
			testutil.Eventually(t, func() bool {
				srs := rec.reports(ssrc)
				return len(srs) > 0 && int(srs[len(srs)-1].PacketCount) >= len(subs[0].payloads("PUB/PUB-video"))*9/10
			}, 10*time.Second, "a sender report of the video (SSRC %d) counting what the subscriber got (%d packets); reports: %+v", ssrc, len(subs[0].payloads("PUB/PUB-video")), rec.reports(ssrc))
			srs := rec.reports(ssrc)
			// The report's RTP time is the stream's: the timestamp last
			// sent, advanced by the time since (the pump's timestamps run
			// 3000 a packet, every 5 ms).
			last := srs[len(srs)-1]
			subs[0].mu.Lock()
			var lo, hi uint32 = 1<<32 - 1, 0
			for _, h := range subs[0].hdrs["PUB/PUB-video"] {
				lo, hi = min(lo, h.Timestamp), max(hi, h.Timestamp)
			}
			subs[0].mu.Unlock()
			if last.RTPTime < lo || last.RTPTime > hi+90000 {
				t.Errorf("sender report's RTP time %d outside the timestamps received, %d to %d (+1 s)", last.RTPTime, lo, hi)
			}
			for i := 1; i < len(srs); i++ {
				if srs[i].PacketCount < srs[i-1].PacketCount || srs[i].OctetCount < srs[i-1].OctetCount || srs[i].NTPTime <= srs[i-1].NTPTime {
					t.Errorf("sender reports go back: %+v then %+v", srs[i-1], srs[i])
				}
			}
		})
	}
}

// ssrcOf returns the SSRC of the track received under key.
func (c *testClient) ssrcOf(key string) uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ssrcs[key]
}
