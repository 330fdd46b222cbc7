package sfu

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

	"github.com/pion/rtcp"
	"github.com/pion/sdp/v3"
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

// The data channels the server opens on every connection, besides the
// messaging ones requested.
const (
	LabelSignaling = "signaling" // re-offer/close out; re-answer, candidate, disconnect in
	LabelNotify    = "notify"    // notify messages out
	LabelPush      = "push"      // push messages out
)

// DataChannelSpec describes one data channel, as requested in
// connect.data_channels and echoed in offer.data_channels.
type DataChannelSpec struct {
	// Label names the channel; requested messaging channels start with "#".
	Label string
	// Direction is the client's: "sendrecv" (or empty), "sendonly" (the
	// client only sends: it gets no messages) or "recvonly" (the client only
	// receives: what it sends is dropped).
	Direction string
	// Ordered delivers messages in order; nil means true.
	Ordered *bool
	// MaxRetransmits and MaxPacketLifeTime (ms) make the channel partially
	// reliable; set at most one.
	MaxRetransmits    *uint16
	MaxPacketLifeTime *uint16
	// Protocol is the channel's subprotocol.
	Protocol string
	// Compress is carried to offer.data_channels for the signaling layer,
	// which does the zlib; the SFU forwards messages as they are.
	Compress bool
	// SenderIDHeader prefixes every message forwarded to this client with
	// the sender's connection id (connect.data_channels header
	// [{type:"sender_connection_id"}]); the header's length is the id's.
	SenderIDHeader bool
}

func (d DataChannelSpec) clientSends() bool    { return d.Direction != "recvonly" }
func (d DataChannelSpec) clientReceives() bool { return d.Direction != "sendonly" }

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
	free         map[webrtc.RTPCodecType][]freeTr // inactive forwarded m-lines, per kind
	pendingCands []webrtc.ICECandidateInit
	wg           sync.WaitGroup // media goroutines
}

// freeTr is a forwarded m-line whose track left: its transceiver has no
// sender and is inactive. It may carry a new track once the answer to offer
// gen (the first to carry it inactive) has been applied; gen 0 means it was
// never offered.
type freeTr struct {
	tr  *webrtc.RTPTransceiver
	gen uint64
}

type dcEntry struct {
	dc   *webrtc.DataChannel
	spec DataChannelSpec
}

func validateJoin(req *JoinRequest) error {
	if req.ChannelID == "" || len(req.ChannelID) > MaxChannelIDLen {
		return fmt.Errorf("%w: channel id must be 1 to %d bytes, got %d", ErrInvalidRequest, MaxChannelIDLen, len(req.ChannelID))
	}
	if _, err := ParseRole(string(req.Role)); err != nil {
		return err
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
	}
	if err := s.reserve(c); err != nil {
		return nil, err
	}
	// From here on DisconnectAll and SFU.Close see c and may close it at any
	// moment: every step below checks for that and cleans up after itself.
	s.mu.Lock()
	api := s.api
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
			c.offer.SDP = ld.SDP
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

// setup creates the upstream transceivers and the data channels.
func (c *Connection) setup(req JoinRequest) error {
	var audioTr, videoTr *webrtc.RTPTransceiver
	if c.role.sends() {
		var err error
		recv := webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}
		if req.Audio {
			if audioTr, err = c.pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, recv); err != nil {
				return fmt.Errorf("sfu: join: audio transceiver: %w", err)
			}
		}
		if req.Video {
			if videoTr, err = c.pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, recv); err != nil {
				return fmt.Errorf("sfu: join: video transceiver: %w", err)
			}
		}
		c.pc.OnTrack(c.onTrack)
	}
	specs := []DataChannelSpec{{Label: LabelSignaling}, {Label: LabelNotify}, {Label: LabelPush}}
	specs = append(specs, req.DataChannels...)
	var opening atomic.Int32
	opening.Store(int32(len(specs)))
	for _, spec := range specs {
		init := &webrtc.DataChannelInit{Ordered: spec.Ordered, MaxRetransmits: spec.MaxRetransmits, MaxPacketLifeTime: spec.MaxPacketLifeTime}
		if spec.Protocol != "" {
			init.Protocol = &spec.Protocol
		}
		dc, err := c.pc.CreateDataChannel(spec.Label, init)
		if err != nil {
			return fmt.Errorf("sfu: join: data channel %q: %w", spec.Label, err)
		}
		if spec.Direction == "" {
			spec.Direction = "sendrecv"
		}
		e := &dcEntry{dc: dc, spec: spec}
		c.dcs[spec.Label] = e
		dc.OnOpen(func() { // once per channel
			if opening.Add(-1) == 0 && c.hooks.DataChannelsOpen != nil {
				c.q.push(c.hooks.DataChannelsOpen)
			}
		})
		label := spec.Label
		if strings.HasPrefix(label, "#") {
			if spec.clientSends() {
				dc.OnMessage(func(m webrtc.DataChannelMessage) { c.ch.deliver(c, label, m.Data) })
			}
		} else {
			dc.OnMessage(func(m webrtc.DataChannelMessage) {
				if fn := c.hooks.DataChannelMessage; fn != nil {
					fn(label, m.Data, m.IsString)
				}
			})
		}
		c.offer.DataChannels = append(c.offer.DataChannels, spec)
	}
	c.pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		switch st {
		case webrtc.PeerConnectionStateFailed:
			c.closeWith(ErrConnectionFailed)
		case webrtc.PeerConnectionStateClosed:
			c.closeWith(ErrPeerClosed) // no-op when Close caused it
		}
	})
	c.midTr = [2]*webrtc.RTPTransceiver{audioTr, videoTr}
	return nil
}

