package sfu

// Codec choice: the codec a publisher sends (connect's codec_type), its
// target bit rate (connect's bit_rate), and the codecs a subscriber is
// offered for each forwarded track.

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// ErrUnsupportedCodec is wrapped by the Join error of a request whose
// AudioCodec or VideoCodec the SFU does not forward, or that the client's
// own SDP (JoinRequest.ClientSDP) shows it cannot handle.
var ErrUnsupportedCodec = errors.New("sfu: unsupported codec")

// codecNames maps connect's codec_type values to MIME types.
var codecNames = map[string]string{
	"OPUS": webrtc.MimeTypeOpus,
	"VP8":  webrtc.MimeTypeVP8,
	"VP9":  webrtc.MimeTypeVP9,
	"H264": webrtc.MimeTypeH264,
	"H265": webrtc.MimeTypeH265,
	"AV1":  webrtc.MimeTypeAV1,
}

// CodecMimeType returns the MIME type ("video/VP9") of one of connect's
// codec_type values ("VP9"), matched without regard to case, and whether
// the SFU forwards it.
func CodecMimeType(codecType string) (string, bool) {
	m, ok := codecNames[strings.ToUpper(codecType)]
	return m, ok
}

// codecChoice is what a connection asked for its upstream: the codec of
// each kind (empty MIME type: the server's order) and the bit rates.
type codecChoice struct {
	audio, video         string // MIME types
	audioKbps, videoKbps int
	// decodes lists the MIME types, lower case, the client's SDP offers to
	// receive; nil when it gave none, meaning everything.
	decodes map[string]bool
}

// checkCodecs reads the codec fields of a JoinRequest.
func checkCodecs(req *JoinRequest) (codecChoice, error) {
	cc := codecChoice{audioKbps: req.AudioBitRate, videoKbps: req.VideoBitRate}
	if req.AudioBitRate < 0 || req.VideoBitRate < 0 {
		return cc, fmt.Errorf("%w: negative bit rate", ErrInvalidRequest)
	}
	if req.ClientSDP != "" {
		cc.decodes = sdpCodecs(req.ClientSDP)
	}
	for _, x := range []struct {
		name string
		kind webrtc.RTPCodecType
		to   *string
	}{{req.AudioCodec, webrtc.RTPCodecTypeAudio, &cc.audio}, {req.VideoCodec, webrtc.RTPCodecTypeVideo, &cc.video}} {
		if x.name == "" {
			continue
		}
		mime, ok := CodecMimeType(x.name)
		if !ok || !strings.HasPrefix(mime, x.kind.String()+"/") {
			return cc, fmt.Errorf("%w: %s codec_type %q (want one of OPUS; VP8, VP9, H264, H265, AV1)", ErrUnsupportedCodec, x.kind, x.name)
		}
		if cc.decodes != nil && !cc.decodes[strings.ToLower(mime)] {
			return cc, fmt.Errorf("%w: %s codec_type %s is not in the client's SDP", ErrUnsupportedCodec, x.kind, x.name)
		}
		*x.to = mime
	}
	return cc, nil
}

// canDecode reports whether the client's SDP lists the codec (true when it
// gave none).
func (cc *codecChoice) canDecode(c webrtc.RTPCodecCapability) bool {
	return cc.decodes == nil || cc.decodes[strings.ToLower(c.MimeType)]
}

