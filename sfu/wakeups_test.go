package sfu_test

import (
	"bytes"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/sfu"
)

// goroutinesIn counts the goroutines whose stack holds fn.
func goroutinesIn(t *testing.T, fn string) int {
	t.Helper()
	var b bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&b, 2); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range strings.Split(b.String(), "\n\n") {
		if strings.Contains(g, fn) {
			n++
		}
	}
	return n
}

// TestTimerGoroutines: the goroutines that wake the process on a timer
// whatever the media do. The congestion control and the sender reports of
// every connection run on one clock each for the SFU (not a goroutine and
// a ticker per connection),
// and pion's NACK generator and receiver reports, a 10 Hz and a 1 Hz
// ticker, run only for a connection that receives media (the publisher),
// not for its subscribers; yet the subscribers' estimates are shared
// (EstimatedBitrate set), and the publisher is still sent NACKs for what
// it lost and receiver reports. When the SFU closes the clock ends
// (CheckLeaks).
func TestTimerGoroutines(t *testing.T) {
	testutil.CheckLeaks(t)
	s := muxSFU(t, nil)
	pub := join(t, s, clientOpts{channel: "wake", id: "PUB", role: sfu.RoleSendonly, video: true})
	var subs []*testClient
	for _, id := range []string{"S0", "S1", "S2"} {
		subs = append(subs, join(t, s, clientOpts{channel: "wake", id: id, role: sfu.RoleRecvonly}))
	}
	// video with every tenth packet left out
	every(t, 5*time.Millisecond, func(i int) {
		if i%10 == 5 {
			return
		}
		p := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(i), Timestamp: uint32(i/3) * 3000, SSRC: 1}, Payload: []byte{1, byte(i >> 8), byte(i)}}
		_ = pub.video.WriteRTP(p)
	})
	testutil.Eventually(t, func() bool {
		for _, c := range subs {
			if len(c.payloads("PUB/PUB-video")) < 20 || c.conn.EstimatedBitrate() == 0 {
				return false
			}
		}
		return pub.nacks.Load() > 0 && pub.rrs.Load() > 0
	}, 10*time.Second, "video to every subscriber, their estimates shared, NACKs and receiver reports to the publisher")
	if n := goroutinesIn(t, "sfu.(*ccClock).loop"); n != 1 {
		t.Errorf("%d congestion clocks, want 1 for the SFU", n)
	}
	// The sender reports of the 4 connections come from one clock too.
	if n := goroutinesIn(t, "sfu.(*srClock).loop"); n != 1 {
		t.Errorf("%d sender report loops, want 1 for the SFU", n)
	}
	// The clients are pion peers in this process with pion's default
	// interceptors: a NACK generator loop each.
	clients := 1 + len(subs)
	if n := goroutinesIn(t, "nack.(*GeneratorInterceptor).loop") - clients; n != 1 {
		t.Errorf("%d NACK generator loops in the SFU, want 1 (the publisher's) for 4 connections", n)
	}
	if n := goroutinesIn(t, "report.(*ReceiverInterceptor).loop") - clients; n != 1 {
		t.Errorf("%d receiver report loops in the SFU, want 1 (the publisher's) for 4 connections", n)
	}
}
