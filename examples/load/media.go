package main

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
)

// Synthetic media: frames of the set size at the set rate, written as
// samples so that pion's payloaders packetize them (VP8 with picture ids,
// H.264 with STAP-A and FU-A, Opus one packet per frame). The bytes are
// filler behind valid frame headers: a VP8 keyframe carries the keyframe
// tag and start code, an H.264 keyframe SPS, PPS and an IDR slice, so an
// SFU that looks for keyframes finds them. Nothing decodes to a picture.

// videoMime maps -video-codec to a MIME type.
func videoMime(codec string) (string, error) {
	switch strings.ToUpper(codec) {
	case "VP8":
		return webrtc.MimeTypeVP8, nil
	case "H264":
		return webrtc.MimeTypeH264, nil
	}
	return "", fmt.Errorf("-video-codec %q: want VP8 or H264", codec)
}

// frameGen builds video frames of one codec into a buffer it reuses.
type frameGen struct {
	h264 bool
	buf  []byte
}

// frame returns a frame of size bytes (at least the codec's header), a
// keyframe if key. The slice is valid until the next call.
func (g *frameGen) frame(size int, key bool) []byte {
	if g.h264 {
		return g.h264Frame(size, key)
	}
	return g.vp8Frame(size, key)
}

// vp8Frame: RFC 6386 frame tag (3 bytes: key bit, version 0, show_frame,
// first partition size), then for a keyframe the start code 9d 01 2a and
// 640x360.
func (g *frameGen) vp8Frame(size int, key bool) []byte {
	size = max(size, 10)
	b := g.grow(size)
	part := min(size-10, 1<<19-1)
	tag := uint32(part)<<5 | 1<<4 // show_frame
	if !key {
		tag |= 1 // P: an interframe
	}
	b[0], b[1], b[2] = byte(tag), byte(tag>>8), byte(tag>>16)
	n := 3
	if key {
		copy(b[3:], []byte{0x9d, 0x01, 0x2a, 640 & 0xff, 640 >> 8, 360 & 0xff, 360 >> 8})
		n = 10
	}
	fill(b[n:])
	return b
}

// Annex-B H.264: a keyframe is SPS, PPS and an IDR slice (NAL types 7, 8,
// 5), an interframe one non-IDR slice (1). Constrained baseline 3.1.
var (
	startCode = []byte{0, 0, 0, 1}
	h264SPS   = []byte{0x67, 0x42, 0xc0, 0x1f, 0xda, 0x01, 0x40, 0x16, 0xe8, 0x06, 0xd0, 0xa1, 0x35}
	h264PPS   = []byte{0x68, 0xce, 0x06, 0xe2}
)

func (g *frameGen) h264Frame(size int, key bool) []byte {
	head := 5
	if key {
		head = 3*len(startCode) + len(h264SPS) + len(h264PPS) + 1
	}
	size = max(size, head+1)
	b := g.grow(size)
	n := 0
	if key {
		n += copy(b[n:], startCode)
		n += copy(b[n:], h264SPS)
		n += copy(b[n:], startCode)
		n += copy(b[n:], h264PPS)
		n += copy(b[n:], startCode)
		b[n] = 0x65 // IDR slice
	} else {
		n += copy(b[n:], startCode)
		b[n] = 0x41 // non-IDR slice
	}
	fill(b[n+1:])
	return b
}

func (g *frameGen) grow(size int) []byte {
	if cap(g.buf) < size {
		g.buf = make([]byte, size)
	}
	return g.buf[:size]
}

// fill writes filler that holds no H.264 start code (no two zero bytes).
func fill(b []byte) {
	for i := range b {
		b[i] = 0xa5 ^ byte(i)
		if b[i] == 0 {
			b[i] = 1
		}
	}
}

// publisherMedia writes one publisher's tracks until ctx ends.
type publisherMedia struct {
	video, audio *webrtc.TrackLocalStaticSample
	h264         bool
	videoKbps    int
	audioKbps    int
	fps          int
	keyInterval  time.Duration
	// wantKey is set by a keyframe request (PLI or FIR) from the server.
	wantKey atomic.Bool
	// sent counts frames written (video) and packets (audio).
	frames, keyframes atomic.Uint64
	// requests counts the keyframe requests received.
	requests atomic.Uint64
}

// run writes video frames at fps and Opus frames every 20 ms.
func (p *publisherMedia) run(ctx context.Context) {
	var vt, at <-chan time.Time
	if p.video != nil {
		t := time.NewTicker(time.Second / time.Duration(p.fps))
		defer t.Stop()
		vt = t.C
	}
	if p.audio != nil {
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		at = t.C
	}
	g := frameGen{h264: p.h264}
	frameSize := p.videoKbps * 1000 / 8 / max(p.fps, 1)
	audioSize := max(p.audioKbps*1000/8/50, 3)
	audio := make([]byte, audioSize)
	audio[0] = 0x78 // TOC: SILK wideband 20 ms... any single-frame config
	fill(audio[1:])
	var lastKey time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-vt:
			key := p.wantKey.Swap(false) || lastKey.IsZero() || (p.keyInterval > 0 && now.Sub(lastKey) >= p.keyInterval)
			size := frameSize
			if key {
				lastKey = now
				size *= 3 // keyframes are larger, as real ones
				p.keyframes.Add(1)
			}
			_ = p.video.WriteSample(media.Sample{Data: g.frame(size, key), Duration: time.Second / time.Duration(p.fps)})
			p.frames.Add(1)
		case <-at:
			_ = p.audio.WriteSample(media.Sample{Data: audio, Duration: 20 * time.Millisecond})
		}
	}
}

// readRTCP reads a sender's RTCP until it closes and notes keyframe
// requests.
func (p *publisherMedia) readRTCP(s *webrtc.RTPSender) {
	buf := make([]byte, 1500)
	for {
		n, _, err := s.Read(buf)
		if err != nil {
			return
		}
		if hasKeyframeRequest(buf[:n]) {
			p.requests.Add(1)
			p.wantKey.Store(true)
		}
	}
}

// hasKeyframeRequest reports whether a compound RTCP packet holds a PLI
// (RFC 4585: PT 206, FMT 1) or a FIR (RFC 5104: FMT 4).
func hasKeyframeRequest(b []byte) bool {
	for len(b) >= 4 {
		if b[0]>>6 != 2 {
			return false
		}
		fmtCount, pt := b[0]&0x1f, b[1]
		size := (int(b[2])<<8 | int(b[3]) + 1) * 4
		if size > len(b) {
			return false
		}
		if pt == 206 && (fmtCount == 1 || fmtCount == 4) {
			return true
		}
		b = b[size:]
	}
	return false
}
