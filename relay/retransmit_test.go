package relay

import (
	"testing"
	"time"

	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/sfu"
)

// A relayed track's requester is what the SFU asks for packets its node
// never received.
var _ sfu.RetransmitRequester = (*inTrack)(nil)

// TestRetransmitRequested: packets lost on the hop in a gap wider than the
// receiving side asks for by itself are resent when the SFU there asks for
// them (its subscribers NACKed them), and only those.
func TestRetransmitRequested(t *testing.T) {
	testutil.CheckLeaks(t)
	a, b, lt, w := relayedVideo(t)
	_ = lt.WriteRTP(rtpPacket(1, []byte("ok")))
	const last = maxNACKGap + 6
	for s := uint16(2); s < last; s++ {
		lt.ring.put(rtpPacket(s, []byte("lost"))) // kept for NACKs, never sent
	}
	_ = lt.WriteRTP(rtpPacket(last, []byte("ok")))
	testutil.Eventually(t, func() bool { return w.hasSeq(last) }, 5*time.Second, "packet after the gap")
	time.Sleep(200 * time.Millisecond)
	if w.hasSeq(4) {
		t.Fatalf("a gap of %d was asked for by the receiving side itself", last-2)
	}
	w.kf.(sfu.RetransmitRequester).RequestRetransmit([]uint16{4, 5})
	testutil.Eventually(t, func() bool { return w.hasSeq(4) && w.hasSeq(5) }, 5*time.Second, "asked packets resent")
	time.Sleep(100 * time.Millisecond)
	if w.hasSeq(6) {
		t.Error("packet 6 came though not asked for")
	}
	if st := a.link(b); st.Retransmits != 2 || st.NACKsIn != 1 {
		t.Errorf("A link retransmits %d nacks in %d, want 2 and 1", st.Retransmits, st.NACKsIn)
	}
}
