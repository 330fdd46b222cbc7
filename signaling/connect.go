package signaling

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"time"

	"github.com/shoal-sfu/shoal/affinity"
	"github.com/shoal-sfu/shoal/signaling/wire"
)

// connecting is what the steps before the offer learn of a connect.
type connecting struct {
	c      *wire.Connect
	connID string
	// req is placement's request; step 4 adds the hook's affinity.
	req affinity.Request
	// view is the view placement used last; nil without a Cluster.
	view *affinity.View
}

// ended is e as the "stop here" of a step.
func ended(e ending) *ending { return &e }

// handle runs the session's steps in order and returns how it ends. A step
// that returns an ending stops there.
func (se *session) handle(ctx context.Context) ending {
	// 1. connect.
	c, end := se.awaitConnect(ctx)
	if end != nil {
		return *end
	}
	connID := newConnectionID()
	se.logger = se.logger.With("channel", c.ChannelID, "connection", connID)
	p := &connecting{c: c, connID: connID,
		req: affinity.Request{ChannelID: c.ChannelID, Contacted: se.srv.cfg.NodeName, Redirected: c.Redirect}}

	// 2. placement before authentication, when it can decide without the
	// hook.
	if end := se.placeBeforeAuth(ctx, p); end != nil {
		return *end
	}

	// 3. authentication.
	res, end := se.authenticate(ctx, p)
	if end != nil {
		return *end
	}

	// 4. placement after authentication, with the hook's affinity.
	if end := se.placeAfterAuth(ctx, p, res); end != nil {
		return *end
	}

	// 5. serve: claim the channel, join the media, send the offer. Media.Join's
	// context lives until the session ends (or its JoinTimeout).
	jctx, jcancel := context.WithTimeout(ctx, se.srv.cfg.JoinTimeout)
	defer jcancel()
	media, end := se.join(ctx, jctx, p)
	if end != nil {
		return *end
	}
	if end := se.sendOffer(ctx, p, res, media); end != nil {
		return *end
	}

	// 6. then: answers, re-offers, candidates, pings, until the end.
	return se.loop(ctx, media)
}

// awaitConnect is step 1: the first message, within ConnectTimeout, must
// be a valid connect.
func (se *session) awaitConnect(ctx context.Context) (*wire.Connect, *ending) {
	cfg := &se.srv.cfg
	timer := time.NewTimer(cfg.ConnectTimeout)
	defer timer.Stop()
	var m inMsg
	select {
	case m = <-se.in:
	case <-timer.C:
		return nil, &ending{code: wire.CloseConnectTimeout, reason: "CONNECT-TIMEOUT"}
	case <-ctx.Done():
		return nil, &ending{code: wire.CloseServerShutdown, reason: "SERVER-SHUTDOWN"}
	case <-se.killed:
		return nil, ended(se.killEnding())
	}
	if m.err != nil {
		return nil, ended(readErrEnding(m.err))
	}
	msg, err := wire.DecodeClientMessage(m.data, cfg.MaxMessageSize)
	if err != nil {
		return nil, ended(endProto(err))
	}
	c, ok := msg.(*wire.Connect)
	if !ok {
		return nil, &ending{code: wire.CloseUnexpected, reason: "CONNECT-EXPECTED", err: fmt.Errorf("first message is %T, not connect", msg)}
	}
	return c, nil
}

// placeBeforeAuth is step 2: placement decides what it can without the
// hook: refusals always; redirects when relay is off (affinity cannot be
// overridden without relay).
func (se *session) placeBeforeAuth(ctx context.Context, p *connecting) *ending {
	cfg := &se.srv.cfg
	if cfg.Cluster == nil {
		return nil
	}
	var d affinity.Decision
	p.view, d = se.srv.place(p.req, false)
	if d.Action == affinity.ActionRefuse || d.Action == affinity.ActionRedirect && !(p.view.Settings.Cluster && p.view.Settings.Relay) {
		se.srv.countPlacement(d.Action)
	}
	switch {
	case d.Action == affinity.ActionRefuse:
		return &ending{code: wire.CloseRefused, reason: refusalReason(d.Reason), err: d.Err()}
	case d.Action == affinity.ActionRedirect && !(p.view.Settings.Cluster && p.view.Settings.Relay):
		return ended(se.redirect(ctx, d))
	}
	return nil
}

