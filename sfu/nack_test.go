package sfu_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/shoal-sfu/shoal/sfu"
)

// BenchmarkVideoSubscriberHeap reports the heap that each video subscriber
// adds while media flows: b.N recvonly subscribers of one video track, the
// heap measured with the connections up and idle, then again after 3000
// packets of 1000 bytes (more than any retransmission buffer holds) reached
// them all. The difference, divided by b.N, is the cost of a subscriber's
// down track: its sender, its part of the retransmission buffers, its
// client's receiver.
//
//	go test -run XXX -bench VideoSubscriberHeap -benchtime 20x -count 3 ./sfu/
func BenchmarkVideoSubscriberHeap(b *testing.B) {
	s := newSFU(b, nil)
	subs := make([]*testClient, b.N)
	for i := range subs {
		subs[i] = join(b, s, clientOpts{channel: "heap", id: fmt.Sprintf("S%d", i), role: sfu.RoleRecvonly, discard: true})
	}
	ch := channel(b, s, "heap")
	before := heapInUse()
	w := addRemoteVideo(b, ch, "v", "PUB", nil)
	pkt := benchPacket()
	seq := 0
	write := func() {
		pkt[2], pkt[3] = byte(seq>>8), byte(seq)
		ts := uint32(seq/4) * 3000
		pkt[4], pkt[5], pkt[6], pkt[7] = byte(ts>>24), byte(ts>>16), byte(ts>>8), byte(ts)
		seq++
		_ = w.WriteRTP(pkt)
	}
	waitReceiving(b, subs, "PUB/v", write)
	for i := 0; i < 3000; i++ {
		write()
		if i%20 == 19 {
			time.Sleep(2 * time.Millisecond) // about 10k packets/s, which loopback carries without loss
		}
	}
	after := heapInUse()
	b.ReportMetric(float64(after-before)/float64(b.N), "heap-B/video-sub")
	b.ReportMetric(0, "ns/op")
}
