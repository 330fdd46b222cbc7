package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"

	"github.com/shoal-sfu/shoal/signaling/wire"
)

// bare is the bare pion forwarder: channels of publishers whose tracks are
// written to one TrackLocalStaticRTP per subscriber.
type bare struct {
	api    *webrtc.API
	logger *slog.Logger

	mu       sync.Mutex
	channels map[string]*bareChannel
	wg       sync.WaitGroup // the connections' goroutines
	ctx      context.Context
	cancel   context.CancelFunc
}

type bareChannel struct {
	mu   sync.Mutex
	pubs []*barePub
}

// barePub is a publisher's two tracks.
type barePub struct {
	id     string
	pc     *webrtc.PeerConnection
	tracks [2]*bareTrack // audio, video
}

// bareTrack forwards one remote track to its subscribers' local tracks.
type bareTrack struct {
	kind  webrtc.RTPCodecType
	codec webrtc.RTPCodecCapability
	ssrc  atomic.Uint32 // the remote track's, once it arrives (for PLI)
	outs  atomic.Pointer[[]*webrtc.TrackLocalStaticRTP]
	mu    sync.Mutex // guards additions to outs
}

func (t *bareTrack) add(l *webrtc.TrackLocalStaticRTP) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.outs.Load()
	var next []*webrtc.TrackLocalStaticRTP
	if old != nil {
		next = append(next, *old...)
	}
	next = append(next, l)
	t.outs.Store(&next)
}

func newBare(logger *slog.Logger) *bare {
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		panic(err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		panic(err)
	}
	se := webrtc.SettingEngine{}
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	ctx, cancel := context.WithCancel(context.Background())
	return &bare{api: webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)),
		logger: logger, channels: map[string]*bareChannel{}, ctx: ctx, cancel: cancel}
}

// Close ends every connection and waits for their goroutines.
func (b *bare) Close() {
	b.cancel()
	b.wg.Wait()
}

func (b *bare) channel(id string) *bareChannel {
	b.mu.Lock()
	defer b.mu.Unlock()
	ch := b.channels[id]
	if ch == nil {
		ch = &bareChannel{}
		b.channels[id] = ch
	}
	return ch
}

// ServeHTTP runs one signaling connection.
func (b *bare) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ws, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	ws.SetReadLimit(1 << 20)
	b.wg.Add(1)
	defer b.wg.Done()
	defer ws.CloseNow()
	if err := b.session(b.ctx, ws); err != nil {
		b.logger.Warn("session", "err", err)
		_ = ws.Close(websocket.StatusPolicyViolation, err.Error())
		return
	}
	_ = ws.Close(websocket.StatusNormalClosure, "")
}

func (b *bare) session(ctx context.Context, ws *websocket.Conn) error {
	_, data, err := ws.Read(ctx)
	if err != nil {
		return err
	}
	var c wire.Connect
	if err := json.Unmarshal(data, &c); err != nil || c.Type != wire.TypeConnect {
		return fmt.Errorf("want connect first: %v", err)
	}
	pc, err := b.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return err
	}
	defer pc.Close()
	id := rand.Text()[:16]
	ch := b.channel(c.ChannelID)
	switch c.Role {
	case wire.RoleSendonly, wire.RoleSendrecv:
		if err := b.publish(pc, ch, id); err != nil {
			return err
		}
	case wire.RoleRecvonly:
		if err := b.subscribe(pc, ch); err != nil {
			return err
		}
	default:
		return fmt.Errorf("role %q", c.Role)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return err
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return err
	}
	<-gathered
	msg, _ := json.Marshal(wire.Offer{Type: wire.TypeOffer, SDP: pc.LocalDescription().SDP, ConnectionID: id, ChannelID: c.ChannelID})
	if err := ws.Write(ctx, websocket.MessageText, msg); err != nil {
		return err
	}
	for {
		_, data, err := ws.Read(ctx)
		if err != nil {
			return nil // gone, or the server stops
		}
		switch messageType(data) {
		case wire.TypeAnswer:
			var a wire.Answer
			if err := json.Unmarshal(data, &a); err != nil {
				return err
			}
			if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: a.SDP}); err != nil {
				return err
			}
		case wire.TypeCandidate:
			var cd wire.Candidate
			if err := json.Unmarshal(data, &cd); err != nil {
				return err
			}
			_ = pc.AddICECandidate(webrtc.ICECandidateInit{Candidate: cd.Candidate, SDPMid: cd.SDPMid, SDPMLineIndex: cd.SDPMLineIndex, UsernameFragment: cd.UsernameFragment})
		case wire.TypeDisconnect:
			return nil
		}
	}
}

// publish offers a recvonly audio and video m-line and forwards what
// arrives on them.
func (b *bare) publish(pc *webrtc.PeerConnection, ch *bareChannel, id string) error {
	p := &barePub{id: id, pc: pc}
	for i, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			return err
		}
		codec := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}
		if k == webrtc.RTPCodecTypeVideo {
			codec = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
		}
		p.tracks[i] = &bareTrack{kind: k, codec: codec}
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		t := p.tracks[0]
		if tr.Kind() == webrtc.RTPCodecTypeVideo {
			t = p.tracks[1]
		}
		t.ssrc.Store(uint32(tr.SSRC()))
		buf := make([]byte, 1500)
		for {
			n, _, err := tr.Read(buf)
			if err != nil {
				return
			}
			if outs := t.outs.Load(); outs != nil {
				for _, l := range *outs {
					_, _ = l.Write(buf[:n])
				}
			}
		}
	})
	ch.mu.Lock()
	ch.pubs = append(ch.pubs, p)
	ch.mu.Unlock()
	return nil
}

// subscribe adds a local track per track of each publisher connected now.
func (b *bare) subscribe(pc *webrtc.PeerConnection, ch *bareChannel) error {
	ch.mu.Lock()
	pubs := append([]*barePub(nil), ch.pubs...)
	ch.mu.Unlock()
	for _, p := range pubs {
		if p.pc.ConnectionState() != webrtc.PeerConnectionStateConnected {
			continue
		}
		for _, t := range p.tracks {
			l, err := webrtc.NewTrackLocalStaticRTP(t.codec, t.kind.String(), p.id)
			if err != nil {
				return err
			}
			s, err := pc.AddTrack(l)
			if err != nil {
				return err
			}
			go forwardKeyframeRequests(s, p.pc, t)
			t.add(l)
		}
	}
	return nil
}

// forwardKeyframeRequests reads a sender's RTCP until it closes and passes
// PLI and FIR on to the publisher as a PLI, at most one per 100 ms.
func forwardKeyframeRequests(s *webrtc.RTPSender, pub *webrtc.PeerConnection, t *bareTrack) {
	var last time.Time
	for {
		pkts, _, err := s.ReadRTCP()
		if err != nil {
			return
		}
		for _, p := range pkts {
			switch p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				if time.Since(last) > 100*time.Millisecond {
					last = time.Now()
					_ = pub.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: t.ssrc.Load()}})
				}
			}
		}
	}
}