// authenticate is step 3: the Authenticator's answer, or how its denial,
// error or timeout ends the session.
func (se *session) authenticate(ctx context.Context, p *connecting) (AuthResult, *ending) {
	cfg := &se.srv.cfg
	c := p.c
	actx, acancel := context.WithTimeout(ctx, cfg.AuthTimeout)
	res, err := cfg.Authenticator.Authenticate(actx, &AuthRequest{
		ChannelID: c.ChannelID, ClientID: c.ClientID, BundleID: c.BundleID, ConnectionID: p.connID,
		Role: c.Role, Metadata: c.Metadata, NodeName: cfg.NodeName,
		ChannelConnections: se.srv.channelConnections(p.view, c.ChannelID),
		Redirect:           c.Redirect, SoraClient: c.SoraClient, Environment: c.Environment,
	})
	timedOut := actx.Err() != nil
	acancel()
	if err != nil {
		var ae *AuthError
		switch {
		case errors.As(err, &ae):
			return res, &ending{code: wire.CloseAuthDenied, reason: ae.Reason, err: err}
		case ctx.Err() != nil:
			return res, &ending{code: wire.CloseServerShutdown, reason: "SERVER-SHUTDOWN"}
		case timedOut:
			return res, &ending{code: wire.CloseAuthDenied, reason: "AUTH-TIMEOUT", err: err}
		}
		return res, &ending{code: wire.CloseAuthDenied, reason: "AUTH-ERROR", err: err}
	}
	if !res.Allowed {
		reason := res.Reason
		if reason == "" {
			reason = "AUTH-DENIED"
		}
		return res, &ending{code: wire.CloseAuthDenied, reason: reason}
	}
	return res, nil
}

// placeAfterAuth is step 4: placement on a fresh view, with the hook's
// cluster_affinity: redirect, refuse, or go on to serve with a slot taken
// (admission.go).
func (se *session) placeAfterAuth(ctx context.Context, p *connecting, res AuthResult) *ending {
	cfg := &se.srv.cfg
	if res.ClusterAffinity != nil {
		p.req.Affinity = affinity.AffinityOff
		if *res.ClusterAffinity {
			p.req.Affinity = affinity.AffinityOn
		}
	}
	if cfg.Cluster == nil {
		return nil
	}
	var d affinity.Decision
	p.view, d = se.srv.place(p.req, true)
	se.slot = d.Action == affinity.ActionServe
	se.srv.countPlacement(d.Action)
	switch d.Action {
	case affinity.ActionRefuse:
		return &ending{code: wire.CloseRefused, reason: refusalReason(d.Reason), err: d.Err()}
	case affinity.ActionRedirect:
		return ended(se.redirect(ctx, d))
	}
	return nil
}

