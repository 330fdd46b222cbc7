package main

import (
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/signaling/client"
	"github.com/shoal-sfu/shoal/signaling/wire"
)

// The bare pion forwarder takes a publisher through the Go signaling
// client and forwards its video to a subscriber that joins after it.
func TestBareForwards(t *testing.T) {
	testutil.CheckLeaks(t)
	log := testutil.LoggerLevel(t, slog.LevelError)
	b := newBare(log)
	hs := httptest.NewServer(b)
	defer func() { hs.Close(); b.Close() }()
	url := "ws" + strings.TrimPrefix(hs.URL, "http")
	api, err := client.LocalAPI(log)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testutil.Context(t, 30*time.Second)

	video, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", "pub")
	if err != nil {
		t.Fatal(err)
	}
	pub, err := client.Connect(ctx, client.Config{URLs: []string{url}, ChannelID: "c", Role: wire.RoleSendonly, API: api, Logger: log,
		Tracks: []webrtc.TrackLocal{video}})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	var got atomic.Int64
	sub, err := client.Connect(ctx, client.Config{URLs: []string{url}, ChannelID: "c", Role: wire.RoleRecvonly, API: api, Logger: log,
		OnTrack: func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
			buf := make([]byte, 1500)
			for {
				if _, _, err := tr.Read(buf); err != nil {
					return
				}
				if tr.Kind() == webrtc.RTPCodecTypeVideo {
					got.Add(1)
				}
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	frame := make([]byte, 1000)
	frame[0] = 0x10 // a VP8 keyframe tag
	testutil.Eventually(t, func() bool {
		_ = video.WriteSample(media.Sample{Data: frame, Duration: 33 * time.Millisecond})
		time.Sleep(10 * time.Millisecond)
		return got.Load() >= 20
	}, 20*time.Second, "the subscriber receives the publisher's video")
}
