package sfu

// A connection's SDP exchange: the server offers, the client answers.

import (
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

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
	c.offerMids, _ = sdpMids(offer.SDP) // pion's own offer always parses
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

// clientSDP is the text of a local offer as the client gets it. For a
// simulcast publisher it adds the receive simulcast lines to the video
// m-line: pion offers them only once an answer has named the rids, and
// refuses to set a local offer other than the one it made, so its own
// description lacks them in the first offer. Its answer handling takes the
// rids from the answer.
func (c *Connection) clientSDP(s string) string {
	s = c.addBandwidthLocked(s)
	if c.simulcast {
		return addSimulcastRecv(s, c.midTr[1].Mid())
	}
	return s
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

// sdpMids lists the mids of an SDP's media sections in order.
func sdpMids(s string) ([]string, error) {
	var d sdp.SessionDescription
	if err := d.UnmarshalString(s); err != nil {
		return nil, err
	}
	mids := make([]string, 0, len(d.MediaDescriptions))
	for _, m := range d.MediaDescriptions {
		mid, _ := m.Attribute("mid")
		mids = append(mids, mid)
	}
	return mids, nil
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
	got, err := sdpMids(answer)
	if err != nil {
		return fmt.Errorf("sfu: set answer: bad SDP: %w", err)
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
		sdpText = c.clientSDP(c.pc.LocalDescription().SDP)
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
