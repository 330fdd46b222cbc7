package relay

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"regexp"
	"runtime"
	"time"
)

// DefaultPort is the relay's TCP and UDP port when Config.ListenAddr has
// none: the top of the cluster's node-to-node port range (49010–49020,
// see docs/cluster.md), whose bottom the cluster layer uses.
const DefaultPort = 49020

// Defaults for the zero values of Config.
const (
	DefaultNACKBuffer        = 256
	DefaultKeyframeInterval  = 500 * time.Millisecond
	DefaultHeartbeatInterval = time.Second
	DefaultLinkTimeout       = 5 * time.Second
	DefaultReconnectMin      = 100 * time.Millisecond
	DefaultReconnectMax      = 5 * time.Second
	DefaultQueueLen          = 1024
	DefaultTrackQueueLen     = 128
)

// maxPacket is the largest RTP packet the relay carries (a loopback or LAN
// MTU); larger ones are dropped and counted.
const maxPacket = 1500

// Config configures a Relay. The zero value of each optional field is
// useful.
type Config struct {
	// NodeName is this node's name in the cluster, NAME@HOST (see
	// docs/cluster.md). Required.
	NodeName string
	// ClusterKey is the secret every node of the cluster holds, at least
	// MinClusterKeyLen bytes. Link identities and media keys derive from
	// it. Required.
	ClusterKey []byte
	// ListenAddr is where the relay listens, TCP (control) and UDP (media)
	// on the same port. Zero: all addresses, DefaultPort. Port 0 picks a
	// free port (see Addr). A specific IP is also the source of dialled
	// links, so that peers see the right address.
	ListenAddr netip.AddrPort
	// Local is the local SFU. Required.
	Local Local
	// NACKBuffer is how many recent packets of each outgoing track are kept
	// to answer NACKs (1,500 bytes each, allocated with the track: 384 KB
	// at the default, about 2.5 s of 1 Mbit/s video). 0: DefaultNACKBuffer;
	// negative: none.
	NACKBuffer int
	// KeyframeInterval is the least time between two keyframe requests for
	// one track crossing a link. 0: DefaultKeyframeInterval.
	KeyframeInterval time.Duration
	// HeartbeatInterval is how often a link pings (round-trip time) and
	// proves it is alive. 0: DefaultHeartbeatInterval.
	HeartbeatInterval time.Duration
	// LinkTimeout: a link that has heard nothing on its control stream for
	// this long is broken and reconnects. 0: DefaultLinkTimeout.
	LinkTimeout time.Duration
	// ReconnectMin and ReconnectMax bound the jittered exponential backoff
	// between attempts to re-establish a link. 0: DefaultReconnectMin,
	// DefaultReconnectMax.
	ReconnectMin, ReconnectMax time.Duration
	// QueueLen is how many messages wait per link to be written on its
	// control stream; beyond it they are dropped and counted
	// (Drops.MessageQueueFull). Control frames (announcements, keyframe
	// requests, demand) have a queue of their own, ahead of messages, and
	// are never dropped. 0: DefaultQueueLen.
	QueueLen int
	// TrackQueueLen is how many packets of each remote track wait for its
	// dispatch goroutine, which hands them to the local SFU (1,500 bytes
	// each, allocated with the track: 192 KB at the default, about 0.6 s
	// of 2 Mbit/s video); beyond it they are dropped and counted
	// (Drops.TrackQueueFull). 0: DefaultTrackQueueLen.
	TrackQueueLen int
	// OnLinkChange, when not nil, is told each time the link to a peer
	// comes up (err nil) or goes down (err says why), e.g. for the cluster
	// layer to mark this node unfit (mode block_new_connection, see
	// docs/cluster.md). It is called from the link's
	// goroutine, never concurrently for one peer, and must not block.
	OnLinkChange func(peer string, up bool, err error)
	// Logger receives the relay's logs; nil means slog.Default().
	Logger *slog.Logger
	// Net is the network the relay listens and dials on; nil means the
	// host's. Tests pass a FaultNet.
	Net Network

	// inlineDispatch (benchmarks only) calls every remote track's
	// WriteRTP on the receive goroutine, with no queue, as the relay did
	// before each track had a goroutine: the baseline of
	// BenchmarkRelayedFanOut.
	inlineDispatch bool
	// fanOutSlots (benchmarks only), when not 0, replaces the number of
	// remote tracks' fan-outs that may run at once (as many as
	// processors, at least two): -1 means no limit, as before the limit.
	fanOutSlots int
}

