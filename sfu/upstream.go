package sfu

// The tracks a connection publishes: its upstream m-lines and the pump that
// feeds what arrives on them into the channel.

import (
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// addUpstream gives a sending connection its recvonly m-lines, audio first,
// then video, before any forwarded track; what arrives on them is published
// by onTrack.
func (c *Connection) addUpstream(audio, video bool) error {
	if !c.role.sends() {
		return nil
	}
	recv := webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}
	want := [2]bool{audio, video}
	for i, kind := range [2]webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		if !want[i] {
			continue
		}
		tr, err := c.pc.AddTransceiverFromKind(kind, recv)
		if err != nil {
			return fmt.Errorf("sfu: join: %s transceiver: %w", kind, err)
		}
		want := [2]string{c.codecs.audio, c.codecs.video}[i]
		if want != "" {
			if err := setCodecOrder(tr, kind, webrtc.RTPCodecCapability{MimeType: want}); err != nil {
				return fmt.Errorf("sfu: join: %s codec %s: %w", kind, want, err)
			}
		}
		c.midTr[i] = tr
	}
	c.pc.OnTrack(c.onTrack)
	return nil
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
		rid := track.RID()
		for {
			var err error
			if rid != "" {
				_, _, err = recv.ReadSimulcast(buf, rid)
			} else {
				_, _, err = recv.Read(buf)
			}
			if err != nil {
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
	if rid := track.RID(); rid != "" {
		c.pumpLayer(track, info, SimulcastRid(rid), kr)
		return
	}
	src, err := c.ch.addLocalSource(c, info, kr)
	if err != nil {
		c.logger.Warn("upstream track refused", "track", info.ID, "err", err)
		return
	}
	defer c.ch.removeSource(src)
	c.upsw.pumped(ssrc, track.SetReadDeadline) // it may switch (recvswitch.go)
	buf := make([]byte, recvSlotSize)
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

// upLayers is the simulcast video a connection publishes: one source, fed
// by one pump per layer, that leaves the channel with the last pump.
type upLayers struct {
	mu    sync.Mutex
	src   *source
	pumps int
}

// pumpLayer feeds one simulcast layer of the upstream video into the
// channel; the first layer to arrive adds the track.
func (c *Connection) pumpLayer(track *webrtc.TrackRemote, info TrackInfo, rid SimulcastRid, kr KeyframeRequester) {
	l := rid.layer()
	if l < 0 {
		c.logger.Warn("simulcast layer with an unknown rid ignored", "rid", rid)
		return
	}
	info.Simulcast = true
	c.up.mu.Lock()
	src := c.up.src
	if src == nil {
		var err error
		if src, err = c.ch.addLocalSource(c, info, nil); err != nil {
			c.up.mu.Unlock()
			c.logger.Warn("upstream track refused", "track", info.ID, "err", err)
			return
		}
		c.up.src = src
	}
	c.up.pumps++
	src.sim.addLayer(l, kr)
	c.up.mu.Unlock()
	defer func() {
		c.up.mu.Lock()
		defer c.up.mu.Unlock()
		if c.up.pumps--; c.up.pumps == 0 {
			c.ch.removeSource(src)
			c.up.src = nil
		}
	}()
	c.upsw.pumped(uint32(track.SSRC()), track.SetReadDeadline) // it may switch (recvswitch.go)
	buf := make([]byte, recvSlotSize)
	for {
		n, _, err := track.Read(buf)
		if err != nil {
			return
		}
		if err := src.writeLayer(l, buf[:n]); errors.Is(err, net.ErrClosed) {
			return
		}
	}
}
