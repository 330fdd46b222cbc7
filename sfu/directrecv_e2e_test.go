package sfu_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/internal/testutil/pionapi"
	"github.com/shoal-sfu/shoal/sfu"
)

// recvRig is a subscriber (a pion peer on the UDP mux, keeping the
// retransmitted copies of packets it has) of a remote video track whose
// keyframe requests are counted, and a publisher of its own video.
type recvRig struct {
	s    *sfu.SFU
	sub  *testClient
	w    *sfu.TrackWriter
	ssrc uint32 // the track's SSRC as the subscriber sees it
	kf   atomic.Int64
	seq  atomic.Uint32
}

func newRecvRig(t *testing.T, s *sfu.SFU, channelID string) *recvRig {
	r := &recvRig{s: s}
	api := pionapi.Local(func(se *webrtc.SettingEngine) { se.DisableSRTPReplayProtection(true) })
	r.sub = join(t, s, clientOpts{channel: channelID, id: "SUB", role: sfu.RoleRecvonly, api: api})
	ch := channel(t, s, channelID)
	r.w = addRemoteVideo(t, ch, "v", "FAR", sfu.KeyframeRequesterFunc(func() { r.kf.Add(1) }))
	testutil.Eventually(t, func() bool {
		r.send()
		return len(r.sub.payloads("FAR/v")) >= 5
	}, wait, "subscriber receives")
	r.sub.mu.Lock()
	r.ssrc = r.sub.ssrcs["FAR/v"]
	r.sub.mu.Unlock()
	return r
}

// send writes the track's next packet (its payload: 0xEE, then the
// sequence number).
func (r *recvRig) send() {
	seq := uint16(r.seq.Add(1) - 1)
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: uint32(seq) * 3000, SSRC: 9}, Payload: []byte{0xEE, byte(seq >> 8), byte(seq)}}
	b, _ := p.Marshal()
	_ = r.w.WriteRTP(b)
}

// nackAnswered has the subscriber NACK a packet it has until it gets the
// packet again.
func (r *recvRig) nackAnswered(t *testing.T) {
	t.Helper()
	got := r.sub.payloads("FAR/v")
	last := got[len(got)-1]
	lost := uint16(last[1])<<8 | uint16(last[2])
	count := func() int {
		n := 0
		for _, p := range r.sub.payloads("FAR/v") {
			if uint16(p[1])<<8|uint16(p[2]) == lost {
				n++
			}
		}
		return n
	}
	testutil.Eventually(t, func() bool {
		r.send()
		_ = r.sub.pc.WriteRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{MediaSSRC: r.ssrc, Nacks: []rtcp.NackPair{{PacketID: lost}}}})
		return count() >= 2
	}, wait, "packet %d retransmitted after a NACK", lost)
}

// pliPasses has the subscriber send PLIs until the track's origin is asked
// for a keyframe.
func (r *recvRig) pliPasses(t *testing.T) {
	t.Helper()
	base := r.kf.Load()
	testutil.Eventually(t, func() bool {
		r.send()
		_ = r.sub.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: r.ssrc}})
		return r.kf.Load() > base
	}, wait, "a PLI reaches the track's origin")
}