// fanOutSlots is how many remote tracks' fan-outs may run at once.
func fanOutSlots(cfg Config) int {
	switch {
	case cfg.fanOutSlots > 0:
		return cfg.fanOutSlots
	case cfg.fanOutSlots < 0:
		return 1 << 16
	}
	return max(2, runtime.GOMAXPROCS(0))
}

// FastConfig returns cfg with short heartbeats, timeouts and backoff, for
// tests and loopback clusters.
func FastConfig(cfg Config) Config {
	cfg.HeartbeatInterval = 100 * time.Millisecond
	cfg.LinkTimeout = time.Second
	cfg.ReconnectMin = 20 * time.Millisecond
	cfg.ReconnectMax = 200 * time.Millisecond
	return cfg
}

var nodeNameRE = regexp.MustCompile(`^[0-9A-Za-z_\-]+@[^@\s]+$`)

func (c *Config) validate() error {
	if !nodeNameRE.MatchString(c.NodeName) || len(c.NodeName) > 255 {
		return fmt.Errorf("relay: NodeName %q must be NAME@HOST (NAME of [0-9A-Za-z_-], at most 255 bytes in all)", c.NodeName)
	}
	if len(c.ClusterKey) < MinClusterKeyLen {
		return fmt.Errorf("relay: ClusterKey must be at least %d bytes, got %d", MinClusterKeyLen, len(c.ClusterKey))
	}
	if c.Local == nil {
		return errors.New("relay: Local is required (the local SFU, e.g. relay.NewSFULocal(s))")
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"KeyframeInterval", &c.KeyframeInterval, DefaultKeyframeInterval},
		{"HeartbeatInterval", &c.HeartbeatInterval, DefaultHeartbeatInterval},
		{"LinkTimeout", &c.LinkTimeout, DefaultLinkTimeout},
		{"ReconnectMin", &c.ReconnectMin, DefaultReconnectMin},
		{"ReconnectMax", &c.ReconnectMax, DefaultReconnectMax},
	} {
		if *d.v < 0 {
			return fmt.Errorf("relay: %s must not be negative, got %v", d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if c.ReconnectMax < c.ReconnectMin {
		return fmt.Errorf("relay: ReconnectMax %v is below ReconnectMin %v", c.ReconnectMax, c.ReconnectMin)
	}
	if c.LinkTimeout <= c.HeartbeatInterval {
		return fmt.Errorf("relay: LinkTimeout %v must exceed HeartbeatInterval %v", c.LinkTimeout, c.HeartbeatInterval)
	}
	if c.NACKBuffer == 0 {
		c.NACKBuffer = DefaultNACKBuffer
	}
	if c.NACKBuffer < 0 {
		c.NACKBuffer = 0
	}
	if c.QueueLen < 0 {
		return fmt.Errorf("relay: QueueLen must not be negative, got %d", c.QueueLen)
	}
	if c.QueueLen == 0 {
		c.QueueLen = DefaultQueueLen
	}
	if c.TrackQueueLen < 0 {
		return fmt.Errorf("relay: TrackQueueLen must not be negative, got %d", c.TrackQueueLen)
	}
	if c.TrackQueueLen == 0 {
		c.TrackQueueLen = DefaultTrackQueueLen
	}
	if !c.ListenAddr.IsValid() {
		c.ListenAddr = netip.AddrPortFrom(netip.IPv4Unspecified(), DefaultPort)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Net == nil {
		c.Net = hostNet{}
	}
	return nil
}
