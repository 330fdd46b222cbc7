package sfu

// The codecs, RTP header extensions and interceptors every connection of
// the SFU negotiates. The server is always the offerer, so the payload
// types and extension ids registered here are the ones every publisher and
// every subscriber uses.

import (
	"fmt"
	"strconv"

	"github.com/pion/dtls/v3"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// headerExtensions are the RTP header extensions offered, per kind: mid,
// rid and repaired-rid identify simulcast layers and their repair streams,
// transport-cc and abs-send-time feed bandwidth estimation, audio level
// tells who speaks.
var headerExtensions = []struct {
	uri   string
	kinds []webrtc.RTPCodecType
}{
	{sdp.SDESMidURI, []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo}},
	{sdp.SDESRTPStreamIDURI, []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo}},
	{sdp.SDESRepairRTPStreamIDURI, []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo}},
	{sdp.ABSSendTimeURI, []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo}},
	{sdp.AudioLevelURI, []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio}},
	// transport-cc is registered by configureInterceptors, with its feedback.
}

// audioLevelExtID is the id of the audio level extension in the SFU's
// offers, which every publisher's answer keeps (RFC 8285): pion numbers
// the extensions from 1 in the order registered. The packets of a remote
// track come from a publisher of another node of the same SFU, so carry it
// under the same id. TestHeaderExtensionsForwarded fails if it is not the one in the SDP.
var audioLevelExtID = func() uint8 {
	for i, e := range headerExtensions {
		if e.uri == sdp.AudioLevelURI {
			return uint8(i + 1)
		}
	}
	panic("sfu: audio level extension not registered")
}()

// srtpProfiles are the SRTP protection profiles a connection accepts,
// preferred first (sfu.go sets them in the SettingEngine).
var srtpProfiles = []dtls.SRTPProtectionProfile{
	dtls.SRTP_AEAD_AES_128_GCM,
	dtls.SRTP_AEAD_AES_256_GCM,
	dtls.SRTP_AES128_CM_HMAC_SHA1_80,
}

// newMediaEngine returns the media engine and interceptor registry of the
// SFU's pion API.
func newMediaEngine(cc *ccRegistry, srs *srRegistries, rs *recvSwitchFactory) (*webrtc.MediaEngine, *interceptor.Registry, error) {
	m := &webrtc.MediaEngine{}
	if err := registerCodecs(m); err != nil {
		return nil, nil, fmt.Errorf("sfu: register codecs: %w", err)
	}
	for _, e := range headerExtensions {
		for _, k := range e.kinds {
			if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: e.uri}, k); err != nil {
				return nil, nil, fmt.Errorf("sfu: register header extension %s: %w", e.uri, err)
			}
		}
	}
	ir := &interceptor.Registry{}
	if err := configureInterceptors(m, ir, cc, srs, rs); err != nil {
		return nil, nil, err
	}
	return m, ir, nil
}

// configureInterceptors adds the interceptors every connection runs, in
// this order (the first added is nearest the transport): with rs, the
// switch of publishers' streams to the direct receive path (recvswitch.go:
// every other interceptor reads what it reads); the innermost RTX
// gate; congestion control; the inner RTX gate; NACK generation toward
// publishers; RTCP sender and receiver
// reports; transport-cc feedback on what publishers send (with the
// transport-cc header extension and rtcp-fb); the outer RTX gate. NACKs
// from subscribers are answered by the SFU itself (rtx.go), from one
// buffer per source, not by pion's responder, which would keep a copy of
// the packets per subscriber. Interceptors that must also see
// retransmissions (transport-wide sequence numbers, pacing) go between the
// innermost and the inner gate; they see RTX under its stream's SSRC.
// With srs the sender reports are the SFU's (sr.go), which count what the
// direct send path sends too, instead of pion's.
func configureInterceptors(m *webrtc.MediaEngine, ir *interceptor.Registry, cc *ccRegistry, srs *srRegistries, rs *recvSwitchFactory) error {
	if rs != nil {
		ir.Add(rs)
	}
	unmask, inner, outer := newRtxGates()
	ir.Add(unmask)
	// transport-wide sequence numbers (with congestion control) and
	// abs-send-time, stamped as the packet leaves, retransmissions included
	ir.Add(&twccFactory{reg: cc})
	if cc != nil {
		cc.configure(m)
	}
	ir.Add(inner)
	gen, err := nack.NewGeneratorInterceptor()
	if err != nil {
		return fmt.Errorf("sfu: configure NACK: %w", err)
	}
	ir.Add(lazyRecvFactory{f: gen}) // its ticker only where media comes in (lazyrecv.go)
	if srs == nil {
		if err := webrtc.ConfigureRTCPReports(ir); err != nil {
			return fmt.Errorf("sfu: configure RTCP reports: %w", err)
		}
	} else {
		rr, err := report.NewReceiverInterceptor()
		if err != nil {
			return fmt.Errorf("sfu: configure RTCP reports: %w", err)
		}
		ir.Add(lazyRecvFactory{f: rr})
		ir.Add(&srFactory{reg: srs})
	}
	if err := webrtc.ConfigureTWCCSender(m, ir); err != nil {
		return fmt.Errorf("sfu: configure transport-cc: %w", err)
	}
	ir.Add(outer)
	return nil
}

