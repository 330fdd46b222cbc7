package sfu

import (
	"testing"
	"time"

	"github.com/pion/rtp"
)

// TestSenderReportStream: a stream's report counts every packet and its
// payload octets, maps the last new timestamp of an in-order packet to the
// time it was sent and advances it at the clock rate to the report's
// moment; a late (reordered) packet counts but moves nothing.
func TestSenderReportStream(t *testing.T) {
	st := &srStream{ssrc: 7, clock: 90000}
	if _, ok := st.report(0, time.Now()); ok {
		t.Fatal("a report before the first packet")
	}
	const ms = int64(time.Millisecond)
	st.note(&rtp.Header{SequenceNumber: 100, Timestamp: 9000}, 1000, 10*ms)
	st.note(&rtp.Header{SequenceNumber: 101, Timestamp: 9000}, 1000, 11*ms) // same frame: the time stays
	st.note(&rtp.Header{SequenceNumber: 102, Timestamp: 12000}, 500, 40*ms)
	st.note(&rtp.Header{SequenceNumber: 99, Timestamp: 6000}, 200, 41*ms) // late
	wall := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	sr, ok := st.report(140*ms, wall)
	if !ok {
		t.Fatal("no report")
	}
	// 100 ms after the packet of timestamp 12000: 9000 more at 90 kHz.
	if sr.SSRC != 7 || sr.PacketCount != 4 || sr.OctetCount != 2700 || sr.RTPTime != 21000 {
		t.Errorf("report %+v; want SSRC 7, 4 packets, 2700 octets, RTP time 21000", sr)
	}
	if sr.NTPTime != ntpTime(wall) || sr.NTPTime>>32 != uint64(wall.Unix())+2208988800 {
		t.Errorf("NTP time %x, want %x", sr.NTPTime, ntpTime(wall))
	}
	// A wrap of the sequence number is in order.
	st = &srStream{ssrc: 8, clock: 90000}
	st.note(&rtp.Header{SequenceNumber: 65535, Timestamp: 15000}, 1, 150*ms)
	st.note(&rtp.Header{SequenceNumber: 0, Timestamp: 18000}, 1, 160*ms)
	if sr, _ := st.report(160*ms, wall); sr.RTPTime != 18000 {
		t.Errorf("after the wrap: RTP time %d, want 18000", sr.RTPTime)
	}
}
