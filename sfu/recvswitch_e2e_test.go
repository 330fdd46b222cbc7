package sfu_test

import (
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/internal/testutil/pionapi"
	"github.com/shoal-sfu/shoal/sfu"
)

// TestUpstreamSwitchE2E: with the UDP mux a publisher's audio and video
// streams switch to the direct receive path (MuxStats.UpstreamSwitched,
// UpstreamPackets) and keep reaching the subscribers, and pion's receive
// interceptors still see every packet: after the switch the publisher
// gets receiver reports whose highest sequence number follows what it
// sends, a NACK for a packet it skipped, and transport-cc feedback. With
// Config.DisableDirectSend nothing switches and the media still flows.
// With the switch off (no stream switched) it fails.
func TestUpstreamSwitchE2E(t *testing.T) {
	testutil.CheckLeaks(t)
	for _, off := range []bool{false, true} {
		t.Run(fmt.Sprintf("disabled=%v", off), func(t *testing.T) {
			s := muxSFU(t, func(c *sfu.Config) { c.DisableDirectSend = off })
			pub := join(t, s, clientOpts{channel: "upsw", id: "PUB", role: sfu.RoleSendonly, audio: true, video: true, api: twccStampingAPI(t)})
			subs := []*testClient{
				join(t, s, clientOpts{channel: "upsw", id: "S0", role: sfu.RoleRecvonly}),
				join(t, s, clientOpts{channel: "upsw", id: "S1", role: sfu.RoleRecvonly}),
			}
			var skip atomic.Bool     // skip the next sequence number once
			var lastSeq atomic.Int64 // the last video sequence number sent
			seq := uint16(3000)
			every(t, 5*time.Millisecond, func(i int) {
				if skip.CompareAndSwap(true, false) {
					seq++
				}
				p := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: uint32(i) * 3000, SSRC: 1}, Payload: []byte{6, byte(i >> 8), byte(i)}}
				_ = pub.video.WriteRTP(p)
				lastSeq.Store(int64(seq))
				seq++
			})
			// Audio numbered from 5000: a stream whose first packets are
			// numbered just after a wrap (as pumpAudio's, from 0) stays
			// on pion's path (rocEdge).
			every(t, 20*time.Millisecond, func(i int) {
				p := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: uint16(5000 + i), Timestamp: uint32(i) * 960, SSRC: 2}, Payload: []byte{0xA0, byte(i >> 8), byte(i)}}
				_ = pub.audio.WriteRTP(p)
			})
			video, audio := "PUB/PUB-video", "PUB/PUB-audio"
			testutil.Eventually(t, func() bool {
				for _, c := range subs {
					if len(c.payloads(video)) < 100 || len(c.payloads(audio)) < 20 {
						return false
					}
				}
				return true
			}, wait, "audio and video to every subscriber")
			st := s.MuxStats()
			t.Logf("mux stats %+v", st)
			if off {
				if st.UpstreamSwitched != 0 || st.UpstreamPackets != 0 {
					t.Errorf("direct send disabled, yet %d streams switched, %d packets", st.UpstreamSwitched, st.UpstreamPackets)
				}
				return
			}
			testutil.Eventually(t, func() bool {
				st := s.MuxStats()
				return st.UpstreamSwitched == 2 && st.UpstreamPackets >= 50
			}, wait, "the publisher's two streams switched")
			st = s.MuxStats()
			got0, rr0, tcc0, nack0, seq0 := len(subs[1].payloads(video)), pub.rrs.Load(), pub.tccs.Load(), pub.nacks.Load(), lastSeq.Load()
			skip.Store(true)
			var state string
			testutil.Eventually(t, func() bool {
				rr := pub.lastRR.Load()
				state = fmt.Sprintf("NACKs %d (%d before), receiver reports %d (%d before), the last %+v, last sent %d, transport-cc feedback %d (%d before), video received %d (%d before)",
					pub.nacks.Load(), nack0, pub.rrs.Load(), rr0, rr, lastSeq.Load(), pub.tccs.Load(), tcc0, len(subs[1].payloads(video)), got0)
				return pub.nacks.Load() > nack0 && pub.rrs.Load() > rr0 && pub.tccs.Load() > tcc0 &&
					rr != nil && int64(uint16(rr.LastSequenceNumber)) > seq0+100 &&
					len(subs[1].payloads(video)) > got0+100
			}, wait, "after the switch: a NACK, receiver reports following the sequence numbers, transport-cc feedback, media: %s", lazyString{&state})
			t.Logf("%s", state)
			st2 := s.MuxStats()
			if st2.UpstreamPackets < st.UpstreamPackets+100 || st2.RecvDropped != 0 {
				t.Errorf("mux stats after %+v, before %+v: want 100 more packets taken directly, none dropped", st2, st)
			}
			if d := s.Drops(); d.UpstreamQueueFull != 0 {
				t.Errorf("%d packets dropped from full queues", d.UpstreamQueueFull)
			}
		})
	}
}

