package sfu_test

import (
	"context"
	"errors"
	"strings"
	"sync"
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

// codecPeer is a pion client that records the codec of each track it
// receives and how many packets came.
type codecPeer struct {
	pc    *webrtc.PeerConnection
	conn  *sfu.Connection
	track *webrtc.TrackLocalStaticRTP // published, if any

	mu      sync.Mutex
	codecs  map[string]string // stream id -> MIME type received
	packets map[string]int    // stream id -> packets received
}

// joinCodecPeer joins req with a pion client of api (nil: pion's defaults)
// that publishes a video track of codec pub (when its MimeType is set).
func joinCodecPeer(t *testing.T, s *sfu.SFU, req sfu.JoinRequest, api *webrtc.API, pub webrtc.RTPCodecCapability) *codecPeer {
	t.Helper()
	if api == nil {
		api = sharedClientAPI
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	p := &codecPeer{pc: pc, codecs: map[string]string{}, packets: map[string]int{}}
	if pub.MimeType != "" {
		p.track, _ = webrtc.NewTrackLocalStaticRTP(pub, "cam", "local")
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		p.mu.Lock()
		p.codecs[tr.StreamID()] = tr.Codec().MimeType
		p.mu.Unlock()
		for {
			if _, _, err := tr.ReadRTP(); err != nil {
				return
			}
			p.mu.Lock()
			p.packets[tr.StreamID()]++
			p.mu.Unlock()
		}
	})
	answer := func(offer string) (string, error) {
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
			return "", err
		}
		if p.track != nil && len(pc.GetSenders()) == 0 {
			if _, err := pc.AddTrack(p.track); err != nil {
				return "", err
			}
		}
		a, err := pc.CreateAnswer(nil)
		if err == nil {
			err = pc.SetLocalDescription(a)
		}
		return a.SDP, err
	}
	req.Hooks.ReOffer = func(offer string) {
		a, err := answer(offer)
		if err == nil {
			err = p.conn.SetAnswer(a)
		}
		if err != nil && p.conn.Err() == nil {
			t.Errorf("%s: re-answer: %v", req.ConnectionID, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := s.Join(ctx, req)
	if err != nil {
		t.Fatalf("join %s: %v", req.ConnectionID, err)
	}
	p.conn = conn
	t.Cleanup(func() { _ = conn.Close() })
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c != nil {
			_ = conn.AddICECandidate(c.ToJSON())
		}
	})
	a, err := answer(conn.Offer().SDP)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.SetAnswer(a); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, func() bool { return pc.ConnectionState() == webrtc.PeerConnectionStateConnected }, 10*time.Second, "%s connected", req.ConnectionID)
	return p
}

func (p *codecPeer) got(stream string) (string, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.codecs[stream], p.packets[stream]
}

// pumpVideo writes a packet every 5 ms on the published track until the
// test ends.
func (p *codecPeer) pumpVideo(t *testing.T) {
	every(t, 5*time.Millisecond, func(i int) {
		_ = p.track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(i), Timestamp: uint32(i) * 3000}, Payload: []byte{0x10, byte(i)}})
	})
}

// firstVideoCodec returns the first payload type's rtpmap name of the
// m-line with this mid ("VP9"), "" if none.
func firstVideoCodec(sdpText, mid string) string {
	for _, sec := range strings.Split(sdpText, "\r\nm=")[1:] {
		if attr(sec, "mid") != mid {
			continue
		}
		fields := strings.Fields(strings.SplitN(sec, "\r\n", 2)[0])
		if len(fields) < 4 {
			return ""
		}
		for _, l := range strings.Split(sec, "\r\n") {
			if v, ok := strings.CutPrefix(l, "a=rtpmap:"+fields[3]+" "); ok {
				name, _, _ := strings.Cut(v, "/")
				return name
			}
		}
	}
	return ""
}