// On the UDP mux a subscriber's RTCP takes the direct receive path: its
// NACKs are answered, its PLIs reach the track's origin, and what it
// sends while it only receives media (transport-cc feedback ten times a
// second, a receiver report a second) is taken too; none is dropped. A
// publisher's sender reports go to pion. With Config.DisableDirectSend, and
// without the mux, all of it works through pion and nothing is taken.
func TestDirectRecvRTCPE2E(t *testing.T) {
	testutil.CheckLeaks(t)
	for _, tc := range []struct {
		name string
		new  func(t *testing.T) *sfu.SFU
	}{
		{"direct", func(t *testing.T) *sfu.SFU { return muxSFU(t, nil) }},
		{"disabled", func(t *testing.T) *sfu.SFU { return muxSFU(t, func(c *sfu.Config) { c.DisableDirectSend = true }) }},
		{"nomux", func(t *testing.T) *sfu.SFU { return newSFU(t, nil) }},
	} {
		off := tc.name != "direct"
		t.Run(tc.name, func(t *testing.T) {
			s := tc.new(t)
			r := newRecvRig(t, s, "drecv")
			pub := join(t, s, clientOpts{channel: "drecv", id: "PUB", role: sfu.RoleSendonly, video: true})
			pub.pump(t, 3)

			st0 := s.MuxStats()
			r.nackAnswered(t)
			st1 := s.MuxStats()
			r.pliPasses(t)
			st2 := s.MuxStats()
			// a second of media only: the subscriber's feedback
			for range 200 {
				r.send()
				time.Sleep(5 * time.Millisecond)
			}
			st3 := s.MuxStats()
			t.Logf("RTCP taken: %d before the NACK, %d after, %d after the PLI, %d after a second of media; %d to pion, %d dropped",
				st0.RecvRTCP, st1.RecvRTCP, st2.RecvRTCP, st3.RecvRTCP, st3.RecvToPion, st3.RecvDropped)
			if off {
				if st3.RecvRTCP != 0 || st3.RecvToPion != 0 || st3.RecvDropped != 0 {
					t.Errorf("no direct path, yet %+v", st3)
				}
				return
			}
			switch {
			case st1.RecvRTCP <= st0.RecvRTCP:
				t.Error("the NACKs were not taken directly")
			case st2.RecvRTCP <= st1.RecvRTCP:
				t.Error("the PLIs were not taken directly")
			case st3.RecvRTCP < st2.RecvRTCP+5:
				t.Errorf("%d datagrams taken in a second of media, want the feedback's (5 at least)", st3.RecvRTCP-st2.RecvRTCP)
			}
			if st3.RecvDropped != 0 {
				t.Errorf("%d datagrams dropped", st3.RecvDropped)
			}
			testutil.Eventually(t, func() bool { return s.MuxStats().RecvToPion > 0 }, wait, "the publisher's sender reports given to pion")
		})
	}
}

// ICE keeps a connection on the direct receive path alive: pion's agent
// now sees only STUN from the client (its checks, the responses to the
// SFU's keepalives), not the media and RTCP, and must not take the pair
// for dead. With ICE timeouts shortened to 3 s (disconnected) and 5 s
// (failed), keepalives every 2 s as pion's default, 8 s of media and
// feedback leave the SFU's side connected, and the subscriber receiving.
func TestDirectRecvICEAlive(t *testing.T) {
	testutil.CheckLeaks(t)
	s := muxSFU(t, nil)
	sfu.SetICETimeouts(s, 3*time.Second, 5*time.Second, 2*time.Second)
	r := newRecvRig(t, s, "alive")
	var (
		mu     sync.Mutex
		states []webrtc.ICEConnectionState
	)
	sfu.OnICEState(r.sub.conn, func(st webrtc.ICEConnectionState) {
		mu.Lock()
		states = append(states, st)
		mu.Unlock()
	})
	taken := s.MuxStats().RecvRTCP
	end := time.Now().Add(8 * time.Second)
	for time.Now().Before(end) {
		r.send()
		time.Sleep(5 * time.Millisecond)
	}
	before := len(r.sub.payloads("FAR/v"))
	for range 40 {
		r.send()
		time.Sleep(5 * time.Millisecond)
	}
	testutil.Eventually(t, func() bool { return len(r.sub.payloads("FAR/v")) > before }, wait, "subscriber still receives")
	mu.Lock()
	defer mu.Unlock()
	if len(states) != 0 {
		t.Errorf("the SFU's ICE went %v while media and RTCP flowed", states)
	}
	select {
	case <-r.sub.conn.Done():
		t.Errorf("connection closed: %v", r.sub.conn.Err())
	default:
	}
	if n := s.MuxStats().RecvRTCP - taken; n < 40 {
		t.Errorf("%d RTCP datagrams taken directly in 8 s, want the feedback's (40 at least)", n)
	}
}
