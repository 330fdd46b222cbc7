package sfu

// A connection's data channels: the signaling, notify and push channels the
// server always opens, and the messaging ones ("#" labels) the client asked
// for.

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/pion/webrtc/v4"
)

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

type dcEntry struct {
	dc   *webrtc.DataChannel
	spec DataChannelSpec
	// For a messaging channel the client receives on: the connection's
	// outbox (shared by its messaging channels), the channel as the
	// outbox sends to it, and the signal that its BufferedAmount drained.
	ob  *outbox
	out dcSender
	low chan struct{}
}

// openDataChannels creates the signaling, notify and push channels and the
// requested messaging ones; the first offer negotiates them in-band. The
// DataChannelsOpen hook is queued once every one of them is open.
func (c *Connection) openDataChannels(requested []DataChannelSpec) error {
	specs := []DataChannelSpec{{Label: LabelSignaling}, {Label: LabelNotify}, {Label: LabelPush}}
	specs = append(specs, requested...)
	var opening atomic.Int32
	opening.Store(int32(len(specs)))
	var ob *outbox
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
		if strings.HasPrefix(label, "#") && spec.clientReceives() {
			if ob == nil {
				ob = newOutbox(c, c.sfu.cfg.Messages, &c.sfu.drops)
			}
			e.ob, e.out, e.low = ob, dc, make(chan struct{}, 1)
			dc.SetBufferedAmountLowThreshold(ob.high / 2)
			dc.OnBufferedAmountLow(func() {
				select {
				case e.low <- struct{}{}:
				default:
				}
			})
		}
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
	if ob != nil {
		c.mu.Lock()
		closed := c.closed
		if !closed {
			c.wg.Add(1) // closing waits for it, after closing done
		}
		c.mu.Unlock()
		if !closed {
			go func() {
				defer c.wg.Done()
				ob.run(c.done)
			}()
		}
	}
	return nil
}

// sendBufferedMax is how much a data channel may have buffered before Send
// and SendText refuse: four times Messages.BufferedMax.
func sendBufferedMax(m MessageConfig) uint64 { return 4 * uint64(m.BufferedMax) }

// Send sends a binary message to the client on the data channel label. It
// fails, wrapping ErrSlowConsumer, while the data channel has four times
// Config.Messages.BufferedMax buffered (the client does not read), and the
// message is dropped (Drops.SendBufferFull).
func (c *Connection) Send(label string, data []byte) error {
	return c.send(label, func(dc *webrtc.DataChannel) error { return dc.Send(data) })
}

// SendText sends a text message (JSON) to the client on the data channel
// label. It fails as Send does for a client that does not read.
func (c *Connection) SendText(label, text string) error {
	return c.send(label, func(dc *webrtc.DataChannel) error { return dc.SendText(text) })
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

// send runs write on the data channel label, unless the connection is
// closed or has no such channel.
func (c *Connection) send(label string, write func(*webrtc.DataChannel) error) error {
	select {
	case <-c.done:
		return fmt.Errorf("sfu: send: %w", net.ErrClosed)
	default:
	}
	e := c.dcs[label]
	if e == nil {
		return fmt.Errorf("%w: %q", ErrUnknownDataChannel, label)
	}
	// A client that does not read would have pion buffer without bound.
	if limit := sendBufferedMax(c.sfu.cfg.Messages); e.dc.BufferedAmount() >= limit {
		c.sfu.drops.sendBufferFull.Add(1)
		return fmt.Errorf("sfu: send on %q: %d bytes buffered for the client already: %w", label, limit, ErrSlowConsumer)
	}
	if err := write(e.dc); err != nil {
		return fmt.Errorf("sfu: send on %q: %w", label, err)
	}
	return nil
}

// queueMessage queues a channel message for this connection if it has the
// label and may receive on it; withID holds the message with the sender's
// id in front, made for the first receiver that wants it and shared with
// the next ones. It runs under the channel's lock and never sends: the
// connection's outbox does (dcqueue.go).
func (c *Connection) queueMessage(label, senderID string, data []byte, withID *[]byte) {
	e := c.dcs[label]
	if e == nil || e.ob == nil {
		return
	}
	if e.spec.SenderIDHeader {
		if *withID == nil {
			b := make([]byte, 0, len(senderID)+len(data))
			*withID = append(append(b, senderID...), data...)
		}
		data = *withID
	}
	e.ob.push(e, data)
}
