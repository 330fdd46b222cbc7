package shoal_test

import (
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/signaling/client"
	"github.com/shoal-sfu/shoal/signaling/wire"
)

// switchedNotes keeps the simulcast.switched notifies a Go client gets.
type switchedNotes struct {
	mu  sync.Mutex
	got []wire.NotifySimulcastSwitched
}

func (s *switchedNotes) add(n client.Notify) {
	if n.EventType != string(wire.EventSimulcastSwitched) {
		return
	}
	var m wire.NotifySimulcastSwitched
	if json.Unmarshal(n.Raw, &m) == nil {
		s.mu.Lock()
		s.got = append(s.got, m)
		s.mu.Unlock()
	}
}

// find returns the first notify that ok accepts.
func (s *switchedNotes) find(ok func(wire.NotifySimulcastSwitched) bool) (wire.NotifySimulcastSwitched, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.got {
		if ok(m) {
			return m, true
		}
	}
	return wire.NotifySimulcastSwitched{}, false
}

// TestE2ESimulcastAutoGoClient: the Go client connects recvonly with
// simulcast_request_rid "auto" to a node where Chromium (sora-js-sdk)
// publishes simulcast. Its first simulcast.switched notify is the start
// (previous_rid none) with request_rid auto and the layers the congestion
// control allows in auto_rids, and video flows. Sora's RequestSimulcastRid
// then names r0 (request_rid r0, current r0) and auto again (request_rid
// auto).
func TestE2ESimulcastAutoGoClient(t *testing.T) {
	requireBrowser(t)
	dir := soraSDKDir(t)
	node := e2eSoloNode(t, testutil.LoopbackIP(t), nil)
	r := newReports(t)
	serveSDK(t, r, dir)
	sims := serveSimulcast(t, r)
	simulcastPublisher(t, r, sims, simulcastURL(r, node, "pub", "sendonly", ""))
	pub := r.state("pub").ConnectionID

	notes := &switchedNotes{}
	cfg := client.Config{URLs: []string{node.signaling}, ChannelID: "sim-room", Role: wire.RoleRecvonly,
		SimulcastRequestRid: "auto", OnNotify: notes.add, Logger: testutil.Logger(t)}
	localAPI(t)(&cfg)
	c, err := client.Connect(testutil.Context(t, 20*time.Second), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// packets counts what the node forwarded to the client (the root
	// package keeps pion's types out: no OnTrack here).
	packets := func() uint64 {
		for _, s := range node.SFU().Stats() {
			if s.ConnectionID == c.ConnectionID {
				return s.PacketsSent
			}
		}
		return 0
	}

	var start wire.NotifySimulcastSwitched
	testutil.Eventually(t, func() bool {
		var ok bool
		start, ok = notes.find(func(m wire.NotifySimulcastSwitched) bool { return m.SenderConnectionID == pub })
		return ok
	}, 20*time.Second, "a simulcast.switched notify")
	if start.PreviousRid != "none" || start.RequestRid != "auto" || start.Priority != "higher" || !slices.Contains(start.AutoRids, "r0") ||
		!slices.Contains(start.AutoRids, start.CurrentRid) {
		t.Fatalf("first notify %+v: want the start (from none), request_rid auto, the layer among auto_rids", start)
	}
	testutil.Eventually(t, func() bool { return packets() > 100 }, 20*time.Second, "video flows")
	t.Logf("auto: started on %s (auto_rids %v)", start.CurrentRid, start.AutoRids)

	if n, err := node.Signaling().RequestSimulcastRid("sim-room", c.ConnectionID, pub, "r0"); n != 1 || err != nil {
		t.Fatalf("RequestSimulcastRid r0: %d %v", n, err)
	}
	n0 := packets()
	if start.CurrentRid != "r0" {
		testutil.Eventually(t, func() bool {
			_, ok := notes.find(func(m wire.NotifySimulcastSwitched) bool { return m.RequestRid == "r0" && m.CurrentRid == "r0" })
			return ok
		}, 20*time.Second, "the switch to r0 notified")
	}
	if n, err := node.Signaling().RequestSimulcastRid("sim-room", c.ConnectionID, "", "auto"); n != 1 || err != nil {
		t.Fatalf("RequestSimulcastRid auto: %d %v", n, err)
	}
	if start.CurrentRid != "r0" {
		testutil.Eventually(t, func() bool {
			_, ok := notes.find(func(m wire.NotifySimulcastSwitched) bool { return m.RequestRid == "auto" && m.PreviousRid == "r0" })
			return ok
		}, 20*time.Second, "the switch back up under auto notified")
	}
	testutil.Eventually(t, func() bool { return packets() > n0+100 }, 20*time.Second, "video keeps flowing")
	notes.mu.Lock()
	t.Logf("notifies: %+v", notes.got)
	notes.mu.Unlock()
}
