package sfu

// This file holds a connection's types and its life: Join, the accessors,
// and Close. Its offers and answers are in negotiation.go, the tracks it
// publishes in upstream.go, the tracks it receives in downstream.go and its
// data channels in datachannel.go.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"
)

// Why a connection ended on the client's side.
var (
	// ErrConnectionFailed is the Err of a connection whose ICE or DTLS failed.
	ErrConnectionFailed = errors.New("sfu: peer connection failed")
	// ErrPeerClosed is the Err of a connection the client closed (DTLS
	// close_notify).
	ErrPeerClosed = errors.New("sfu: the client closed the peer connection")
)

// Role is what a connection does with media, as in connect.role.
type Role string

// The roles of the signaling protocol.
const (
	RoleSendrecv Role = "sendrecv" // publishes and receives
	RoleSendonly Role = "sendonly" // publishes only
	RoleRecvonly Role = "recvonly" // receives only
)

// ParseRole parses "sendrecv", "sendonly" or "recvonly".
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleSendrecv, RoleSendonly, RoleRecvonly:
		return r, nil
	}
	return "", fmt.Errorf("%w: role %q is not sendrecv, sendonly or recvonly", ErrInvalidRequest, s)
}

func (r Role) sends() bool    { return r == RoleSendrecv || r == RoleSendonly }
func (r Role) receives() bool { return r == RoleSendrecv || r == RoleRecvonly }

// ConnectionHooks are the connection's callbacks to the signaling layer. Nil
// hooks are skipped.
//
// ReOffer and Event are called from the connection's own event goroutine, in
// order, never concurrently with each other. DataChannelMessage is called
// from pion's reader goroutine of that data channel, in order per label. A
// hook may call the connection's methods (Close included), but a hook that
// blocks delays the connection's later hooks.
type ConnectionHooks struct {
	// ReOffer delivers a re-offer SDP (candidates inside) to send to the
	// client. The next one comes only after SetAnswer took the re-answer;
	// without one within Config.AnswerTimeout the connection closes and its
	// Err wraps ErrAnswerTimeout.
	ReOffer func(sdp string)
	// Event reports connections joining and leaving the channel (this one
	// included when it joins, possibly before Join returns; not when it
	// leaves: watch Done), for notify messages.
	Event func(ev ConnectionEvent)
	// DataChannelMessage delivers what the client sends on a non-messaging
	// data channel (signaling: re-answer, candidate, disconnect).
	DataChannelMessage func(label string, data []byte, isText bool)
	// DataChannelsOpen is called once, from the event goroutine, when every
	// data channel of the connection (signaling, notify, push and the
	// messaging ones) is open on the server's side. The client may get its
	// datachannel events a little later.
	DataChannelsOpen func()
	// SimulcastSwitched reports, from the event goroutine, that the layer
	// the connection receives of a publisher's simulcast video changed.
	SimulcastSwitched func(ev SimulcastSwitch)
}

// JoinRequest is what the signaling layer read from connect.
type JoinRequest struct {
	// ChannelID is the channel_id, 1 to 255 bytes.
	ChannelID string
	// ConnectionID is unique on the node; empty means NewConnectionID().
	ConnectionID string
	// ClientID is the client_id, reported in events.
	ClientID string
	// Role is the connection's role.
	Role Role
	// Audio and Video ask for an upstream m-line of that kind (send roles
	// only): audio first, then video, before every forwarded track.
	Audio, Video bool
	// DataChannels are the messaging channels requested; labels start with
	// "#". The signaling, notify and push channels are always opened.
	DataChannels []DataChannelSpec
	// Simulcast offers a sending connection's video m-line as simulcast:
	// the client sends up to three layers, r0 to r2 (Offer.Encodings).
	Simulcast bool
	// SimulcastRid is the layer the connection receives of simulcast
	// video (connect's simulcast_request_rid or simulcast_rid; RidAuto
	// leaves it to the congestion control); empty means RidR0, the lowest.
	SimulcastRid SimulcastRid
	// AudioCodec and VideoCodec are connect's audio.codec_type and
	// video.codec_type: "OPUS"; "VP8", "VP9", "H264", "H265" or "AV1" (any
	// case). The upstream m-line of that kind offers this codec first, so a
	// client that publishes sends it. Empty means the server's order: Opus;
	// VP8, VP9, H264, AV1, H265. Another name, or one the client's SDP does
	// not list, fails Join with ErrUnsupportedCodec.
	AudioCodec, VideoCodec string
	// AudioBitRate and VideoBitRate are connect's bit_rate, in kbps: the
	// most the client should send on its upstream m-line of that kind
	// (b=AS and b=TIAS in every offer). 0 means no limit.
	AudioBitRate, VideoBitRate int
	// ClientSDP is connect's sdp, an offer the client made only to show
	// what it can receive. When set, a codec it does not list is never
	// forwarded to it (such tracks get no m-line) nor accepted as its
	// AudioCodec or VideoCodec. Empty means the client takes any codec.
	ClientSDP string
	// Hooks are the connection's callbacks.
	Hooks ConnectionHooks
}

