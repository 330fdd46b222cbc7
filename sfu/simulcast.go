package sfu

// Simulcast: a publisher sends its video as up to three layers (rids r0,
// r1, r2, lowest first, as Sora's SDKs do); the channel keeps them as one
// track and forwards one layer to each subscriber. The subscriber's sender
// sees one stream: its SSRC, sequence numbers, timestamps and (VP8, VP9)
// picture ids and TL0PICIDX continue across a layer switch, which happens
// only on a keyframe of the new layer, asked for when the switch is decided.
//
// Which layer a subscriber gets is decided in the write path of the track
// (selectLocked), from what it asked for (Connection.SetSimulcastRid, connect's
// simulcast_rid) and which layers arrive: the highest layer at or below the
// one asked for that is active, else the lowest active one above. A layer is
// active while its media keeps coming at minLayerFPS frames a second or more
// (a browser short of bandwidth keeps a layer alive with a frame now and
// then, and pads it when probing: neither counts).

import (
	"fmt"
	"net"
	"strings"
)

// SimulcastRid names a simulcast layer, as Sora's signaling does.
type SimulcastRid string

// The simulcast rids.
const (
	// RidNone receives no video of simulcast publishers.
	RidNone SimulcastRid = "none"
	// RidR0, RidR1 and RidR2 are the layers, lowest resolution first.
	RidR0 SimulcastRid = "r0"
	RidR1 SimulcastRid = "r1"
	RidR2 SimulcastRid = "r2"
	// RidAuto leaves the layer to the downlink congestion control: the
	// highest one the connection's bandwidth estimate fits (the highest
	// that arrives when congestion control is off). A named layer is a
	// ceiling the congestion control stays under; auto has none.
	RidAuto SimulcastRid = "auto"
)

// ParseSimulcastRid parses a layer or none: "none", "r0", "r1" or "r2".
func ParseSimulcastRid(s string) (SimulcastRid, error) {
	switch r := SimulcastRid(s); r {
	case RidNone, RidR0, RidR1, RidR2:
		return r, nil
	}
	return "", fmt.Errorf("%w: simulcast rid %q is not none, r0, r1 or r2", ErrInvalidRequest, s)
}

// ParseSimulcastRequest parses what a subscriber may ask for: "none",
// "r0", "r1", "r2" or "auto".
func ParseSimulcastRequest(s string) (SimulcastRid, error) {
	if s == string(RidAuto) {
		return RidAuto, nil
	}
	r, err := ParseSimulcastRid(s)
	if err != nil {
		return "", fmt.Errorf("%w: simulcast rid %q is not none, r0, r1, r2 or auto", ErrInvalidRequest, s)
	}
	return r, nil
}

// layer returns the layer index of r: -1 for none, auto (not a layer)
// or anything else.
func (r SimulcastRid) layer() int8 {
	switch r {
	case RidR0:
		return 0
	case RidR1:
		return 1
	case RidR2:
		return 2
	}
	return -1
}

// ceiling returns the highest layer a subscriber asking for r may get:
// r's, the highest for auto, -1 for none.
func (r SimulcastRid) ceiling() int8 {
	if r == RidAuto {
		return maxLayers - 1
	}
	return r.layer()
}

// ridOf names layer l; "none" for -1.
func ridOf(l int8) SimulcastRid {
	switch l {
	case 0:
		return RidR0
	case 1:
		return RidR1
	case 2:
		return RidR2
	}
	return RidNone
}

// maxLayers is the number of simulcast layers a track may have.
const maxLayers = 3

// Encoding is one entry of offer.encodings: the parameters a Sora SDK
// gives to RTCRtpSender.setParameters for one simulcast layer.
type Encoding struct {
	RID                   SimulcastRid
	Active                bool
	ScaleResolutionDownBy float64 // 0: not sent
	MaxBitrate            int     // bits per second; 0: not sent
	MaxFramerate          float64 // 0: not sent
	ScalabilityMode       string  // "": not sent
}

// DefaultSimulcastEncodings are the encodings offered to a simulcast
// publisher: r0 at a quarter of the resolution, r1 at half, r2 at full.
func DefaultSimulcastEncodings() []Encoding {
	return []Encoding{
		{RID: RidR0, Active: true, ScaleResolutionDownBy: 4},
		{RID: RidR1, Active: true, ScaleResolutionDownBy: 2},
		{RID: RidR2, Active: true, ScaleResolutionDownBy: 1},
	}
}

// SimulcastEncodings returns the encodings offered to a simulcast
// publisher whose video codec is mimeType ("": the server's order, VP8
// first): DefaultSimulcastEncodings, each with scalabilityMode L1T3 for
// VP9 and AV1. Chromium sends VP9 or AV1 simulcast, one stream per rid,
// only when the encodings name a scalability mode: without one it takes
// several encodings for one scalable (SVC) stream, and with Sora's
// encodings sent only r0 (checked with Chromium 156 and sora-js-sdk
// 2026.1.0, the root package's TestE2ESimulcastVP9). L1T3 is what it
// sends VP8 simulcast with by default: three temporal layers a rid.
func SimulcastEncodings(mimeType string) []Encoding {
	enc := DefaultSimulcastEncodings()
	if k := codecKindOf(mimeType); k == codecVP9 || k == codecAV1 {
		for i := range enc {
			enc[i].ScalabilityMode = "L1T3"
		}
	}
	return enc
}

