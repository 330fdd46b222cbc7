package relay

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/sfu"
)

// layerR2 is the r2 layer of a simulcast track, as SFULocal relays it.
var layerR2 = TrackInfo{
	ID: "conn1-video~r2", StreamID: "conn1", Kind: "video", MimeType: "video/VP8", ClockRate: 90000,
	Feedback: []Feedback{{"nack", ""}, {"nack", "pli"}}, Layer: "r2", Group: "conn1-video",
}

// TestLayerDemand: a receiving node that does not want a track's packets
// (Wanter) gets none until it wants them again, across a link break too.
func TestLayerDemand(t *testing.T) {
	testutil.CheckLeaks(t)
	a := startNode(t, "a", testKey)
	b := startNode(t, "b", testKey)
	openRoom(t, a, b)
	lt, err := a.AddLocalTrack("room", layerR2, &counter{})
	if err != nil {
		t.Fatal(err)
	}
	streamUntilEnd(t, lt)
	var w *fakeWriter
	testutil.Eventually(t, func() bool { w = b.local.sink("room").track(layerR2.ID); return w != nil && w.n.Load() > 10 }, 5*time.Second, "layer streams to B")
	if w.info.Layer != "r2" || w.info.Group != "conn1-video" {
		t.Fatalf("remote track info %+v", w.info)
	}
	wanter, ok := w.kf.(Wanter)
	if !ok {
		t.Fatal("the remote track's keyframe requester is no Wanter")
	}
	quiet := func(what string) {
		t.Helper()
		time.Sleep(100 * time.Millisecond) // packets in flight
		n := w.n.Load()
		time.Sleep(300 * time.Millisecond)
		if got := w.n.Load(); got != n {
			t.Fatalf("%s: %d packets came", what, got-n)
		}
	}
	flowing := func(what string) {
		t.Helper()
		n := w.n.Load()
		testutil.Eventually(t, func() bool { return w.n.Load() > n+10 }, 5*time.Second, "%s", what)
	}
	wanter.SetWanted(false)
	quiet("not wanted")
	wanter.SetWanted(true)
	flowing("wanted again")

	// Still not wanted after the link breaks and comes back.
	wanter.SetWanted(false)
	quiet("not wanted before the break")
	reconnects := b.link(a).Reconnects
	b.peers[a.name].sess.Load().conn.Close()
	testutil.Eventually(t, func() bool { return b.link(a).Reconnects > reconnects && b.link(a).Connected }, 10*time.Second, "reconnected")
	quiet("not wanted after the break")
	wanter.SetWanted(true)
	flowing("wanted after the break")
}

func TestLayerTrackInfoRoundTrip(t *testing.T) {
	b := appendTrackInfo(nil, layerR2)
	got, err := decodeTrackInfo(layerR2.ID, b)
	if err != nil || got.Layer != "r2" || got.Group != "conn1-video" || got.MimeType != "video/VP8" || len(got.Feedback) != 2 {
		t.Fatalf("got %+v, %v", got, err)
	}
	if plain := appendTrackInfo(nil, video); len(plain) != len(b)-len("r2")-len("conn1-video")-2 {
		t.Fatalf("a track without layer encodes differently: %d bytes", len(plain))
	}
	for _, bad := range []TrackInfo{{ID: "x", Layer: "r0"}, {ID: "x", Group: "g"}} {
		if err := bad.validate(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	if _, err := decodeTrackInfo("x", append(appendTrackInfo(nil, video), 0, 0)); err == nil {
		t.Error("an empty layer accepted")
	}
}

// fakeWanter records what a sink wants of a relayed track.
type fakeWanter struct {
	counter
	mu     sync.Mutex
	wanted []bool
}

func (f *fakeWanter) SetWanted(w bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.wanted = append(f.wanted, w)
}

func (f *fakeWanter) last() (wanted, known bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.wanted) == 0 {
		return false, false
	}
	return f.wanted[len(f.wanted)-1], true
}

// TestSFUSinkJoinsLayers: SFULocal's sink makes the relayed layers of a
// simulcast track one sfu track, whose subscribers get their layer; it
// tells each layer's relay track whether a subscriber wants it.
func TestSFUSinkJoinsLayers(t *testing.T) {
	testutil.CheckLeaks(t)
	n := startSFUNode(t, "b")
	sink, err := NewSFULocal(n.sfu, nil).RelayChannel(n.Relay, "room")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sink.Close)
	var wanters [3]*fakeWanter
	var writers [3]TrackWriter
	for i, rid := range []string{"r0", "r1", "r2"} {
		info := layerR2
		info.ID, info.Layer = "conn1-video~"+rid, rid
		wanters[i] = &fakeWanter{}
		w, err := sink.AddRemoteTrack("a", info, wanters[i])
		if err != nil {
			t.Fatal(err)
		}
		writers[i] = w
		if wanted, known := wanters[i].last(); !known || wanted {
			t.Fatalf("layer %s: wanted %v (told: %v) with no subscriber", rid, wanted, known)
		}
	}
	if _, err := sink.AddRemoteTrack("a", TrackInfo{ID: "x~r9", StreamID: "conn1", Kind: "video", MimeType: "video/VP8", ClockRate: 90000, Layer: "r9", Group: "x"}, &fakeWanter{}); err == nil {
		t.Fatal("layer r9 accepted")
	}
	var seq [3]uint16
	everyUntilEnd(t, 10*time.Millisecond, func(i int) {
		for l := range 3 {
			key := byte(1)
			if i%20 == 0 || wanters[l].n.Load() > 0 {
				key = 0
				wanters[l].n.Store(0)
			}
			seq[l]++
			pkt := rtpPacket(seq[l], []byte{0x10, key, 'A' + byte(l)})
			pkt[1] |= 0x80 // marker: one packet a frame
			_ = writers[l].WriteRTP(pkt)
		}
	})
	sub := joinSFU(t, n, "sub", sfu.RoleRecvonly)
	testutil.Eventually(t, func() bool {
		w0, _ := wanters[0].last()
		w1, _ := wanters[1].last()
		w2, _ := wanters[2].last()
		return w0 && !w1 && !w2 && sub.got("conn1") > 20
	}, 10*time.Second, "the subscriber gets r0, only r0 is wanted")
	if err := sub.conn.SetSimulcastRid("conn1", sfu.RidR2); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, func() bool {
		w0, _ := wanters[0].last()
		w2, _ := wanters[2].last()
		_, cur := sub.conn.SimulcastRid("conn1")
		return !w0 && w2 && cur == sfu.RidR2
	}, 10*time.Second, "the subscriber moves to r2, only r2 is wanted (%v)", func() string {
		_, cur := sub.conn.SimulcastRid("conn1")
		return fmt.Sprint(cur, wanters[0].wanted, wanters[1].wanted, wanters[2].wanted)
	}())
	// The last layer closed removes the track.
	for _, w := range writers[:2] {
		_ = w.Close()
	}
	if err := writers[2].WriteRTP(rtpPacket(60000, []byte{0x10, 1, 'C'})); err != nil {
		t.Fatalf("r2 after r0 and r1 closed: %v", err)
	}
	_ = writers[2].Close()
	if err := writers[2].WriteRTP(rtpPacket(60001, []byte{0x10, 1, 'C'})); err == nil {
		t.Fatal("the track takes packets after its last layer closed")
	}
}