// videoFeedback is the RTCP feedback of every video codec.
var videoFeedback = []webrtc.RTCPFeedback{{Type: "ccm", Parameter: "fir"}, {Type: "nack"}, {Type: "nack", Parameter: "pli"}}

// audioCodecs and videoCodecs are the codecs the SFU forwards, in the
// order offered when a connection asks for none in particular: a client
// that publishes sends the first it supports.
var (
	audioCodecs = []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"}, PayloadType: 111},
	}
	videoCodecs = []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000, RTCPFeedback: videoFeedback}, PayloadType: 96},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP9, ClockRate: 90000, SDPFmtpLine: "profile-id=0", RTCPFeedback: videoFeedback}, PayloadType: 98},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f", RTCPFeedback: videoFeedback}, PayloadType: 102},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeAV1, ClockRate: 90000, RTCPFeedback: videoFeedback}, PayloadType: 45},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH265, ClockRate: 90000, SDPFmtpLine: "level-id=93;profile-id=1;tier-flag=0;tx-mode=SRST", RTCPFeedback: videoFeedback}, PayloadType: 116},
	}
	// rtxCodecs maps a video codec's payload type to its retransmission
	// codec (RFC 4588).
	rtxCodecs = func() map[webrtc.PayloadType]webrtc.RTPCodecParameters {
		m := map[webrtc.PayloadType]webrtc.RTPCodecParameters{}
		for pt, rtx := range map[webrtc.PayloadType]webrtc.PayloadType{96: 97, 98: 99, 102: 103, 45: 46, 116: 117} {
			m[pt] = webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeRTX, ClockRate: 90000, SDPFmtpLine: "apt=" + strconv.Itoa(int(pt))}, PayloadType: rtx}
		}
		return m
	}()
)

// registered returns the codecs of kind, without retransmission codecs.
func registered(kind webrtc.RTPCodecType) []webrtc.RTPCodecParameters {
	if kind == webrtc.RTPCodecTypeAudio {
		return audioCodecs
	}
	return videoCodecs
}

// rtxOf returns the retransmission codec of the codec with payload type pt.
func rtxOf(pt webrtc.PayloadType) (webrtc.RTPCodecParameters, bool) {
	c, ok := rtxCodecs[pt]
	return c, ok
}

// registerCodecs registers the codecs the SFU forwards.
func registerCodecs(m *webrtc.MediaEngine) error {
	for _, c := range audioCodecs {
		if err := m.RegisterCodec(c, webrtc.RTPCodecTypeAudio); err != nil {
			return err
		}
	}
	for _, c := range videoCodecs {
		if err := m.RegisterCodec(c, webrtc.RTPCodecTypeVideo); err != nil {
			return err
		}
		if r, ok := rtxOf(c.PayloadType); ok {
			if err := m.RegisterCodec(r, webrtc.RTPCodecTypeVideo); err != nil {
				return err
			}
		}
	}
	return nil
}