// join is step 5's first half: claim the channel in the cluster (for its
// first local connection) and create the media connection. jctx bounds
// both.
func (se *session) join(ctx, jctx context.Context, p *connecting) (MediaConn, *ending) {
	cfg := &se.srv.cfg
	c := p.c
	owners, err := se.srv.acquire(jctx, c.ChannelID)
	if err != nil {
		se.releaseSlot()
		// The view may have been stale (another node created the session
		// meanwhile): place again on a fresh one.
		if cfg.Cluster != nil {
			if _, d := se.srv.place(p.req, false); d.Action == affinity.ActionRedirect {
				return nil, ended(se.redirect(ctx, d))
			}
		}
		return nil, &ending{code: wire.CloseRefused, reason: "CHANNEL-CLAIM-FAILED", err: err}
	}
	// Two nodes can create one session at the same instant, each placing its
	// first client on itself from a view that showed no session. Raft orders
	// the claims: when affinity gathers this connection and another node's
	// claim came first, the client goes to that node instead.
	if d, ok := gatherOnCreator(p.view, p.req, owners); ok {
		se.srv.release(c.ChannelID)
		se.releaseSlot()
		return nil, ended(se.redirect(ctx, d))
	}
	media, err := cfg.Media.Join(jctx, MediaRequest{
		ChannelID: c.ChannelID, ConnectionID: p.connID, ClientID: c.ClientID, Role: c.Role,
		Audio: c.Audio.Enabled, Video: c.Video.Enabled, DataChannels: c.DataChannels,
		Simulcast: c.SimulcastOn(), SimulcastRid: c.ReceiveRid(),
		AudioCodec: c.Audio.CodecType, VideoCodec: c.Video.CodecType,
		AudioBitRate: c.Audio.BitRate, VideoBitRate: c.Video.BitRate, ClientSDP: c.SDP,
		Events: MediaEvents{
			ReOffer: func(sdp string) { se.push(queued{reOffer: sdp}) },
			Event:   func(ev ConnectionEvent) { se.push(queued{event: &ev}) },
			Message: func(label string, data []byte, isText bool) {
				se.push(queued{label: label, data: append([]byte(nil), data...)})
			},
			DataChannelsOpen:  func() { se.push(queued{dcOpen: true}) },
			SimulcastSwitched: func(ev SimulcastSwitch) { se.push(queued{switched: &ev}) },
		},
	})
	if err != nil {
		se.srv.release(c.ChannelID)
		se.releaseSlot()
		if errors.Is(err, ErrMediaFull) {
			return nil, &ending{code: wire.CloseRefused, reason: "NODE-FULL", err: err}
		}
		if errors.Is(err, ErrMediaCodec) {
			return nil, &ending{code: wire.CloseInvalidMessage, reason: "UNSUPPORTED-CODEC", err: err}
		}
		if ctx.Err() != nil {
			return nil, &ending{code: wire.CloseServerShutdown, reason: "SERVER-SHUTDOWN"}
		}
		return nil, &ending{code: wire.CloseInternalError, reason: "MEDIA-ERROR", err: err}
	}
	return media, nil
}

// sendOffer is step 5's second half: the connection is counted as served
// (listed, pushed to, published in the load) unless the node left the
// majority meanwhile (admission.go), data-channel signaling is settled,
// and the offer goes out.
func (se *session) sendOffer(ctx context.Context, p *connecting, res AuthResult, media MediaConn) *ending {
	cfg := &se.srv.cfg
	c, connID := p.c, p.connID
	clientID := c.ClientID
	if clientID == "" {
		clientID = connID
	}
	info := ConnectionInfo{ChannelID: c.ChannelID, ConnectionID: connID, ClientID: clientID, Role: c.Role,
		NodeName: cfg.NodeName, CreatedTime: time.Now().UTC().Truncate(time.Microsecond),
		Audio: connectionMedia(c.Audio), Video: connectionMedia(c.Video), Simulcast: c.SimulcastOn()}
	if end := se.srv.markServed(se, info, media); end != nil {
		_ = media.Close()
		se.srv.release(c.ChannelID)
		return end
	}

	offer := media.Offer()
	se.wantDC, se.ignoreWS = cfg.DataChannelSignaling, cfg.IgnoreDisconnectWebSocket
	if c.DataChannelSignaling != nil {
		se.wantDC = *c.DataChannelSignaling
	}
	if c.IgnoreDisconnectWebSocket != nil {
		se.ignoreWS = *c.IgnoreDisconnectWebSocket
	}
	se.ignoreWS = se.ignoreWS && se.wantDC
	se.dcLabels = make(map[string]bool, len(offer.DataChannels))
	for _, d := range offer.DataChannels {
		se.dcLabels[d.Label] = true
	}
	bundleID := c.BundleID
	if bundleID == "" {
		bundleID = connID
	}
	om := wire.Offer{Type: wire.TypeOffer, SDP: offer.SDP, ConnectionID: connID, ClientID: clientID, BundleID: bundleID,
		ChannelID: c.ChannelID, Metadata: res.Metadata, DataChannels: offer.DataChannels}
	if offer.AudioMid != "" || offer.VideoMid != "" {
		om.Mid = &wire.OfferMid{Audio: offer.AudioMid, Video: offer.VideoMid}
	}
	if offer.Simulcast {
		om.Simulcast, om.Encodings = true, offer.Encodings
	}
	se.bundleID, se.simulcast = bundleID, offer.Simulcast
	if err := se.write(ctx, om); err != nil {
		return &ending{err: fmt.Errorf("write offer: %w", err), now: true}
	}
	return nil
}