// Mids names the mids of the upstream m-lines, as in offer.mid; empty when
// there is none.
type Mids struct {
	Audio string
	Video string
}

// Offer is the initial offer of a connection.
type Offer struct {
	// SDP holds every server candidate.
	SDP string
	// Mids are the upstream m-lines' mids.
	Mids Mids
	// DataChannels lists every data channel the server opens, for
	// offer.data_channels.
	DataChannels []DataChannelSpec
	// Simulcast is true when the video m-line is offered as simulcast;
	// Encodings are then the layers, for offer.encodings.
	Simulcast bool
	Encodings []Encoding
}

// Connection is one client's peer connection in a channel. The server is
// the offerer: Join returns the offer; give the answer to SetAnswer and the
// client's candidates to AddICECandidate; re-offers come through
// ConnectionHooks.ReOffer and their answers go to SetAnswer too.
type Connection struct {
	sfu       *SFU
	api       *webrtc.API
	id        string
	clientID  string
	channelID string
	role      Role
	logger    *slog.Logger
	hooks     ConnectionHooks
	dcs       map[string]*dcEntry // written before the connection joins its channel
	offer     Offer
	done      chan struct{}

	// pc, q and ch are set by Join under mu, since DisconnectAll and
	// SFU.Close can see (and close) the connection as soon as it is counted.
	// Code that runs after Join set them (setup, hooks, pion callbacks,
	// media goroutines) reads them without the lock.
	pc *webrtc.PeerConnection
	q  *eventQueue
	ch *Channel

	mu           sync.Mutex
	closed       bool
	err          error
	answerTimer  *time.Timer // runs while an offer waits for its answer
	offerGen     uint64      // counts offers, so that a stale timer does nothing
	answeredGen  uint64      // the offerGen of the last offer answered
	answered     bool        // the first answer was applied
	awaiting     bool        // an offer waits for its answer
	dirty        bool        // tracks changed since the last offer
	queued       bool        // a re-offer attempt is queued
	offerMids    []string
	midTr        [2]*webrtc.RTPTransceiver // upstream audio, video
	downs        map[*source]*downTrack
	rids         subscriptionRids                 // layers asked for of simulcast tracks
	simulcast    bool                             // the upstream video is offered as simulcast
	free         map[webrtc.RTPCodecType][]freeTr // inactive forwarded m-lines, per kind
	pendingCands []webrtc.ICECandidateInit
	codecs       codecChoice    // what the client asked for and can receive
	bwe          atomic.Uint64  // downlink estimate, bits/s (Stats); 0 none
	wg           sync.WaitGroup // media goroutines

	up    upLayers  // the simulcast layers published
	dl    *downlink // congestion control; nil when off
	pacer *pacer    // nil when congestion control is off

	direct *directSend // the direct send path (direct.go); nil: pion's
	srs    *srRegistry // the sender reports' streams (sr.go); nil: pion's
	upsw   *upRecv     // its remote streams' switch (recvswitch.go); nil: pion's
}

func validateJoin(req *JoinRequest) error {
	if req.ChannelID == "" || len(req.ChannelID) > MaxChannelIDLen {
		return fmt.Errorf("%w: channel id must be 1 to %d bytes, got %d", ErrInvalidRequest, MaxChannelIDLen, len(req.ChannelID))
	}
	if _, err := ParseRole(string(req.Role)); err != nil {
		return err
	}
	if req.SimulcastRid != "" {
		if _, err := ParseSimulcastRequest(string(req.SimulcastRid)); err != nil {
			return err
		}
	}
	seen := map[string]bool{}
	for _, d := range req.DataChannels {
		switch {
		case !strings.HasPrefix(d.Label, "#") || len(d.Label) < 2:
			return fmt.Errorf("%w: data channel label %q must start with # and name something", ErrInvalidRequest, d.Label)
		case len(d.Label) > 65535:
			return fmt.Errorf("%w: data channel label longer than 65535 bytes", ErrInvalidRequest)
		case seen[d.Label]:
			return fmt.Errorf("%w: data channel %q requested twice", ErrInvalidRequest, d.Label)
		case d.MaxRetransmits != nil && d.MaxPacketLifeTime != nil:
			return fmt.Errorf("%w: data channel %q sets both max_retransmits and max_packet_life_time", ErrInvalidRequest, d.Label)
		case d.Direction != "" && d.Direction != "sendrecv" && d.Direction != "sendonly" && d.Direction != "recvonly":
			return fmt.Errorf("%w: data channel %q direction %q is not sendrecv, sendonly or recvonly", ErrInvalidRequest, d.Label, d.Direction)
		}
		seen[d.Label] = true
	}
	return nil
}

