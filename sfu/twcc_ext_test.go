package sfu_test

import (
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/internal/testutil/pionapi"
	"github.com/shoal-sfu/shoal/sfu"
)

// clientAPI returns a client API with pion's default codecs, the audio
// level and abs-send-time extensions when exts, and with transport-cc
// (pion's default interceptors) or without it (NACK and reports only: a
// client that sends REMB instead).
func clientAPI(t testing.TB, exts, transportCC bool) *webrtc.API {
	t.Helper()
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	if exts {
		for _, e := range []struct {
			uri   string
			kinds []webrtc.RTPCodecType
		}{
			{sdp.AudioLevelURI, []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio}},
			{sdp.ABSSendTimeURI, []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo}},
		} {
			for _, k := range e.kinds {
				if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: e.uri}, k); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	ir := &interceptor.Registry{}
	if transportCC {
		if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
			t.Fatal(err)
		}
	} else {
		if err := webrtc.ConfigureNack(m, ir); err != nil {
			t.Fatal(err)
		}
		if err := webrtc.ConfigureRTCPReports(ir); err != nil {
			t.Fatal(err)
		}
		m.RegisterFeedback(webrtc.RTCPFeedback{Type: "goog-remb"}, webrtc.RTPCodecTypeVideo)
	}
	se := webrtc.SettingEngine{}
	pionapi.Quiet(&se)
	se.SetIPFilter(sfu.LocalConfig(nil).Network.IPFilter)
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
}

// extmapID returns the id an SDP gives the extension uri, 0 if none.
func extmapID(sdpText, uri string) uint8 {
	for _, l := range strings.Split(sdpText, "\r\n") {
		if v, ok := strings.CutPrefix(l, "a=extmap:"); ok && strings.HasSuffix(v, " "+uri) {
			id, _ := strconv.Atoi(strings.Fields(v)[0])
			return uint8(id)
		}
	}
	return 0
}

func (c *testClient) headers(key string) []rtp.Header {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]rtp.Header(nil), c.hdrs[key]...)
}

// TestHeaderExtensionsForwarded: the publisher's audio level reaches a
// subscriber that negotiated it, under the subscriber's id, and one that
// did not gets no extension; every packet sent to a subscriber that
// negotiated them carries abs-send-time and a transport-wide sequence
// number, consecutive across its streams.
func TestHeaderExtensionsForwarded(t *testing.T) {
	s := newSFU(t, nil)
	pub := join(t, s, clientOpts{channel: "ext", id: "pub", role: sfu.RoleSendonly, audio: true, video: true, api: clientAPI(t, true, true)})
	sub := join(t, s, clientOpts{channel: "ext", id: "sub", role: sfu.RoleRecvonly, api: clientAPI(t, true, true)})
	plain := join(t, s, clientOpts{channel: "ext", id: "plain", role: sfu.RoleRecvonly, api: clientAPI(t, false, true)})

	offer := pub.conn.Offer().SDP
	pubLevel := extmapID(pub.pc.LocalDescription().SDP, sdp.AudioLevelURI)
	if pubLevel == 0 || pubLevel != extmapID(offer, sdp.AudioLevelURI) {
		t.Fatalf("audio level id: the publisher's answer %d, the offer %d", pubLevel, extmapID(offer, sdp.AudioLevelURI))
	}
	every(t, 20*time.Millisecond, func(i int) {
		h := rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: uint16(i), Timestamp: uint32(i) * 960, SSRC: 2}
		// voice activity, level 42 dBov below the loudest; the sequence
		// number in the payload to match what arrives
		_ = h.SetExtension(pubLevel, []byte{0x80 | 42})
		_ = h.SetExtension(pubLevel+1, []byte{1, 2, 3}) // something else of the publisher's: dropped
		_ = pub.audio.WriteRTP(&rtp.Packet{Header: h, Payload: []byte{0xA0, byte(i >> 8), byte(i)}})
	})
	pub.pump(t, 'V')
	audio, video := "pub/pub-audio", "pub/pub-video"
	for _, c := range []*testClient{sub, plain} {
		testutil.Eventually(t, func() bool { return len(c.headers(audio)) >= 10 && len(c.headers(video)) >= 10 }, 10*time.Second, "audio and video reach the subscribers")
	}
	subSDP := sub.pc.LocalDescription().SDP
	level, ast, tcc := extmapID(subSDP, sdp.AudioLevelURI), extmapID(subSDP, sdp.ABSSendTimeURI), extmapID(subSDP, sdp.TransportCCURI)
	if level == 0 || ast == 0 || tcc == 0 {
		t.Fatalf("subscriber's extension ids: level %d abs-send-time %d transport-cc %d", level, ast, tcc)
	}
	for _, h := range sub.headers(audio) {
		if got := h.GetExtension(level); len(got) != 1 || got[0] != 0x80|42 {
			t.Fatalf("audio packet %d: audio level % x", h.SequenceNumber, got)
		}
		for _, id := range h.GetExtensionIDs() {
			if id != level && id != ast && id != tcc {
				t.Fatalf("audio packet %d carries extension %d", h.SequenceNumber, id)
			}
		}
	}
	var seqs []uint16
	for _, key := range []string{audio, video} {
		for _, h := range sub.headers(key) {
			if len(h.GetExtension(ast)) != 3 {
				t.Fatalf("%s packet %d: no abs-send-time", key, h.SequenceNumber)
			}
			b := h.GetExtension(tcc)
			if len(b) != 2 {
				t.Fatalf("%s packet %d: no transport-wide sequence number", key, h.SequenceNumber)
			}
			seqs = append(seqs, uint16(b[0])<<8|uint16(b[1]))
		}
	}
	// Audio and video share one counter: no number given twice.
	seen := map[uint16]bool{}
	for _, q := range seqs {
		if seen[q] {
			t.Fatalf("transport-wide sequence number %d given twice", q)
		}
		seen[q] = true
	}
	for _, h := range plain.headers(audio) {
		if h.Extension && len(h.GetExtension(pubLevel)) != 0 {
			t.Fatalf("a subscriber without the audio level extension got it: %v", h.GetExtensionIDs())
		}
	}
}