// offerLocked creates and applies a new local offer.
func (c *Connection) offerLocked() error {
	if c.closed {
		return fmt.Errorf("sfu: offer: %w", net.ErrClosed)
	}
	offer, err := c.pc.CreateOffer(nil)
	if err != nil {
		return fmt.Errorf("sfu: create offer: %w", err)
	}
	if err := c.pc.SetLocalDescription(offer); err != nil {
		return fmt.Errorf("sfu: set local offer: %w", err)
	}
	c.offerMids = sdpMids(offer.SDP)
	c.awaiting = true
	c.dirty = false
	c.offerGen++
	for _, list := range c.free {
		for i := range list {
			if list[i].gen == 0 { // never offered until this offer, inactive in it
				list[i].gen = c.offerGen
			}
		}
	}
	return nil
}

// armAnswerTimerLocked starts the answer timeout of the offer just made.
func (c *Connection) armAnswerTimerLocked() {
	c.stopAnswerTimerLocked()
	gen, d := c.offerGen, c.sfu.cfg.AnswerTimeout
	c.answerTimer = time.AfterFunc(d, func() {
		// Close only if this very offer is still unanswered: checked under
		// c.mu by closeIf, so an answer that wins the race is kept.
		c.closeIf(fmt.Errorf("%w: no answer within %v", ErrAnswerTimeout, d), func() bool {
			return c.awaiting && c.offerGen == gen
		})
	})
}

func (c *Connection) stopAnswerTimerLocked() {
	if c.answerTimer != nil {
		c.answerTimer.Stop()
		c.answerTimer = nil
	}
}

// sdpMids lists the mids of an SDP's media sections in order; nil if it
// does not parse.
func sdpMids(s string) []string {
	var d sdp.SessionDescription
	if err := d.UnmarshalString(s); err != nil {
		return nil
	}
	mids := make([]string, 0, len(d.MediaDescriptions))
	for _, m := range d.MediaDescriptions {
		mid, _ := m.Attribute("mid")
		mids = append(mids, mid)
	}
	return mids
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

// SetAnswer applies the client's answer to the outstanding offer or
// re-offer. An answer that does not parse, or whose m-lines do not match the
// offer's, is refused with a clear error and the offer stays outstanding; the
// channel's other connections are not affected.
func (c *Connection) SetAnswer(answer string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return fmt.Errorf("sfu: set answer: %w", net.ErrClosed)
	}
	if !c.awaiting {
		return ErrNoPendingOffer
	}
	var d sdp.SessionDescription
	if err := d.UnmarshalString(answer); err != nil {
		return fmt.Errorf("sfu: set answer: bad SDP: %w", err)
	}
	got := make([]string, 0, len(d.MediaDescriptions))
	for _, m := range d.MediaDescriptions {
		mid, _ := m.Attribute("mid")
		got = append(got, mid)
	}
	if !slices.Equal(got, c.offerMids) {
		return fmt.Errorf("%w: answer mids %v, offer mids %v", ErrAnswerMismatch, got, c.offerMids)
	}
	if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		return fmt.Errorf("sfu: set answer: %w", err)
	}
	c.awaiting = false
	c.answeredGen = c.offerGen
	c.stopAnswerTimerLocked()
	if !c.answered {
		c.answered = true
		for _, cand := range c.pendingCands {
			if err := c.pc.AddICECandidate(cand); err != nil {
				c.logger.Debug("bad ICE candidate", "err", err)
			}
		}
		c.pendingCands = nil
	}
	if c.dirty {
		c.kickLocked()
	}
	return nil
}