// TestUpstreamSwitchSimulcast: each simulcast layer (its own SSRC, its
// rid known once pion read its first packets) switches, and a subscriber
// moved from r0 to r2 gets r2's frames through it.
func TestUpstreamSwitchSimulcast(t *testing.T) {
	testutil.CheckLeaks(t)
	s := muxSFU(t, nil)
	pub := join(t, s, clientOpts{channel: "upsw", id: "pub", role: sfu.RoleSendonly, video: true, simulcast: true})
	pub.pumpLayers(t)
	sub := join(t, s, clientOpts{channel: "upsw", id: "sub", role: sfu.RoleRecvonly, rid: sfu.RidR0})
	key := "pub/pub-video"
	var state string
	testutil.Eventually(t, func() bool {
		st := s.MuxStats()
		state = fmt.Sprintf("%+v, %d frames, last layer %c", st, len(sub.frames(key)), lastLayer(sub.frames(key)))
		return st.UpstreamSwitched == 3 && lastLayer(sub.frames(key)) == 'A' && len(sub.frames(key)) > 30
	}, wait, "three layers switched, r0 received: %s", lazyString{&state})
	n0 := s.MuxStats().UpstreamPackets
	if err := sub.conn.SetSimulcastRid("pub", sfu.RidR2); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, func() bool {
		fs := sub.frames(key)
		return lastLayer(fs) == 'C' && s.MuxStats().UpstreamPackets > n0+90
	}, wait, "r2 received through the switched streams")
	t.Logf("mux stats %+v", s.MuxStats())
	checkContinuous(t, sub.frames(key))
	if st := s.MuxStats(); st.RecvDropped != 0 {
		t.Errorf("%d datagrams dropped by the mux reader", st.RecvDropped)
	}
}

// TestUpstreamSwitchWraps: a publisher whose sequence numbers wrap before
// its video switches and twice more after: the rollover counter handed to
// the direct path's SRTP context is right (a wrong one fails every
// packet's authentication: RecvDropped), and the subscriber gets the
// packets sent after the last wrap. The numbers advance by 16 a packet
// (SRTP guesses the counter across any step under 2^15).
func TestUpstreamSwitchWraps(t *testing.T) {
	testutil.CheckLeaks(t)
	s := muxSFU(t, nil)
	pub := join(t, s, clientOpts{channel: "upsw", id: "PUB", role: sfu.RoleSendonly, video: true})
	sub := join(t, s, clientOpts{channel: "upsw", id: "S0", role: sfu.RoleRecvonly})
	const step = 16
	seq := uint16(65536 - 60*step) // within rocGuard of the wrap
	i := 0
	write := func(n int) {
		for range n {
			p := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: uint32(i) * 3000, SSRC: 1}, Payload: []byte{9, byte(i >> 8), byte(i)}}
			if err := pub.video.WriteRTP(p); err != nil {
				t.Fatal(err)
			}
			seq += step
			i++
		}
		time.Sleep(5 * time.Millisecond)
	}
	video := "PUB/PUB-video"
	// Until the stream switched: that is after the first wrap.
	testutil.Eventually(t, func() bool {
		write(4)
		return s.MuxStats().UpstreamSwitched == 1
	}, wait, "the video switched")
	if i < 60 {
		t.Fatalf("switched after %d packets, before the wrap at 60", i)
	}
	// Two more wraps.
	end := i + 2*65536/step + 100
	for i < end {
		write(8)
	}
	testutil.Eventually(t, func() bool {
		ps := sub.payloads(video)
		if len(ps) == 0 {
			return false
		}
		last := ps[len(ps)-1]
		return len(last) == 3 && int(last[1])<<8|int(last[2]) >= end-100
	}, wait, "the packets after the wraps reach the subscriber")
	st := s.MuxStats()
	t.Logf("mux stats %+v, %d packets sent", st, i)
	if st.RecvDropped != 0 || st.UpstreamPackets < uint64(2*65536/step) {
		t.Errorf("%d datagrams dropped (authentication), %d packets taken directly; want 0 and at least %d", st.RecvDropped, st.UpstreamPackets, 2*65536/step)
	}
}