// redirect sends the client elsewhere and waits for it to close.
func (se *session) redirect(ctx context.Context, d affinity.Decision) ending {
	if d.SignalingURL == "" {
		return ending{code: wire.CloseInternalError, reason: "NO-SIGNALING-URL", err: fmt.Errorf("node %s has no external_signaling_url", d.Node)}
	}
	if err := se.write(ctx, wire.Redirect{Type: wire.TypeRedirect, Location: d.SignalingURL}); err != nil {
		return ending{err: fmt.Errorf("write redirect: %w", err), now: true}
	}
	se.logger.Debug("redirected", "to", d.Node, "location", d.SignalingURL)
	t := time.NewTimer(se.srv.cfg.RedirectLinger)
	defer t.Stop()
	for {
		select {
		case m := <-se.in:
			if m.err != nil {
				return ending{} // the client closed, as the SDK does
			}
		case <-t.C:
			return ending{code: 1000, reason: "REDIRECTED"}
		case <-ctx.Done():
			return ending{code: wire.CloseServerShutdown, reason: "SERVER-SHUTDOWN"}
		}
	}
}

// gatherOnCreator reports whether a connection whose claim made this node a
// second owner of a session should rather go to the session's creator, and
// the redirect to it: only when the view placement used showed no session
// (so placement meant to create it here), with relay on and affinity in
// effect, and only to a node the view shows connected.
func gatherOnCreator(view *affinity.View, req affinity.Request, owners []string) (affinity.Decision, bool) {
	if view == nil || len(owners) < 2 || owners[0] == req.Contacted || !view.Settings.Cluster || !view.Settings.Relay {
		return affinity.Decision{}, false
	}
	if len(view.Sessions[req.ChannelID].Owners) > 0 {
		// Placement saw the session and chose this node anyway (its node
		// was over the affinity threshold, or full): not a race.
		return affinity.Decision{}, false
	}
	switch req.Affinity {
	case affinity.AffinityOff:
		return affinity.Decision{}, false
	case affinity.AffinityUnset:
		if !view.Settings.DefaultAffinity {
			return affinity.Decision{}, false
		}
	}
	i := view.NodeIndex(owners[0])
	if i < 0 || !view.Nodes[i].Connected || view.Nodes[i].SignalingURL == "" {
		return affinity.Decision{}, false
	}
	n := view.Nodes[i]
	return affinity.Decision{Action: affinity.ActionRedirect, Index: i, Node: n.Name, SignalingURL: n.SignalingURL, APIURL: n.APIURL}, true
}

// connectionMedia is connect's audio or video for ConnectionInfo.
func connectionMedia(m wire.MediaOptions) *ConnectionMedia {
	if !m.Enabled {
		return nil
	}
	return &ConnectionMedia{CodecType: m.CodecType, BitRate: m.BitRate}
}

// newConnectionID returns a random 26-character id in Sora's style.
func newConnectionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:])[:26]
}

// refusalReasons are the close reasons of placement's refusals, in the
// order they are tested.
var refusalReasons = []struct {
	err    error
	reason string
}{
	{affinity.ErrNotInMajority, "NOT-IN-MAJORITY"},
	{affinity.ErrNoCapacity, "NO-CAPACITY"},
	{affinity.ErrSessionNodeFull, "SESSION-NODE-FULL"},
	{affinity.ErrSessionNodeUnavailable, "SESSION-NODE-UNAVAILABLE"},
	{affinity.ErrNodeBlocked, "NODE-BLOCKED"},
	{affinity.ErrUnknownNode, "UNKNOWN-NODE"},
	{affinity.ErrNoUsableNode, "NO-USABLE-NODE"},
}

// refusalReason maps placement's refusals to close reasons.
func refusalReason(err error) string {
	for _, r := range refusalReasons {
		if errors.Is(err, r.err) {
			return r.reason
		}
	}
	return "REFUSED"
}