// Join creates a connection in the channel and returns it with its offer,
// which holds all the server's candidates (Join waits for gathering, bounded
// by ctx). It refuses with a *CapacityError beyond Config.MaxConnections.
// The client must answer within Config.AnswerTimeout, or the connection
// closes with an Err wrapping ErrAnswerTimeout. A DisconnectAll or Close
// that comes while Join runs makes it fail or closes the connection it
// returns.
func (s *SFU) Join(ctx context.Context, req JoinRequest) (*Connection, error) {
	if err := validateJoin(&req); err != nil {
		return nil, err
	}
	codecs, err := checkCodecs(&req)
	if err != nil {
		return nil, err
	}
	if req.ConnectionID == "" {
		req.ConnectionID = NewConnectionID()
	}
	c := &Connection{
		sfu:       s,
		id:        req.ConnectionID,
		clientID:  req.ClientID,
		channelID: req.ChannelID,
		role:      req.Role,
		hooks:     req.Hooks,
		logger:    s.logger.With("channel", req.ChannelID, "connection", req.ConnectionID),
		dcs:       map[string]*dcEntry{},
		downs:     map[*source]*downTrack{},
		free:      map[webrtc.RTPCodecType][]freeTr{},
		done:      make(chan struct{}),
		codecs:    codecs,
		rids:      subscriptionRids{def: req.SimulcastRid},
		simulcast: req.Simulcast && req.Video && req.Role.sends(),
	}
	if c.rids.def == "" {
		c.rids.def = RidR0
	}
	if c.simulcast {
		c.offer.Simulcast = true
		c.offer.Encodings = SimulcastEncodings(codecs.video)
	}
	if err := s.reserve(c); err != nil {
		return nil, err
	}
	// From here on DisconnectAll and SFU.Close see c and may close it at any
	// moment: every step below checks for that and cleans up after itself.
	s.mu.Lock()
	api := s.api
	ds := s.newDirectSend()
	if ds != nil {
		// An API of its own, to see its DTLS keys (direct.go).
		api = webrtc.NewAPI(webrtc.WithMediaEngine(s.me), webrtc.WithInterceptorRegistry(s.ir),
			webrtc.WithSettingEngine(ds.settingEngine(s.se)))
	}
	s.mu.Unlock()
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		c.closeWith(err)
		return nil, fmt.Errorf("sfu: join: new peer connection: %w", err)
	}
	c.mu.Lock()
	if c.closed {
		err := c.err
		c.mu.Unlock()
		_ = pc.Close()
		return nil, fmt.Errorf("sfu: join: %w", err)
	}
	c.api, c.pc, c.q = api, pc, newEventQueue()
	c.srs = s.srs.take(pc.ID())
	c.upsw = s.upsw.take(pc.ID())
	c.startCongestion()
	if ds != nil && c.dl != nil {
		ds.tw = c.dl.tw
		c.direct = ds
	}
	c.mu.Unlock()
	// joinErr prefers the reason of a concurrent close to the error it caused.
	joinErr := func(err error) error {
		c.closeWith(err)
		if reason := c.Err(); reason != err {
			return fmt.Errorf("sfu: join: %w", reason)
		}
		return err
	}
	if err := c.setup(req); err != nil {
		return nil, joinErr(err)
	}
	for {
		ch, err := s.Channel(req.ChannelID)
		if err != nil {
			return nil, joinErr(err)
		}
		if err := ch.addConnection(c); err == nil {
			break
		} else if !errors.Is(err, errChannelDead) {
			return nil, joinErr(err)
		}
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	c.mu.Lock()
	err = c.offerLocked()
	// Mids are assigned by the first offer and never change.
	if tr := c.midTr[0]; tr != nil {
		c.offer.Mids.Audio = tr.Mid()
	}
	if tr := c.midTr[1]; tr != nil {
		c.offer.Mids.Video = tr.Mid()
	}
	c.mu.Unlock()
	if err != nil {
		return nil, joinErr(err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		c.closeWith(ctx.Err())
		return nil, fmt.Errorf("sfu: join: gathering candidates: %w", ctx.Err())
	case <-c.done:
		return nil, fmt.Errorf("sfu: join: %w", c.Err())
	}
	c.mu.Lock()
	closed, reason := c.closed, c.err
	var ld *webrtc.SessionDescription
	if !closed {
		// With gathering complete the description holds every candidate.
		if ld = pc.LocalDescription(); ld != nil {
			c.offer.SDP = c.clientSDP(ld.SDP)
			c.armAnswerTimerLocked()
		}
	}
	c.mu.Unlock()
	switch {
	case closed:
		return nil, fmt.Errorf("sfu: join: %w", reason)
	case ld == nil:
		return nil, joinErr(errors.New("sfu: no local description after gathering"))
	}
	return c, nil
}

// setup creates the upstream m-lines and the data channels, and has a peer
// connection that fails or is closed close the connection.
func (c *Connection) setup(req JoinRequest) error {
	if err := c.addUpstream(req.Audio, req.Video); err != nil {
		return err
	}
	if err := c.openDataChannels(req.DataChannels); err != nil {
		return err
	}
	c.pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		switch st {
		case webrtc.PeerConnectionStateConnected:
			c.enableDirect()
			c.enableDirectRecv()
		case webrtc.PeerConnectionStateFailed:
			c.closeWith(ErrConnectionFailed)
		case webrtc.PeerConnectionStateClosed:
			c.closeWith(ErrPeerClosed) // no-op when Close caused it
		}
	})
	return nil
}

