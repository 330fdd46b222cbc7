package sfu

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/pion/transport/v5"
	"github.com/pion/webrtc/v4"
)

// DefaultKeyframeInterval is the minimum time between two keyframe requests
// sent to one track's publisher.
const DefaultKeyframeInterval = 500 * time.Millisecond

// DefaultAnswerTimeout is how long a client has to answer an offer or a
// re-offer. Sora's SDKs answer within milliseconds; the margin is for slow
// devices and networks.
const DefaultAnswerTimeout = 30 * time.Second

// Config configures an SFU. The zero value is usable: no connection limit,
// ephemeral UDP ports on every interface, full ICE.
type Config struct {
	// Logger receives the SFU's and pion's logs; nil means slog.Default().
	Logger *slog.Logger
	// MaxConnections refuses Join with a *CapacityError beyond this many
	// connections on the node; 0 means no limit.
	MaxConnections int
	// KeyframeInterval is the minimum time between keyframe requests sent
	// to one publisher; requests in between are coalesced into one sent at
	// the end of the interval. 0 means DefaultKeyframeInterval.
	KeyframeInterval time.Duration
	// AnswerTimeout is how long a client has to answer the initial offer
	// (counted from the end of Join) and every re-offer (counted from the
	// ReOffer hook call). A connection whose answer does not come in time is
	// closed and its Err wraps ErrAnswerTimeout; the other connections of
	// the channel are not affected. Without it, a client that never
	// re-answers would keep its connection alive but never get another
	// re-offer, since only one is outstanding at a time. A re-offer is not
	// timed when ConnectionHooks.ReOffer is nil, as nobody was sent it.
	// 0 means DefaultAnswerTimeout.
	AnswerTimeout time.Duration
	// Network holds the ICE settings a deployment needs.
	Network NetworkConfig
	// MLineReuse says which inactive m-lines (of tracks that left) a new
	// forwarded track may take instead of a new m-line. The zero value,
	// ReuseOnce, is safe for every client.
	MLineReuse Reuse
	// DisableCongestionControl turns off the downlink congestion control:
	// no bandwidth estimate (and no transport-wide sequence numbers on what
	// is sent), every subscriber gets the simulcast layer it asks for
	// whatever its link.
	DisableCongestionControl bool
	// Messages bounds what the SFU holds for a client that reads its
	// messaging data channels slowly: a queue per connection, and the
	// data channels' buffered bytes (dcqueue.go).
	Messages MessageConfig
	// DisableBatchedSends sends each packet through the UDP mux socket
	// (Network.UDPPort) with a system call of its own. By default the
	// packets of one fan-out go out together, up to 64 per sendmmsg (on
	// Linux; elsewhere sends are never batched). Without the mux there is
	// nothing to batch.
	DisableBatchedSends bool
	// DisableDirectSend sends every packet through pion's chain of the
	// subscriber's sender (interceptors, SRTP session, ICE connection). By
	// default, with the UDP mux and congestion control on, a connection
	// whose DTLS is done encrypts its media with SRTP keys of its own and
	// writes it to the mux socket itself (direct.go); MuxStats says how
	// many connections do.
	DisableDirectSend bool
	// SpreadAbove is the number of subscribers above which a track's
	// fan-out is spread over a few worker goroutines (as many as the
	// cores, 2 to 4), each writing to its share of the subscribers; 0
	// means DefaultSpreadAbove (20), negative never. Simulcast tracks
	// are not spread, nor is anything with the UDP mux on a single
	// processor (GOMAXPROCS 1), where workers would only add a hand-off.
	SpreadAbove int
	// Net, when not nil, is the network ICE runs on instead of the host's
	// (pion's SettingEngine.SetNet): tests pass a pion vnet.Net to run
	// connections on a virtual network. Every Network setting applies to
	// it: candidates come from its interfaces, and with Network.UDPPort the
	// mux socket is opened through it. nil means the host's network.
	Net transport.Net
}

// Reuse says which inactive m-lines of a subscriber a new forwarded track
// may take. An m-line is never taken in the offer that first makes it
// inactive: the client sees the old track end first.
type Reuse int

const (
	// ReuseOnce takes only an m-line carried inactive in exactly one
	// answered offer (the last). It is safe for every answerer, pion
	// included, but the SDP still grows when several tracks leave before
	// one joins.
	ReuseOnce Reuse = iota
	// ReuseAny takes any m-line whose inactive state was answered: the
	// SDP of a long-lived channel stays bounded by the most tracks present
	// at once. For browsers and Sora's SDKs (the root package's
	// TestE2EChromeReusesMLines: Chromium with sora-js-sdk decodes tracks
	// on m-lines two offers carried inactive); a pion (v4.2.26) answerer,
	// signaling/client included, gets no media on an m-line it saw inactive
	// in two offers or more.
	ReuseAny
	// ReuseNever gives every forwarded track a new m-line.
	ReuseNever
)

