//go:build linux

package relay

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"
)

// Runs of equal sizes go out as GSO messages and come back, through GRO,
// as the same datagrams in the same order; odd sizes break the runs.
func TestBatchSegmentation(t *testing.T) {
	tx, rx := udpPair(t)
	_ = rx.SetReadBuffer(4 << 20)
	w, err := newBatchIO(tx, batchLen)
	if err != nil {
		t.Fatal(err)
	}
	w.setDest(rx.LocalAddr().(*net.UDPAddr).AddrPort())
	rd, err := newBatchIO(rx, batchLen)
	if err != nil {
		t.Fatal(err)
	}
	rd.enableGRO()

	sizes := []int{1240, 1240, 1240, 600, 1240, 1300, 1300, 8, 8, 8, 8, 1, 2000, 2000, 2000}
	for len(sizes) < batchLen {
		sizes = append(sizes, 1240)
	}
	var want [][]byte
	for i, n := range sizes {
		p := bytes.Repeat([]byte{byte(i)}, n)
		p[0] = byte(i)
		want = append(want, p)
	}
	if n, err := w.writeBatch(want); err != nil || n != len(want) {
		t.Fatalf("writeBatch = %d, %v", n, err)
	}

	bufs := newSlots(batchLen, 64<<10)
	for i := range bufs {
		bufs[i] = bufs[i][:cap(bufs[i])]
	}
	got, coalesced := [][]byte{}, 0
	rsizes := make([]int, batchLen)
	from := make([]netip.AddrPort, batchLen)
	_ = rx.SetReadDeadline(time.Now().Add(5 * time.Second))
	for len(got) < len(want) {
		n, err := rd.readBatch(bufs, rsizes, from)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			p := bufs[i][:rsizes[i]]
			seg := rd.segSize(i)
			if seg <= 0 || seg >= len(p) {
				seg = len(p)
			} else {
				coalesced++
			}
			for ; len(p) > 0; p = p[min(seg, len(p)):] {
				got = append(got, bytes.Clone(p[:min(seg, len(p))]))
			}
		}
	}
	t.Logf("%d datagrams, %d buffers held several", len(got), coalesced)
	if len(got) != len(want) {
		t.Fatalf("got %d datagrams, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("datagram %d: got %d bytes starting %d, want %d bytes starting %d", i, len(got[i]), got[i][0], len(want[i]), want[i][0])
		}
	}
}