// maxPendingCandidates bounds the candidates kept before the first answer;
// a browser trickles a handful.
const maxPendingCandidates = 64

// AddICECandidate adds a candidate trickled by the client. An empty
// candidate (end of candidates) is ignored; candidates that arrive before
// the first answer are kept until it is applied (up to 64; later ones are
// dropped).
func (c *Connection) AddICECandidate(cand webrtc.ICECandidateInit) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return fmt.Errorf("sfu: add ICE candidate: %w", net.ErrClosed)
	}
	if cand.Candidate == "" {
		return nil
	}
	if !c.answered {
		if len(c.pendingCands) < maxPendingCandidates {
			c.pendingCands = append(c.pendingCands, cand)
		}
		return nil
	}
	if err := c.pc.AddICECandidate(cand); err != nil {
		return fmt.Errorf("sfu: add ICE candidate: %w", err)
	}
	return nil
}

// Send sends a binary message to the client on the data channel label.
func (c *Connection) Send(label string, data []byte) error {
	e, err := c.dc(label)
	if err != nil {
		return err
	}
	if err := e.dc.Send(data); err != nil {
		return fmt.Errorf("sfu: send on %q: %w", label, err)
	}
	return nil
}

// SendText sends a text message (JSON) to the client on the data channel
// label.
func (c *Connection) SendText(label, text string) error {
	e, err := c.dc(label)
	if err != nil {
		return err
	}
	if err := e.dc.SendText(text); err != nil {
		return fmt.Errorf("sfu: send on %q: %w", label, err)
	}
	return nil
}

// CloseDataChannels closes every data channel of the connection (a stream
// reset) and waits, until ctx ends, for the client to close its side too;
// the peer connection stays up until Close, which ends any wait left. A
// sora-js-sdk client that switched to data-channel signaling waits for its
// channels to close after its disconnect, and closing the peer connection
// at once would make them fail instead.
func (c *Connection) CloseDataChannels(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, e := range c.dcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = e.dc.GracefulClose() // returns once the client reset its side, or the connection closed
		}()
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *Connection) dc(label string) (*dcEntry, error) {
	select {
	case <-c.done:
		return nil, fmt.Errorf("sfu: send: %w", net.ErrClosed)
	default:
	}
	e := c.dcs[label]
	if e == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownDataChannel, label)
	}
	return e, nil
}

// sendMessage forwards a channel message if this connection has the label
// and may receive on it. Messages before the channel opened are dropped.
func (c *Connection) sendMessage(label, senderID string, data []byte) {
	e := c.dcs[label]
	if e == nil || !e.spec.clientReceives() {
		return
	}
	if e.spec.SenderIDHeader {
		data = append([]byte(senderID), data...)
	}
	if err := e.dc.Send(data); err != nil {
		c.logger.Debug("message not delivered", "label", label, "err", err)
	}
}

// event queues a connection event for the Event hook.
func (c *Connection) event(ev ConnectionEvent) {
	if fn := c.hooks.Event; fn != nil {
		c.q.push(func() { fn(ev) })
	}
}

// kickLocked queues one re-offer attempt.
func (c *Connection) kickLocked() {
	if c.queued || c.closed {
		return
	}
	c.queued = true
	c.q.push(c.reoffer)
}

// reoffer sends a re-offer if tracks changed and no offer is outstanding.
func (c *Connection) reoffer() {
	c.mu.Lock()
	c.queued = false
	if c.closed || !c.answered || c.awaiting || !c.dirty {
		c.mu.Unlock()
		return
	}
	err := c.offerLocked()
	var sdpText string
	if err == nil {
		sdpText = c.pc.LocalDescription().SDP
		if c.hooks.ReOffer != nil {
			c.armAnswerTimerLocked()
		}
	}
	c.mu.Unlock()
	if err != nil {
		c.logger.Warn("re-offer failed", "err", err)
		return
	}
	if fn := c.hooks.ReOffer; fn != nil {
		fn(sdpText)
	}
}

