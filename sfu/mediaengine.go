package sfu

// The codecs, RTP header extensions and interceptors every connection of
// the SFU negotiates. The server is always the offerer, so the payload
// types and extension ids registered here are the ones every publisher and
// every subscriber uses.

import (
	"fmt"

	"github.com/pion/interceptor"
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

// newMediaEngine returns the media engine and interceptor registry of the
// SFU's pion API.
func newMediaEngine() (*webrtc.MediaEngine, *interceptor.Registry, error) {
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
	if err := configureInterceptors(m, ir); err != nil {
		return nil, nil, err
	}
	return m, ir, nil
}

// configureInterceptors adds the interceptors every connection runs: NACK
// generation and response, RTCP sender and receiver reports, and
// transport-cc feedback on what publishers send (with the transport-cc
// header extension and rtcp-fb).
func configureInterceptors(m *webrtc.MediaEngine, ir *interceptor.Registry) error {
	if err := webrtc.ConfigureNack(m, ir); err != nil {
		return fmt.Errorf("sfu: configure NACK: %w", err)
	}
	if err := webrtc.ConfigureRTCPReports(ir); err != nil {
		return fmt.Errorf("sfu: configure RTCP reports: %w", err)
	}
	if err := webrtc.ConfigureTWCCSender(m, ir); err != nil {
		return fmt.Errorf("sfu: configure transport-cc: %w", err)
	}
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
	// codec (RFC 4588); empty until retransmission is negotiated.
	rtxCodecs = map[webrtc.PayloadType]webrtc.RTPCodecParameters{}
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