// TestCodecChoice: a publisher asking for VP9, H264, AV1 or H265 is offered that
// codec first and publishes with it; a recvonly subscriber gets the track in
// that codec, on an m-line that lists it first.
func TestCodecChoice(t *testing.T) {
	for _, tc := range []struct{ name, mime string }{
		{"VP9", webrtc.MimeTypeVP9}, {"H264", webrtc.MimeTypeH264}, {"AV1", webrtc.MimeTypeAV1}, {"H265", webrtc.MimeTypeH265}, {"vp8", webrtc.MimeTypeVP8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSFU(t, nil)
			pub := joinCodecPeer(t, s, sfu.JoinRequest{ChannelID: "codec", ConnectionID: "PUB", Role: sfu.RoleSendonly, Video: true, VideoCodec: tc.name},
				nil, webrtc.RTPCodecCapability{MimeType: tc.mime, ClockRate: 90000})
			offer := pub.conn.Offer()
			if got := firstVideoCodec(offer.SDP, offer.Mids.Video); !strings.EqualFold(got, tc.name) {
				t.Errorf("upstream video m-line offers %s first, want %s", got, tc.name)
			}
			sub := joinCodecPeer(t, s, sfu.JoinRequest{ChannelID: "codec", ConnectionID: "SUB", Role: sfu.RoleRecvonly}, nil, webrtc.RTPCodecCapability{})
			pub.pumpVideo(t)
			testutil.Eventually(t, func() bool { _, n := sub.got("PUB"); return n >= 10 }, 10*time.Second, "subscriber receives the %s track", tc.name)
			if got, _ := sub.got("PUB"); got != tc.mime {
				t.Errorf("subscriber receives %s, want %s", got, tc.mime)
			}
			if got := firstVideoCodec(sub.pc.RemoteDescription().SDP, midOf(sub.pc.RemoteDescription().SDP, "PUB")); !strings.EqualFold(got, tc.name) {
				t.Errorf("forwarded m-line offers %s first, want %s", got, tc.name)
			}
		})
	}
}

// TestCodecMixedChannel: publishers of different codecs in one channel; a
// sendrecv VP9 publisher receives the H264 publisher's track as H264 (its
// own codec choice narrows nothing), and a late subscriber gets both.
func TestCodecMixedChannel(t *testing.T) {
	s := newSFU(t, nil)
	a := joinCodecPeer(t, s, sfu.JoinRequest{ChannelID: "mixed", ConnectionID: "A", Role: sfu.RoleSendrecv, Video: true, VideoCodec: "VP9"},
		nil, webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP9, ClockRate: 90000})
	a.pumpVideo(t)
	b := joinCodecPeer(t, s, sfu.JoinRequest{ChannelID: "mixed", ConnectionID: "B", Role: sfu.RoleSendrecv, Video: true, VideoCodec: "H264"},
		nil, webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000})
	b.pumpVideo(t)
	c := joinCodecPeer(t, s, sfu.JoinRequest{ChannelID: "mixed", ConnectionID: "C", Role: sfu.RoleRecvonly}, nil, webrtc.RTPCodecCapability{})
	for _, x := range []struct {
		p      *codecPeer
		stream string
		mime   string
	}{{a, "B", webrtc.MimeTypeH264}, {b, "A", webrtc.MimeTypeVP9}, {c, "A", webrtc.MimeTypeVP9}, {c, "B", webrtc.MimeTypeH264}} {
		testutil.Eventually(t, func() bool { _, n := x.p.got(x.stream); return n >= 10 }, 10*time.Second, "track of %s received", x.stream)
		if got, _ := x.p.got(x.stream); got != x.mime {
			t.Errorf("track of %s received as %s, want %s", x.stream, got, x.mime)
		}
	}
}

// TestCodecRefused: a codec the SFU does not forward, or one the client's
// own SDP does not list, fails Join with ErrUnsupportedCodec.
func TestCodecRefused(t *testing.T) {
	s := newSFU(t, nil)
	vp8Only := "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=recvonly\r\na=rtpmap:96 VP8/90000\r\n"
	for _, req := range []sfu.JoinRequest{
		{VideoCodec: "H266"},
		{AudioCodec: "VP8"},
		{VideoCodec: "VP8", AudioCodec: "LYRA"},
		{VideoCodec: "H265", ClientSDP: vp8Only},
		{VideoCodec: "VP9", ClientSDP: vp8Only},
	} {
		req.ChannelID, req.Role, req.Audio, req.Video = "refused", sfu.RoleSendrecv, true, true
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := s.Join(ctx, req)
		cancel()
		if !errors.Is(err, sfu.ErrUnsupportedCodec) {
			t.Errorf("Join(audio %q, video %q, client SDP %v) = %v, want ErrUnsupportedCodec", req.AudioCodec, req.VideoCodec, req.ClientSDP != "", err)
		}
		if c != nil {
			_ = c.Close()
		}
	}
	if n := s.Counts().Total; n != 0 {
		t.Errorf("%d connections after refused joins", n)
	}
}