// addDown subscribes the connection to src. Called with ch.mu held.
//
// The track goes on an inactive m-line of its kind when there is one whose
// inactive state was already answered (reuseLocked), so that a long-lived
// subscriber's SDP holds its upstream m-lines plus at most as many forwarded
// ones as it ever had tracks at once, not one per track ever forwarded.
// Otherwise it gets a new sendonly m-line. Either way its sender is made by
// pion's PeerConnection (AddTrack, AddTransceiverFromTrack), so it has the
// connection's interceptors: the NACK responder and sender reports. A sender
// made with API.NewRTPSender would not: that API's interceptor is a no-op;
// only the peer connection's own copy of the API has the built chain.
func (c *Connection) addDown(src *source) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.downs[src] != nil {
		return nil
	}
	d := &downTrack{src: src}
	if f := c.takeFreeLocked(src.info.Kind); f != nil {
		if sender, err := c.reuseLocked(f.tr, d); err != nil {
			c.logger.Debug("inactive m-line not reused", "mid", f.tr.Mid(), "err", err)
			c.free[src.info.Kind] = append(c.free[src.info.Kind], *f) // still free
		} else {
			d.tr, d.sender = f.tr, sender
			d.reused, d.reusedAt = f, c.offerGen
		}
	}
	if d.sender == nil {
		tr, err := c.pc.AddTransceiverFromTrack(d, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			return fmt.Errorf("sfu: add transceiver: %w", err)
		}
		d.tr, d.sender = tr, tr.Sender()
	}
	c.downs[src] = d
	src.addSub(d)
	c.wg.Add(1)
	go c.readRTCP(d)
	c.dirty = true
	c.kickLocked()
	return nil
}

// takeFreeLocked removes from the free list and returns an inactive m-line
// of kind that the client has already answered as inactive; nil if there is
// none. An m-line that goes inactive in the outstanding (or next) offer is
// not reused in that same offer: the client must first see the old track
// end.
//
// It prefers an m-line that was inactive in the last offer only: a pion
// (v4.2.26) answerer stops the receiver of an m-line each time an offer
// carries it inactive, and one stopped twice never delivers the media of a
// later track reusing it. Browsers do not have that problem.
//
// With Config.MLineReuse ReuseOnce (the default) only such m-lines, and ones
// never offered, are reused; the others stay inactive for good.
func (c *Connection) takeFreeLocked(kind webrtc.RTPCodecType) *freeTr {
	switch c.sfu.cfg.MLineReuse {
	case ReuseNever:
		return nil
	case ReuseOnce:
		// Forget the m-lines carried inactive in two offers or more: they
		// can never be taken.
		c.free[kind] = slices.DeleteFunc(c.free[kind], func(f freeTr) bool { return f.gen != 0 && f.gen < c.offerGen })
	}
	list := c.free[kind]
	pick := -1
	for i, f := range list {
		if f.gen > c.answeredGen {
			continue
		}
		if pick < 0 || f.gen == c.offerGen {
			pick = i
		}
		if f.gen == c.offerGen {
			break
		}
	}
	if pick < 0 {
		return nil
	}
	f := list[pick]
	c.free[kind] = slices.Delete(list, pick, pick+1)
	return &f
}

// reuseLocked puts d on the free transceiver tr and returns its sender. The
// next offer carries tr sendonly again, with the same mid, d's a=msid and a
// new SSRC; pion calls the sender's Send (binding the interceptors) when
// that offer is answered, as for a new m-line.
//
// The sender comes from pc.AddTrack, the only way to have pion make a sender
// with the connection's interceptors for an existing m-line. AddTrack takes
// the first transceiver of the kind it may send on, in m-line order, which
// can be the upstream (recvonly) one or another free one; the sender is then
// moved to tr before anything else sees it: nothing negotiates it before the
// next offer, which is made under c.mu.
func (c *Connection) reuseLocked(tr *webrtc.RTPTransceiver, d *downTrack) (*webrtc.RTPSender, error) {
	before := len(c.pc.GetTransceivers())
	sender, err := c.pc.AddTrack(d)
	if err != nil {
		return nil, fmt.Errorf("sfu: add track: %w", err)
	}
	var landed *webrtc.RTPTransceiver
	trs := c.pc.GetTransceivers()
	for _, t := range trs {
		if t.Sender() == sender {
			landed = t
			break
		}
	}
	if landed == tr {
		return sender, nil
	}
	// Give the transceiver AddTrack picked its former state (no sender,
	// its direction back to what it was), then attach the sender to tr.
	if landed != nil {
		if err := landed.SetSender(sender, nil); err != nil {
			c.removeSenderLocked(sender)
			return nil, fmt.Errorf("sfu: move sender from mid %q: %w", landed.Mid(), err)
		}
	}
	if len(trs) > before {
		// pion found no m-line to reuse and added one. Not expected (tr is
		// one it may reuse); if it happens the new transceiver, never
		// offered, is stopped (a stopped one is never reused).
		c.logger.Warn("pion added an m-line while one was being reused", "mid", tr.Mid())
		if err := trs[before].Stop(); err != nil {
			c.logger.Debug("stop unexpected transceiver", "err", err)
		}
	}
	if err := tr.SetSender(sender, d); err != nil {
		c.removeSenderLocked(sender)
		return nil, fmt.Errorf("sfu: set sender on mid %q: %w", tr.Mid(), err)
	}
	return sender, nil
}

