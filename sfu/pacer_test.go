package sfu

import (
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// recWriter records the sequence numbers written to it, and when.
type recWriter struct {
	mu  sync.Mutex
	sns []uint16
	at  []time.Time
}

func (w *recWriter) WriteRTP(h *rtp.Header, _ []byte) (int, error) {
	w.mu.Lock()
	w.sns = append(w.sns, h.SequenceNumber)
	w.at = append(w.at, time.Now())
	w.mu.Unlock()
	return 0, nil
}

func (w *recWriter) Write(b []byte) (int, error) { return len(b), nil }

func (w *recWriter) written() []uint16 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]uint16(nil), w.sns...)
}

var _ webrtc.TrackLocalWriter = (*recWriter)(nil)

// drainAll runs the pacer's drain until nothing waits.
func drainAll(p *pacer) {
	for wait := p.drain(); wait > 0; wait = p.drain() {
		time.Sleep(wait)
	}
}

func TestPacerKeyframeBurst(t *testing.T) {
	p := newPacer()
	w := &recWriter{}
	payload := make([]byte, 1188) // 1200 bytes with the header
	h := rtp.Header{Version: 2, CSRC: []uint32{7}}
	send := func(sn uint16, burst bool) {
		h.SequenceNumber = sn
		p.send(w, &h, payload, burst)
	}
	// No estimate yet: nothing is held.
	for i := range 20 {
		send(uint16(i), true)
	}
	if n := len(w.written()); n != 20 {
		t.Fatalf("without an estimate %d of 20 sent", n)
	}
	// 1 Mbit/s: 312.5 KB/s, a 9.6 KB bucket (pacerMinBurst).
	p.setRate(1_000_000)
	// A keyframe of 60 packets: the bucket's worth leaves at once, the
	// rest waits; a packet of the next frame waits behind it.
	start := time.Now()
	for i := range 60 {
		send(uint16(100+i), true)
	}
	send(160, false)
	now := len(w.written()) - 20
	if now < 6 || now > 10 {
		t.Fatalf("%d packets of the keyframe left at once, want about 8", now)
	}
	drainAll(p)
	took := time.Since(start)
	got := w.written()[20:]
	if len(got) != 61 {
		t.Fatalf("%d packets sent, want 61", len(got))
	}
	for i, sn := range got {
		if sn != uint16(100+i) {
			t.Fatalf("packet %d is %d: reordered", i, sn)
		}
	}
	// (61 × 1200 − 9600) bytes at 312.5 KB/s: 203 ms.
	if took < 150*time.Millisecond {
		t.Fatalf("the burst left in %v: not paced", took)
	}
	// Other video passes at once, even beyond the rate.
	before := len(w.written())
	for i := range 50 {
		send(uint16(200+i), false)
	}
	if n := len(w.written()) - before; n != 50 {
		t.Fatalf("%d of 50 packets outside keyframes sent at once", n)
	}
	if q := p.queued.Load(); q < 50 || q > 56 {
		t.Fatalf("queued %d", q)
	}

	// A FIFO that overflows drops its oldest, and counts them.
	p.setRate(100_000)
	for i := range 300 {
		send(uint16(1000+i), true)
	}
	if d := p.dropped.Load(); d < 150 {
		t.Fatalf("dropped %d of 300 at 100 kbit/s", d)
	}
	p.clear()
	if p.q != nil || p.n != 0 {
		t.Fatal("clear left packets")
	}
}

func TestPacerAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	p := newPacer()
	p.setRate(1_000_000)
	w := &recWriter{sns: make([]uint16, 0, 100_000), at: make([]time.Time, 0, 100_000)}
	payload := make([]byte, 1188)
	h := rtp.Header{Version: 2}
	if a := testing.AllocsPerRun(200, func() {
		p.send(w, &h, payload, false)
	}); a != 0 {
		t.Fatalf("passing a packet through allocates %v", a)
	}
	if a := testing.AllocsPerRun(50, func() {
		for range 20 {
			p.send(w, &h, payload, true)
		}
		p.clear()
	}); a != 0 {
		t.Fatalf("queueing a burst allocates %v", a)
	}
}