// NetworkConfig holds the ICE network settings.
type NetworkConfig struct {
	// UDPPort, when not 0, makes all ICE traffic of all connections use one
	// UDP socket on ListenIP:UDPPort (a UDP mux). The socket is opened by
	// the first Join and closed by Close.
	UDPPort int
	// ListenIP is the address of the UDP mux socket; the zero value means
	// all interfaces (0.0.0.0).
	ListenIP netip.Addr
	// PortMin and PortMax bound the ephemeral UDP ports used when UDPPort
	// is 0. Both 0 means any port.
	PortMin, PortMax uint16
	// NAT1To1IPs replaces the host candidates' addresses with these public
	// addresses (a server behind a 1:1 NAT). Leave empty if AddressRewrite
	// is used.
	NAT1To1IPs []string
	// AddressRewrite is pion's general form of NAT1To1IPs.
	AddressRewrite []webrtc.ICEAddressRewriteRule
	// IPFilter, when not nil, keeps only the local addresses it accepts for
	// candidates.
	IPFilter func(net.IP) bool
	// InterfaceFilter, when not nil, keeps only the network interfaces it
	// accepts (by name) for candidates.
	InterfaceFilter func(string) bool
	// IncludeLoopback gathers loopback candidates (tests, single-host setups).
	IncludeLoopback bool
	// Lite runs the server as an ICE-lite agent.
	Lite bool
}

// LocalConfig is a preset for tests and single-host demos: loopback
// candidates only, no mDNS, short keyframe interval.
func LocalConfig(logger *slog.Logger) Config {
	return Config{
		Logger:           logger,
		KeyframeInterval: 100 * time.Millisecond,
		Network: NetworkConfig{
			IPFilter:        func(ip net.IP) bool { return ip.IsLoopback() },
			IncludeLoopback: true,
		},
	}
}

// check validates cfg and returns it with the defaults filled in and its
// slices copied.
func (cfg Config) check() (Config, error) {
	if cfg.MaxConnections < 0 {
		return cfg, fmt.Errorf("sfu: MaxConnections is %d; want 0 (no limit) or more", cfg.MaxConnections)
	}
	if cfg.KeyframeInterval < 0 {
		return cfg, fmt.Errorf("sfu: KeyframeInterval is %v; want 0 (default) or more", cfg.KeyframeInterval)
	}
	if cfg.KeyframeInterval == 0 {
		cfg.KeyframeInterval = DefaultKeyframeInterval
	}
	if cfg.SpreadAbove == 0 {
		cfg.SpreadAbove = DefaultSpreadAbove
	}
	if cfg.MLineReuse < ReuseOnce || cfg.MLineReuse > ReuseNever {
		return cfg, fmt.Errorf("sfu: MLineReuse is %d; want ReuseOnce, ReuseAny or ReuseNever", cfg.MLineReuse)
	}
	if cfg.AnswerTimeout < 0 {
		return cfg, fmt.Errorf("sfu: AnswerTimeout is %v; want 0 (default) or more", cfg.AnswerTimeout)
	}
	if cfg.AnswerTimeout == 0 {
		cfg.AnswerTimeout = DefaultAnswerTimeout
	}
	if err := cfg.Messages.check(); err != nil {
		return cfg, err
	}
	n := cfg.Network
	if n.UDPPort < 0 || n.UDPPort > 65535 {
		return cfg, fmt.Errorf("sfu: Network.UDPPort %d is not a UDP port", n.UDPPort)
	}
	if (n.PortMin == 0) != (n.PortMax == 0) || n.PortMin > n.PortMax {
		return cfg, fmt.Errorf("sfu: Network.PortMin %d and PortMax %d: set both, with PortMin <= PortMax", n.PortMin, n.PortMax)
	}
	if n.UDPPort != 0 && n.PortMin != 0 {
		return cfg, errors.New("sfu: Network.UDPPort and PortMin/PortMax exclude each other: one socket for all, or a range")
	}
	if len(n.NAT1To1IPs) > 0 && len(n.AddressRewrite) > 0 {
		return cfg, errors.New("sfu: Network.NAT1To1IPs and AddressRewrite exclude each other (pion refuses both)")
	}
	for _, ip := range n.NAT1To1IPs {
		if _, err := netip.ParseAddr(ip); err != nil {
			return cfg, fmt.Errorf("sfu: Network.NAT1To1IPs: %q is not an IP address", ip)
		}
	}
	cfg.Network.NAT1To1IPs = append([]string(nil), n.NAT1To1IPs...)
	cfg.Network.AddressRewrite = append([]webrtc.ICEAddressRewriteRule(nil), n.AddressRewrite...)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg, nil
}