// sdpCodecs returns the MIME types, lower case, of the rtpmap lines of an
// SDP's audio and video sections; nil if it does not parse or has none.
func sdpCodecs(s string) map[string]bool {
	var d sdp.SessionDescription
	if err := d.UnmarshalString(s); err != nil {
		return nil
	}
	out := map[string]bool{}
	for _, m := range d.MediaDescriptions {
		kind := m.MediaName.Media
		if kind != "audio" && kind != "video" {
			continue
		}
		for _, a := range m.Attributes {
			if a.Key != "rtpmap" {
				continue
			}
			// "96 VP8/90000"
			_, enc, ok := strings.Cut(a.Value, " ")
			if !ok {
				continue
			}
			name, _, _ := strings.Cut(enc, "/")
			out[strings.ToLower(kind+"/"+name)] = true
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// codecOrder returns the registered codecs of kind with the one that best
// matches want first, each followed by its retransmission codec: an m-line's
// codec preferences. The best match has want's MIME type and, among those,
// its fmtp line if one is equal. With no match, the registered order.
func codecOrder(kind webrtc.RTPCodecType, want webrtc.RTPCodecCapability) []webrtc.RTPCodecParameters {
	reg := registered(kind)
	best := -1
	for i, c := range reg {
		if !strings.EqualFold(c.MimeType, want.MimeType) {
			continue
		}
		if best < 0 || (c.SDPFmtpLine == want.SDPFmtpLine && reg[best].SDPFmtpLine != want.SDPFmtpLine) {
			best = i
		}
	}
	out := make([]webrtc.RTPCodecParameters, 0, 2*len(reg))
	add := func(c webrtc.RTPCodecParameters) {
		out = append(out, c)
		if r, ok := rtxOf(c.PayloadType); ok {
			out = append(out, r)
		}
	}
	if best >= 0 {
		add(reg[best])
	}
	for i, c := range reg {
		if i != best {
			add(c)
		}
	}
	return out
}

// setCodecOrder sets tr's codec preferences to codecOrder's, leaving out
// the codecs the peer connection cannot offer: once a client answered,
// pion offers only the codecs it accepted. It leaves tr as it was when
// none is left.
func setCodecOrder(tr *webrtc.RTPTransceiver, kind webrtc.RTPCodecType, want webrtc.RTPCodecCapability) error {
	order := codecOrder(kind, want)
	if err := tr.SetCodecPreferences(order); err == nil {
		return nil
	}
	keep := make([]webrtc.RTPCodecParameters, 0, len(order))
	for i := 0; i < len(order); i++ {
		c := order[i]
		if strings.EqualFold(c.MimeType, webrtc.MimeTypeRTX) {
			continue
		}
		pair := []webrtc.RTPCodecParameters{c}
		if i+1 < len(order) && strings.EqualFold(order[i+1].MimeType, webrtc.MimeTypeRTX) {
			pair = append(pair, order[i+1])
		}
		if tr.SetCodecPreferences(pair) == nil {
			keep = append(keep, pair...)
		} else if tr.SetCodecPreferences(pair[:1]) == nil {
			keep = append(keep, c)
		}
	}
	if len(keep) == 0 {
		return tr.SetCodecPreferences(nil)
	}
	return tr.SetCodecPreferences(keep)
}

// addBandwidth adds b=AS (kbps) and b=TIAS (bps) lines to the m-section
// with this mid, replacing any it has: the most the client should send on
// it. An SDP without that m-section, or kbps 0, is returned as it is.
func addBandwidth(sdpText, mid string, kbps int) string {
	if kbps <= 0 || mid == "" {
		return sdpText
	}
	lines := strings.SplitAfter(sdpText, "\r\n")
	var b strings.Builder
	b.Grow(len(sdpText) + 40)
	// The section's lines until its c= line (after which b= lines go).
	start, in := -1, false
	for i, l := range lines {
		if strings.HasPrefix(l, "m=") {
			start, in = i, false
			for _, x := range lines[i+1:] {
				if strings.HasPrefix(x, "m=") {
					break
				}
				if x == "a=mid:"+mid+"\r\n" {
					in = true
					break
				}
			}
		}
		if in && start >= 0 && (strings.HasPrefix(l, "b=AS:") || strings.HasPrefix(l, "b=TIAS:")) {
			continue
		}
		b.WriteString(l)
		if in && strings.HasPrefix(l, "c=") {
			b.WriteString("b=AS:" + strconv.Itoa(kbps) + "\r\n")
			b.WriteString("b=TIAS:" + strconv.Itoa(kbps*1000) + "\r\n")
		}
	}
	return b.String()
}

// addBandwidthLocked applies the connection's bit rates to its upstream
// m-lines in an offer.
func (c *Connection) addBandwidthLocked(sdpText string) string {
	if tr := c.midTr[0]; tr != nil {
		sdpText = addBandwidth(sdpText, tr.Mid(), c.codecs.audioKbps)
	}
	if tr := c.midTr[1]; tr != nil {
		sdpText = addBandwidth(sdpText, tr.Mid(), c.codecs.videoKbps)
	}
	return sdpText
}

// bindUndecodable is Bind for a subscriber whose answer left out the
// source's codec: its client cannot decode it. Nothing is written to the
// m-line. A Bind error would instead fail the whole answer (pion stops
// applying it), so Bind returns a codec the answer has, or the source's
// own when it has none.
func (d *downTrack) bindUndecodable(ctx webrtc.TrackLocalContext) webrtc.RTPCodecParameters {
	d.binding.Store(nil)
	d.undecodable.Store(true)
	d.src.ch.sfu.logger.Warn("track not forwarded: the client did not accept its codec", "channel", d.src.ch.id, "track", d.src.info.ID, "codec", d.src.info.Codec.MimeType)
	if cs := ctx.CodecParameters(); len(cs) > 0 {
		return cs[0]
	}
	return webrtc.RTPCodecParameters{RTPCodecCapability: d.src.info.Codec}
}