// lazyString prints what *s holds when printed: a condition's last state
// in a failure message.
type lazyString struct{ s *string }

func (l lazyString) String() string { return *l.s }

// twccStampingAPI is pionapi.Local's API whose senders also stamp the
// transport-wide sequence number, as browsers do (pion's default
// interceptors generate transport-cc feedback but do not stamp), so that
// the SFU sends a publisher transport-cc feedback.
func twccStampingAPI(t testing.TB) *webrtc.API {
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		t.Fatal(err)
	}
	if err := webrtc.ConfigureTWCCHeaderExtensionSender(m, ir); err != nil {
		t.Fatal(err)
	}
	se := webrtc.SettingEngine{}
	pionapi.Quiet(&se)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
}

// TestUpstreamSwitchFollowsPair: a publisher taken off the direct path
// while its video is switched (its selected pair no longer on the mux, as
// far as the SFU knows) goes back to pion's read stream, and its video
// still reaches the subscriber; back on the path it switches again. With
// the streams left switched the video stops and the test fails.
func TestUpstreamSwitchFollowsPair(t *testing.T) {
	testutil.CheckLeaks(t)
	s := muxSFU(t, nil)
	pub := join(t, s, clientOpts{channel: "upsw", id: "PUB", role: sfu.RoleSendonly, video: true})
	sub := join(t, s, clientOpts{channel: "upsw", id: "S0", role: sfu.RoleRecvonly})
	every(t, 5*time.Millisecond, func(i int) { // numbered from 5000 (rocEdge)
		p := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(5000 + i), Timestamp: uint32(i) * 3000, SSRC: 1}, Payload: []byte{4, byte(i >> 8), byte(i)}}
		_ = pub.video.WriteRTP(p)
	})
	video := "PUB/PUB-video"
	testutil.Eventually(t, func() bool {
		return s.MuxStats().UpstreamSwitched == 1 && len(sub.payloads(video)) > 50
	}, wait, "the video switched and reaches the subscriber")
	sfu.DirectFollow(pub.conn, false)
	n0, up0 := len(sub.payloads(video)), s.MuxStats().UpstreamPackets
	testutil.Eventually(t, func() bool { return len(sub.payloads(video)) > n0+100 }, wait, "the video through pion's path")
	if up := s.MuxStats().UpstreamPackets; up > up0+5 {
		t.Errorf("%d packets taken directly off the direct path", up-up0)
	}
	sfu.DirectFollow(pub.conn, true)
	n1 := len(sub.payloads(video))
	testutil.Eventually(t, func() bool {
		st := s.MuxStats()
		return st.UpstreamSwitched == 2 && st.UpstreamPackets > up0+50 && len(sub.payloads(video)) > n1+100
	}, wait, "switched again, the video still flowing")
	if st := s.MuxStats(); st.RecvDropped != 0 {
		t.Errorf("%d datagrams dropped by the mux reader", st.RecvDropped)
	}
}