// SwitchTrigger says why a subscriber's layer changed.
type SwitchTrigger string

// The triggers of a layer switch, as in Sora's simulcast.switched notify.
const (
	// TriggerReceiver: the subscriber asked for another layer.
	TriggerReceiver SwitchTrigger = "receiver"
	// TriggerSender: the publisher's layers changed (one stopped or came).
	TriggerSender SwitchTrigger = "sender"
)

// SimulcastSwitch tells a subscriber that the layer it receives of one
// publisher's video changed: when the first layer starts (Previous is
// RidNone), between two layers, when the video stops (Current is RidNone:
// RidNone asked for, or the congestion control pausing it) and when it
// starts again.
type SimulcastSwitch struct {
	// SenderConnectionID is the publisher's connection id.
	SenderConnectionID string
	// TrackID is the track's id.
	TrackID string
	// Requested is what the subscriber asks for (RidAuto included).
	Requested SimulcastRid
	// Previous and Current are the layers before and after the switch.
	Previous, Current SimulcastRid
	// Trigger says whether the subscriber's side (its request, or its
	// bandwidth) or the publisher's layers caused the switch.
	Trigger SwitchTrigger
	// AutoRids are the layers the downlink congestion control allows the
	// subscriber at the switch, lowest first (the ones at or under what
	// its bandwidth estimate fits); empty when it is off or pauses the
	// video.
	AutoRids []SimulcastRid
}

// simulcastRids are the rids a simulcast publisher is offered.
var simulcastRids = [maxLayers]SimulcastRid{RidR0, RidR1, RidR2}

// subscriptionRids is what a connection asks to receive of simulcast
// tracks: a default and per-publisher choices. Guarded by Connection.mu.
type subscriptionRids struct {
	def      SimulcastRid
	bySender map[string]SimulcastRid
}

func (r *subscriptionRids) of(sender string) SimulcastRid {
	if rid, ok := r.bySender[sender]; ok {
		return rid
	}
	return r.def
}

// SetSimulcastRid changes the layer the connection receives of the
// simulcast video of the publisher sender (a connection id), or of every
// publisher, present and future, when sender is "". The switch happens at
// the next keyframe of that layer, which is asked for at once; RidNone
// stops the video at once; RidAuto leaves the layer to the congestion
// control. A layer that is not active gives the nearest one below it, else
// above it. Non-simulcast tracks are not affected.
func (c *Connection) SetSimulcastRid(sender string, rid SimulcastRid) error {
	if _, err := ParseSimulcastRequest(string(rid)); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return fmt.Errorf("sfu: set simulcast rid: %w", net.ErrClosed)
	}
	if sender == "" {
		c.rids.def = rid
		c.rids.bySender = nil
	} else {
		if c.rids.bySender == nil {
			c.rids.bySender = map[string]SimulcastRid{}
		}
		c.rids.bySender[sender] = rid
	}
	for src, d := range c.downs {
		if d.sim != nil && (sender == "" || src.info.StreamID == sender) {
			d.sim.setWant(rid)
			src.sim.updateDemand(src, -1)
		}
	}
	return nil
}

// SimulcastRid returns the layer the connection asks for of the publisher
// sender's simulcast video ("": the default), and the layer it receives now
// ("none" when it receives none, or sender publishes no simulcast track).
func (c *Connection) SimulcastRid(sender string) (requested, current SimulcastRid) {
	c.mu.Lock()
	defer c.mu.Unlock()
	requested, current = c.rids.of(sender), RidNone
	for src, d := range c.downs {
		if d.sim != nil && src.info.StreamID == sender {
			current = ridOf(int8(d.sim.cur.Load()))
		}
	}
	return requested, current
}

// addSimulcastRecv adds to the m-line mid of an offer the receive
// simulcast lines of the layers r0 to r2 (RFC 8851, RFC 8853):
//
//	a=rid:r0 recv
//	a=rid:r1 recv
//	a=rid:r2 recv
//	a=simulcast:recv r0;r1;r2
//
// An SDP without that m-line, or already with the lines, is returned as it
// is.
func addSimulcastRecv(sdpText, mid string) string {
	lines := strings.SplitAfter(sdpText, "\r\n")
	var b strings.Builder
	b.Grow(len(sdpText) + 100)
	in := false // in the m-line mid
	done := false
	flush := func() {
		if in && !done {
			rids := make([]string, 0, maxLayers)
			for _, r := range simulcastRids {
				b.WriteString("a=rid:" + string(r) + " recv\r\n")
				rids = append(rids, string(r))
			}
			b.WriteString("a=simulcast:recv " + strings.Join(rids, ";") + "\r\n")
			done = true
		}
	}
	for _, l := range lines {
		if strings.HasPrefix(l, "m=") {
			flush()
			in = false
		}
		if l == "a=mid:"+mid+"\r\n" {
			in = true
		}
		if in && strings.HasPrefix(l, "a=simulcast:") {
			done = true
		}
		b.WriteString(l)
	}
	flush()
	return b.String()
}