// removeSenderLocked stops a sender that could not be used and detaches it
// from whatever transceiver holds it.
func (c *Connection) removeSenderLocked(sender *webrtc.RTPSender) {
	if err := c.pc.RemoveTrack(sender); err != nil {
		_ = sender.Stop()
	}
}

// removeDown unsubscribes the connection from src: its m-line goes inactive
// in the next offer, and once the client has answered that offer it may
// carry another track of its kind (addDown). Called with ch.mu held.
func (c *Connection) removeDown(src *source) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.downs[src]
	if d == nil {
		return
	}
	delete(c.downs, src)
	src.removeSub(d)
	if c.closed {
		return
	}
	// RemoveTrack stops the sender, which ends readRTCP, and leaves the
	// transceiver inactive with no sender.
	if err := c.pc.RemoveTrack(d.sender); err != nil {
		c.logger.Debug("remove track", "err", err)
	} else {
		f := freeTr{tr: d.tr, gen: c.offerGen + 1} // the next offer is the first to carry it inactive
		switch {
		case d.reused != nil && d.reusedAt == c.offerGen:
			f = *d.reused // no offer carried the track: the m-line is as it was
		case d.tr.Mid() == "":
			f.gen = 0 // never offered: the client never saw it
		}
		kind := d.tr.Kind()
		c.free[kind] = append(c.free[kind], f)
	}
	c.dirty = true
	c.kickLocked()
}

// readRTCP reads a sender's RTCP (which runs the NACK responder) and passes
// keyframe requests to the source.
func (c *Connection) readRTCP(d *downTrack) {
	defer c.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, _, err := d.sender.Read(buf)
		if err != nil {
			return
		}
		if hasKeyframeRequest(buf[:n]) {
			d.src.requestKeyframe()
		}
	}
}

// onTrack publishes an upstream track into the channel and pumps its RTP.
func (c *Connection) onTrack(track *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.wg.Add(2)
	c.mu.Unlock()
	defer c.wg.Done()
	// The publisher's RTCP (sender reports) reaches the interceptors only
	// when read; the receiver reports sent back need it for their
	// LSR/DLSR fields, from which the client computes its RTT.
	go func() {
		defer c.wg.Done()
		buf := make([]byte, 1500)
		for {
			if _, _, err := recv.Read(buf); err != nil {
				return
			}
		}
	}()
	kind := track.Kind()
	info := TrackInfo{ID: c.id + "-" + kind.String(), StreamID: c.id, Kind: kind, Codec: track.Codec().RTPCodecCapability}
	ssrc := uint32(track.SSRC())
	kr := KeyframeRequesterFunc(func() {
		if err := c.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}}); err != nil {
			c.logger.Debug("keyframe request", "err", err)
		}
	})
	src, err := c.ch.addLocalSource(c, info, kr)
	if err != nil {
		c.logger.Warn("upstream track refused", "track", info.ID, "err", err)
		return
	}
	defer c.ch.removeSource(src)
	buf := make([]byte, 1500)
	for {
		n, _, err := track.Read(buf)
		if err != nil {
			return
		}
		if err := src.write(buf[:n]); errors.Is(err, net.ErrClosed) {
			return
		}
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
		downs = c.downs
		c.downs = map[*source]*downTrack{}
		pc, q, ch = c.pc, c.q, c.ch
		c.stopAnswerTimerLocked()
	}
	c.mu.Unlock()
	if first {
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
