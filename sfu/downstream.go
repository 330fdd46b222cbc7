package sfu

// The tracks a connection receives: one sendonly m-line per forwarded
// track, and the reuse of m-lines whose track left (Config.MLineReuse).

import (
	"fmt"
	"slices"

	"github.com/pion/webrtc/v4"
)

// freeTr is a forwarded m-line whose track left: its transceiver has no
// sender and is inactive. It may carry a new track once the answer to offer
// gen (the first to carry it inactive) has been applied; gen 0 means it was
// never offered.
type freeTr struct {
	tr  *webrtc.RTPTransceiver
	gen uint64
}

// addDown subscribes the connection to src. Called with ch.mu held.
//
// The track goes on an inactive m-line of its kind when there is one whose
// inactive state was already answered (reuseLocked), so that a long-lived
// subscriber's SDP holds its upstream m-lines plus at most as many forwarded
// ones as it ever had tracks at once, not one per track ever forwarded.
// Otherwise it gets a new sendonly m-line. Either way its sender is made by
// pion's PeerConnection (AddTrack, AddTransceiverFromTrack), so it has the
// connection's interceptors: sender reports and the RTX gate. A sender
// made with API.NewRTPSender would not: that API's interceptor is a no-op;
// only the peer connection's own copy of the API has the built chain.
func (c *Connection) addDown(src *source) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.downs[src] != nil {
		return nil
	}
	if !c.codecs.canDecode(src.info.Codec) {
		c.logger.Info("track not forwarded: the client's SDP does not list its codec", "track", src.info.ID, "codec", src.info.Codec.MimeType)
		return nil
	}
	d := newDownTrack(src, c)
	if src.sim != nil {
		d.sim = newSimSub(c.rids.of(src.info.StreamID))
	}
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
	// The source's codec first; the others stay listed so that the
	// client's answer keeps them all negotiable (pion offers only the
	// codecs a client once accepted).
	if err := setCodecOrder(d.tr, src.info.Kind, src.info.Codec); err != nil {
		c.logger.Debug("codec preferences", "mid", d.tr.Mid(), "err", err)
	}
	c.downs[src] = d
	c.downsChangedLocked()
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
	c.downsChangedLocked()
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

// readRTCP reads a sender's RTCP (through the connection's interceptors)
// and hands it to the down track: keyframe requests, NACKs, reports. On the
// direct receive path (directrecv.go) it gets only what that path gives
// pion: the compounds with a sender report, and what came before the
// connection switched.
func (c *Connection) readRTCP(d *downTrack) {
	defer c.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, _, err := d.sender.Read(buf)
		if err != nil {
			return
		}
		d.handleRTCP(buf[:n])
		c.noteREMB(buf[:n])
	}
}