// ID returns the connection id.
func (c *Connection) ID() string { return c.id }

// ChannelID returns the connection's channel id.
func (c *Connection) ChannelID() string { return c.channelID }

// Role returns the connection's role.
func (c *Connection) Role() Role { return c.role }

// Offer returns the initial offer.
func (c *Connection) Offer() Offer {
	o := c.offer
	o.DataChannels = slices.Clone(o.DataChannels)
	o.Encodings = slices.Clone(o.Encodings)
	return o
}

// Done is closed when the connection is closed, for any reason.
func (c *Connection) Done() <-chan struct{} { return c.done }

// Err returns nil while the connection is open, then why it closed:
// net.ErrClosed (Close), ErrDisconnected, ErrChannelClosed,
// ErrConnectionFailed, ErrPeerClosed, an error wrapping ErrAnswerTimeout,
// or the error that failed Join. Test it with errors.Is.
func (c *Connection) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// event queues a connection event for the Event hook.
func (c *Connection) event(ev ConnectionEvent) {
	if fn := c.hooks.Event; fn != nil {
		c.q.push(func() { fn(ev) })
	}
}

// Close closes the connection: its tracks leave the channel (the others get
// a re-offer) and the peer connection closes. It returns once the
// connection's media goroutines have ended. Safe to call more than once.
func (c *Connection) Close() error {
	c.closeWith(net.ErrClosed)
	return nil
}

func (c *Connection) closeWith(reason error) { c.closeIf(reason, nil) }

// closeIf closes the connection with reason if it is open and still, when
// not nil, returns true; still runs with c.mu held. Every caller returns
// only once the connection is closed and its media goroutines have ended.
func (c *Connection) closeIf(reason error, still func() bool) {
	c.mu.Lock()
	if !c.closed && still != nil && !still() {
		c.mu.Unlock()
		return
	}
	first := !c.closed
	var (
		downs map[*source]*downTrack
		pc    *webrtc.PeerConnection
		q     *eventQueue
		ch    *Channel
	)
	if first {
		c.closed = true
		c.err = reason
		c.direct.stop()
		downs = c.downs
		c.downs = map[*source]*downTrack{}
		pc, q, ch = c.pc, c.q, c.ch
		c.stopAnswerTimerLocked()
	}
	c.mu.Unlock()
	if first {
		if c.dl != nil { // set before the connection could close
			c.sfu.cc.clock.remove(c)
		}
		for src, d := range downs {
			src.removeSub(d)
		}
		if ch != nil {
			ch.removeConnection(c)
		}
		c.sfu.release(c)
		if pc != nil {
			if err := pc.Close(); err != nil {
				c.logger.Debug("close peer connection", "err", err)
			}
		}
		if q != nil {
			// Not waiting: this may run on the queue's goroutine (a hook
			// calling Close).
			q.stop(false)
		}
		close(c.done)
		c.logger.Debug("connection closed", "reason", reason)
	}
	<-c.done
	c.wg.Wait()
}