// TestREMBOnlySubscriber: a client without transport-cc, which reports
// its bandwidth with REMB, gets the layers its REMB allows: the estimate is
// its REMB (above the initial estimate too), r2 with 3 Mbit/s, r0 with
// 250 kbit/s.
func TestREMBOnlySubscriber(t *testing.T) {
	s := newSFU(t, nil)
	pub := join(t, s, clientOpts{channel: "remb", id: "pub", role: sfu.RoleSendonly, audio: true, video: true, simulcast: true})
	for l, size := range []int{500, 1650, 3750} { // bytes a frame at 30 fps
		pub.layers[l].mu.Lock()
		pub.layers[l].size = size
		pub.layers[l].mu.Unlock()
	}
	every(t, 33*time.Millisecond, func(int) {
		for _, l := range pub.layers {
			l.writeFrame()
		}
	})
	pub.pumpAudio(t)
	sub := join(t, s, clientOpts{channel: "remb", id: "sub", role: sfu.RoleRecvonly, rid: sfu.RidR2, api: clientAPI(t, true, false)})
	if id := extmapID(sub.pc.LocalDescription().SDP, sdp.TransportCCURI); id != 0 {
		t.Fatalf("the REMB client negotiated transport-cc (id %d)", id)
	}
	key := "pub/pub-video"
	testutil.Eventually(t, func() bool { return len(sub.frames(key)) > 0 }, 10*time.Second, "video reaches the subscriber")
	var remb atomic.Uint64
	remb.Store(3_000_000)
	every(t, 200*time.Millisecond, func(int) {
		sub.mu.Lock()
		ssrc := sub.ssrcs[key]
		sub.mu.Unlock()
		_ = sub.pc.WriteRTCP([]rtcp.Packet{&rtcp.ReceiverEstimatedMaximumBitrate{SenderSSRC: 1, Bitrate: float32(remb.Load()), SSRCs: []uint32{ssrc}}})
	})
	near := func(got int, want uint64) bool { return got > int(want)*97/100 && got <= int(want) }
	testutil.Eventually(t, func() bool { return near(sub.conn.EstimatedBitrate(), 3_000_000) && lastLayer(sub.frames(key)) == 'C' },
		20*time.Second, "estimate 3 Mbit/s and r2 (estimate %d, layer %c)", sub.conn.EstimatedBitrate(), lastLayer(sub.frames(key)))
	remb.Store(250_000)
	testutil.Eventually(t, func() bool { return near(sub.conn.EstimatedBitrate(), 250_000) && lastLayer(sub.frames(key)) == 'A' },
		20*time.Second, "estimate 250 kbit/s and r0 (estimate %d, layer %c)", sub.conn.EstimatedBitrate(), lastLayer(sub.frames(key)))
}
