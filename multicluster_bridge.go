package shoal

import (
	"sync"
	"sync/atomic"

	"github.com/shoal-sfu/shoal/relay"
)

// The bridge joins a gateway's two relays for the channels it bridges
// between clusters: the cluster's own relay (intra, keyed with the cluster
// key) and the inter-cluster relay (inter, keyed with the multi-cluster
// key). Each relay's Local is the node's SFU (relay.SFULocal), wrapped:
//
//   - a track a relay brings in (a remote track) goes to the SFU, as
//     always, and is also relayed on the other relay while that relay has
//     the channel open (a tee: one atomic load per packet);
//   - a message a relay brings in goes to the SFU and to the other relay.
//
// The tracks and messages of the gateway's own clients reach both relays
// through their SFULocal. A remote track is never sent back on the relay
// it came from, and only the bridging gateway has the inter relay open for
// a channel, so nothing loops: other nodes of the cluster receive the
// other clusters' tracks from the bridge and relay none of them on.

const (
	sideIntra = 0
	sideInter = 1
)

type bridge struct {
	relays [2]*relay.Relay

	mu     sync.Mutex
	open   [2]map[string]bool                 // channel open on the side's relay
	remote [2]map[string]map[string]*teeTrack // side → channel → track id → remote track
}

func newBridge() *bridge {
	b := &bridge{}
	for s := range 2 {
		b.open[s] = map[string]bool{}
		b.remote[s] = map[string]map[string]*teeTrack{}
	}
	return b
}

// local wraps the SFU's Local of one side's relay.
func (b *bridge) local(side int, inner relay.Local) relay.Local {
	return &bridgeLocal{b: b, side: side, inner: inner}
}

type bridgeLocal struct {
	b     *bridge
	side  int
	inner relay.Local
}

// RelayChannel implements relay.Local: the SFU's sink, and the other
// side's remote tracks of the channel relayed on this side too.
func (l *bridgeLocal) RelayChannel(r *relay.Relay, channel string) (relay.ChannelSink, error) {
	sink, err := l.inner.RelayChannel(r, channel)
	if err != nil {
		return nil, err
	}
	b := l.b
	b.mu.Lock()
	b.open[l.side][channel] = true
	var tees []*teeTrack
	for _, t := range b.remote[1-l.side][channel] {
		tees = append(tees, t)
	}
	b.mu.Unlock()
	for _, t := range tees {
		b.attach(l.side, channel, t)
	}
	return &bridgeSink{l: l, channel: channel, inner: sink}, nil
}

// attach relays remote track t (of the other side) on side's relay, unless
// it is relayed there already or went away meanwhile.
func (b *bridge) attach(side int, channel string, t *teeTrack) {
	r := b.relays[side]
	if r == nil || t.out.Load() != nil {
		return
	}
	lt, err := r.AddLocalTrack(channel, t.info, t.kf)
	if err != nil {
		return // the channel closed meanwhile
	}
	b.mu.Lock()
	ok := b.open[side][channel] && b.remote[1-side][channel][t.info.ID] == t && t.out.CompareAndSwap(nil, lt)
	b.mu.Unlock()
	if !ok {
		_ = lt.Close()
	}
}

type bridgeSink struct {
	l       *bridgeLocal
	channel string
	inner   relay.ChannelSink
}

func (k *bridgeSink) AddRemoteTrack(from string, info relay.TrackInfo, kf relay.KeyframeRequester) (relay.TrackWriter, error) {
	b, side := k.l.b, k.l.side
	// The same track from another peer supersedes the one still held: a
	// bridge that took over from a stopped one announces the tracks the
	// old one relayed, while the old link, down, still keeps them (a link
	// keeps its remote tracks through a break, to resume them).
	b.mu.Lock()
	stale := b.remote[side][k.channel][info.ID]
	b.mu.Unlock()
	if stale != nil && stale.from != from {
		_ = stale.Close()
	}
	w, err := k.inner.AddRemoteTrack(from, info, kf)
	if err != nil {
		return nil, err
	}
	t := &teeTrack{b: b, side: side, channel: k.channel, from: from, w: w, info: info, kf: kf}
	b.mu.Lock()
	m := b.remote[side][k.channel]
	if m == nil {
		m = map[string]*teeTrack{}
		b.remote[side][k.channel] = m
	}
	m[info.ID] = t
	other := b.open[1-side][k.channel]
	b.mu.Unlock()
	if other {
		b.attach(1-side, k.channel, t)
	}
	return t, nil
}

func (k *bridgeSink) DeliverMessage(from string, m relay.Message) {
	b, side := k.l.b, k.l.side
	b.mu.Lock()
	other := b.open[1-side][k.channel]
	b.mu.Unlock()
	if r := b.relays[1-side]; other && r != nil {
		_ = r.SendMessage(k.channel, m) // copies m
	}
	k.inner.DeliverMessage(from, m)
}

func (k *bridgeSink) Close() {
	k.inner.Close()
	b, side := k.l.b, k.l.side
	b.mu.Lock()
	delete(b.open[side], k.channel)
	var outs []*relay.LocalTrack
	for _, t := range b.remote[1-side][k.channel] {
		if lt := t.out.Swap(nil); lt != nil {
			outs = append(outs, lt)
		}
	}
	b.mu.Unlock()
	for _, lt := range outs {
		_ = lt.Close()
	}
}

// teeTrack is a remote track of one side: its packets go to the SFU (w)
// and, while the other side relays the channel, to that relay (out).
type teeTrack struct {
	b       *bridge
	side    int
	channel string
	from    string // the peer that relays it
	w       relay.TrackWriter
	info    relay.TrackInfo
	kf      relay.KeyframeRequester
	out     atomic.Pointer[relay.LocalTrack]
}

func (t *teeTrack) WriteRTP(pkt []byte) error {
	err := t.w.WriteRTP(pkt)
	if lt := t.out.Load(); lt != nil {
		_ = lt.WriteRTP(pkt)
	}
	return err
}

func (t *teeTrack) Close() error {
	err := t.w.Close()
	t.b.mu.Lock()
	if m := t.b.remote[t.side][t.channel]; m[t.info.ID] == t {
		delete(m, t.info.ID)
		if len(m) == 0 {
			delete(t.b.remote[t.side], t.channel)
		}
	}
	lt := t.out.Swap(nil)
	t.b.mu.Unlock()
	if lt != nil {
		_ = lt.Close()
	}
	return err
}
