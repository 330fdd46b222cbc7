package pionapi

import (
	"io"
	"net"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/logging"
	"github.com/pion/webrtc/v4"
)

// Quiet makes se's pion log nothing. Test clients are instruments: what
// they see is asserted, and pion's default logger would write to stderr,
// where its lines (a client's "unhandled RTP ssrc" at teardown) split the
// lines of a benchmark's output.
func Quiet(se *webrtc.SettingEngine) {
	lf := logging.NewDefaultLoggerFactory()
	lf.Writer = io.Discard
	se.LoggerFactory = lf
}

// Local returns an API with pion's default codecs and interceptors, IPv4
// UDP host candidates on loopback only and no mDNS: the client side of
// sfu.LocalConfig. Each tweak then adjusts the setting engine, e.g.
//
//	pionapi.Local(func(se *webrtc.SettingEngine) { se.DisableSRTPReplayProtection(true) })
//
// or, on a pion vnet, SetNet with SetIPFilter(nil). Its pion logs
// nothing (Quiet). It panics if pion refuses its own defaults.
func Local(tweaks ...func(*webrtc.SettingEngine)) *webrtc.API {
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		panic(err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		panic(err)
	}
	se := webrtc.SettingEngine{}
	Quiet(&se)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	for _, f := range tweaks {
		f(&se)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
}