// TestCodecSubscriberCannotDecode: a subscriber whose connect SDP lists only
// VP8 is not offered a VP9 track; one whose client (pion without VP9)
// leaves VP9 out of its answer keeps its connection and its other tracks,
// while the VP9 track's m-line stays silent.
func TestCodecSubscriberCannotDecode(t *testing.T) {
	s := newSFU(t, nil)
	nine := joinCodecPeer(t, s, sfu.JoinRequest{ChannelID: "dec", ConnectionID: "NINE", Role: sfu.RoleSendonly, Video: true, VideoCodec: "VP9"},
		nil, webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP9, ClockRate: 90000})
	nine.pumpVideo(t)
	eight := joinCodecPeer(t, s, sfu.JoinRequest{ChannelID: "dec", ConnectionID: "EIGHT", Role: sfu.RoleSendonly, Video: true, VideoCodec: "VP8"},
		nil, webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000})
	eight.pumpVideo(t)

	vp8Only := "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=recvonly\r\na=rtpmap:96 VP8/90000\r\n"
	listed := joinCodecPeer(t, s, sfu.JoinRequest{ChannelID: "dec", ConnectionID: "LISTED", Role: sfu.RoleRecvonly, ClientSDP: vp8Only}, nil, webrtc.RTPCodecCapability{})

	api := vp8OnlyAPI(t)
	blind := joinCodecPeer(t, s, sfu.JoinRequest{ChannelID: "dec", ConnectionID: "BLIND", Role: sfu.RoleRecvonly}, api, webrtc.RTPCodecCapability{})

	for _, p := range []*codecPeer{listed, blind} {
		testutil.Eventually(t, func() bool { _, n := p.got("EIGHT"); return n >= 10 }, 10*time.Second, "VP8 track received")
		if got, _ := p.got("EIGHT"); got != webrtc.MimeTypeVP8 {
			t.Errorf("VP8 track received as %s", got)
		}
	}
	time.Sleep(300 * time.Millisecond)
	if got, n := listed.got("NINE"); n != 0 || got != "" {
		t.Errorf("subscriber whose SDP lists only VP8 got the VP9 track (%s, %d packets)", got, n)
	}
	if midOf(listed.pc.RemoteDescription().SDP, "NINE") != "" {
		t.Errorf("subscriber whose SDP lists only VP8 was offered an m-line for the VP9 track")
	}
	if _, n := blind.got("NINE"); n != 0 {
		t.Errorf("subscriber that cannot decode VP9 got %d packets of the VP9 track", n)
	}
	if blind.conn.Err() != nil || listed.conn.Err() != nil {
		t.Errorf("connections closed: %v, %v", blind.conn.Err(), listed.conn.Err())
	}
}

// TestCodecBitRate: bit rates become b=AS and b=TIAS on the upstream
// m-lines, in the offer and in every re-offer.
func TestCodecBitRate(t *testing.T) {
	s := newSFU(t, nil)
	pub := joinCodecPeer(t, s, sfu.JoinRequest{ChannelID: "rate", ConnectionID: "PUB", Role: sfu.RoleSendrecv, Audio: true, Video: true, VideoBitRate: 500, AudioBitRate: 32},
		nil, webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000})
	check := func(what, sdpText string) {
		t.Helper()
		o := pub.conn.Offer()
		for _, x := range []struct {
			mid  string
			want []string
		}{{o.Mids.Video, []string{"b=AS:500", "b=TIAS:500000"}}, {o.Mids.Audio, []string{"b=AS:32", "b=TIAS:32000"}}} {
			for _, sec := range strings.Split(sdpText, "\r\nm=")[1:] {
				if attr(sec, "mid") != x.mid {
					continue
				}
				for _, w := range x.want {
					if strings.Count(sec, "\r\n"+w+"\r\n") != 1 {
						t.Errorf("%s: m-line %s lacks %s:\n%s", what, x.mid, w, sec)
					}
				}
			}
		}
	}
	check("offer", pub.conn.Offer().SDP)
	other := joinCodecPeer(t, s, sfu.JoinRequest{ChannelID: "rate", ConnectionID: "OTHER", Role: sfu.RoleSendonly, Video: true},
		nil, webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000})
	other.pumpVideo(t)
	testutil.Eventually(t, func() bool { _, n := pub.got("OTHER"); return n > 0 }, 10*time.Second, "re-offer answered, track received")
	check("re-offer", pub.pc.RemoteDescription().SDP)
}

// vp8OnlyAPI is a pion client API with Opus and VP8 only (no RTX) and
// pion's default interceptors.
func vp8OnlyAPI(t *testing.T, tweaks ...func(*webrtc.SettingEngine)) *webrtc.API {
	t.Helper()
	m := &webrtc.MediaEngine{}
	for _, c := range []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, PayloadType: 111},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000, RTCPFeedback: []webrtc.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}}}, PayloadType: 96},
	} {
		kind := webrtc.RTPCodecTypeVideo
		if c.MimeType == webrtc.MimeTypeOpus {
			kind = webrtc.RTPCodecTypeAudio
		}
		if err := m.RegisterCodec(c, kind); err != nil {
			t.Fatal(err)
		}
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		t.Fatal(err)
	}
	se := webrtc.SettingEngine{}
	pionapi.Quiet(&se)
	se.SetIPFilter(sfu.LocalConfig(nil).Network.IPFilter)
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	for _, f := range tweaks {
		f(&se)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
}
