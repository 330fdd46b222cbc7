package shoal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/shoal-sfu/shoal/sfu"
	"github.com/shoal-sfu/shoal/signaling"
	"github.com/shoal-sfu/shoal/signaling/wire"
)

// NewMedia adapts an SFU to the media side the signaling server needs.
func NewMedia(s *sfu.SFU) signaling.Media { return sfuMedia{s} }

type sfuMedia struct{ s *sfu.SFU }

var _ signaling.Media = sfuMedia{}

// Join creates the connection in the SFU; a full SFU is reported as
// signaling.ErrMediaFull.
func (m sfuMedia) Join(ctx context.Context, req signaling.MediaRequest) (signaling.MediaConn, error) {
	dcs := make([]sfu.DataChannelSpec, 0, len(req.DataChannels))
	for _, d := range req.DataChannels {
		spec := sfu.DataChannelSpec{Label: d.Label, Direction: d.Direction, Ordered: d.Ordered, Protocol: d.Protocol,
			Compress: d.Compress != nil && *d.Compress}
		var err error
		if spec.MaxRetransmits, err = u16(d.MaxRetransmits); err != nil {
			return nil, fmt.Errorf("shoal: data channel %q: max_retransmits: %w", d.Label, err)
		}
		if spec.MaxPacketLifeTime, err = u16(d.MaxPacketLifeTime); err != nil {
			return nil, fmt.Errorf("shoal: data channel %q: max_packet_life_time: %w", d.Label, err)
		}
		dcs = append(dcs, spec)
	}
	ev := req.Events
	conn, err := m.s.Join(ctx, sfu.JoinRequest{
		ChannelID: req.ChannelID, ConnectionID: req.ConnectionID, ClientID: req.ClientID,
		Role: sfu.Role(req.Role), Audio: req.Audio, Video: req.Video, DataChannels: dcs,
		Simulcast: req.Simulcast, SimulcastRid: sfu.SimulcastRid(req.SimulcastRid),
		AudioCodec: req.AudioCodec, VideoCodec: req.VideoCodec,
		AudioBitRate: req.AudioBitRate, VideoBitRate: req.VideoBitRate, ClientSDP: req.ClientSDP,
		Hooks: sfu.ConnectionHooks{
			ReOffer: ev.ReOffer,
			Event: func(e sfu.ConnectionEvent) {
				if ev.Event == nil {
					return
				}
				t := wire.EventConnectionCreated
				if e.Type == sfu.ConnectionDestroyed {
					t = wire.EventConnectionDestroyed
				}
				ev.Event(signaling.ConnectionEvent{Type: t, ConnectionID: e.ConnectionID, ClientID: e.ClientID,
					Role: wire.Role(e.Role), Counts: signaling.ChannelCounts{Connections: e.Counts.Connections,
						SendRecv: e.Counts.Sendrecv, SendOnly: e.Counts.Sendonly, RecvOnly: e.Counts.Recvonly}})
			},
			DataChannelMessage: ev.Message,
			DataChannelsOpen:   ev.DataChannelsOpen,
			SimulcastSwitched: func(e sfu.SimulcastSwitch) {
				if ev.SimulcastSwitched != nil {
					auto := make([]string, len(e.AutoRids))
					for i, r := range e.AutoRids {
						auto[i] = string(r)
					}
					ev.SimulcastSwitched(signaling.SimulcastSwitch{SenderConnectionID: e.SenderConnectionID,
						Requested: string(e.Requested), Previous: string(e.Previous), Current: string(e.Current),
						Trigger: string(e.Trigger), AutoRids: auto})
				}
			},
		},
	})
	if err != nil {
		var ce *sfu.CapacityError
		if errors.As(err, &ce) {
			return nil, fmt.Errorf("%w: %w", signaling.ErrMediaFull, err)
		}
		if errors.Is(err, sfu.ErrUnsupportedCodec) {
			return nil, fmt.Errorf("%w: %w", signaling.ErrMediaCodec, err)
		}
		return nil, err
	}
	return sfuConn{conn}, nil
}

func u16(p *int) (*uint16, error) {
	if p == nil {
		return nil, nil
	}
	if *p < 0 || *p > math.MaxUint16 {
		return nil, fmt.Errorf("%d out of range 0..65535", *p)
	}
	v := uint16(*p)
	return &v, nil
}

type sfuConn struct{ c *sfu.Connection }

var (
	_ signaling.MediaConn          = sfuConn{}
	_ signaling.DataChannelCloser  = sfuConn{}
	_ signaling.SimulcastRidSetter = sfuConn{}
)

func (c sfuConn) Offer() signaling.MediaOffer {
	o := c.c.Offer()
	mo := signaling.MediaOffer{SDP: o.SDP, AudioMid: o.Mids.Audio, VideoMid: o.Mids.Video}
	for _, d := range o.DataChannels {
		dir := d.Direction
		if dir == "" {
			dir = "sendrecv"
		}
		mo.DataChannels = append(mo.DataChannels, wire.OfferDataChannel{Label: d.Label, Direction: dir, Compress: d.Compress})
	}
	mo.Simulcast = o.Simulcast
	for _, e := range o.Encodings {
		mo.Encodings = append(mo.Encodings, wire.Encoding{RID: string(e.RID), Active: e.Active,
			ScaleResolutionDownBy: e.ScaleResolutionDownBy, MaxBitrate: e.MaxBitrate, MaxFramerate: e.MaxFramerate,
			ScalabilityMode: e.ScalabilityMode})
	}
	return mo
}

// SetSimulcastRid implements signaling.SimulcastRidSetter.
func (c sfuConn) SetSimulcastRid(sender, rid string) error {
	return c.c.SetSimulcastRid(sender, sfu.SimulcastRid(rid))
}

func (c sfuConn) SetAnswer(sdp string) error { return c.c.SetAnswer(sdp) }

// AddCandidate passes the candidate to the SFU. The root package does not
// import pion itself (fence_test.go keeps pion's types behind sfu's API),
// so the candidate is converted through its JSON form, which is the
// RTCIceCandidateInit the client sent.
func (c sfuConn) AddCandidate(cand wire.Candidate) error {
	return addCandidate(c.c.AddICECandidate, cand)
}

func addCandidate[T any](add func(T) error, cand wire.Candidate) error {
	b, err := json.Marshal(cand)
	if err != nil {
		return err
	}
	var init T
	if err := json.Unmarshal(b, &init); err != nil {
		return err
	}
	return add(init)
}

func (c sfuConn) SendText(label, text string) error { return c.c.SendText(label, text) }
func (c sfuConn) Done() <-chan struct{}             { return c.c.Done() }
func (c sfuConn) Close() error                      { return c.c.Close() }

// CloseDataChannels implements signaling.DataChannelCloser.
func (c sfuConn) CloseDataChannels(ctx context.Context) error { return c.c.CloseDataChannels(ctx) }
