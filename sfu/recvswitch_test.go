package sfu

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/transport/v5/packetio"

	"github.com/shoal-sfu/shoal/internal/testutil"
)

// fakePionStream is pion's SRTP read stream as the switch reads it: a
// buffer with a read deadline (packetio.Buffer's rules: a deadline already
// passed times out at once, else buffered packets come first).
type fakePionStream struct {
	buf *packetio.Buffer
}

func (f *fakePionStream) Read(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
	n, _, err := f.buf.Read(b, nil)
	return n, a, err
}

// switchRig is one publisher stream, its sender's SRTP context and the
// two receiving contexts: pion's (before the switch) and the direct
// path's (after), driven as the mux reader drives them.
type switchRig struct {
	t           *testing.T
	ssrc        uint32
	enc, pionCx *srtp.Context
	remoteMu    sync.Mutex
	remote      *srtp.Context
	u           *upRecv
	s           *recvStream
	pion        *fakePionStream
	stats       sendState
	drops       atomic.Uint64
	seq         uint16
	authFailed  int
}

func newSwitchRig(t *testing.T, firstSeq uint16) *switchRig {
	key, salt := make([]byte, 16), make([]byte, 12)
	_, _ = rand.Read(key)
	_, _ = rand.Read(salt)
	mk := func() *srtp.Context {
		c, err := srtp.CreateContext(key, salt, srtp.ProtectionProfileAeadAes128Gcm, srtp.SRTPReplayProtection(64))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	r := &switchRig{t: t, ssrc: 0x1234, enc: mk(), pionCx: mk(), remote: mk(), seq: firstSeq}
	r.u = &upRecv{stats: &r.stats, drops: &r.drops}
	r.pion = &fakePionStream{buf: packetio.NewBuffer()}
	info := &interceptor.StreamInfo{SSRC: r.ssrc, MimeType: "video/VP8"}
	r.s = r.u.bind(info, r.pion).(*recvStream)
	r.u.pumped(r.ssrc, r.pion.buf.SetReadDeadline)
	return r
}

func (r *switchRig) setROC(ssrc, roc uint32) bool {
	r.remoteMu.Lock()
	defer r.remoteMu.Unlock()
	r.remote.SetROC(ssrc, roc)
	return true
}

// send encrypts the next packet and delivers it as the mux reader does:
// to the direct path when the switch takes its SSRC, else to pion.
func (r *switchRig) send() {
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: r.seq, SSRC: r.ssrc}, Payload: []byte{1, 2, 3, byte(r.seq >> 8), byte(r.seq)}}
	r.seq++
	raw, _ := p.Marshal()
	enc, err := r.enc.EncryptRTP(nil, raw, nil)
	if err != nil {
		r.t.Fatal(err)
	}
	if r.u.takesSSRC(r.ssrc) {
		var h rtp.Header
		r.remoteMu.Lock()
		plain, err := r.remote.DecryptRTP(nil, enc, &h)
		r.remoteMu.Unlock()
		if err != nil {
			r.authFailed++
			return
		}
		// As fast as the pump reads, no faster: this test is not about drops.
		for r.s.q.tail.Load()-r.s.q.head.Load() >= uint64(r.s.q.size) {
			runtime.Gosched()
		}
		r.u.onRTP(&h, plain)
		return
	}
	plain, err := r.pionCx.DecryptRTP(nil, enc, nil)
	if err != nil {
		r.authFailed++
		return
	}
	for r.pion.buf.Count() > 200 {
		runtime.Gosched()
	}
	if _, err := r.pion.buf.Write(plain, nil); err != nil {
		r.t.Fatal(err)
	}
}

// TestRecvSwitchROC: a stream whose sequence number wraps before the
// switch (rollover counter 1 when it switches) and again after it (2) is
// decrypted whole by the direct path's context: the counter handed over is
// the one the switch followed through pion's packets. Every packet reaches
// the pump once, in order; the switch waits for a sequence number away
// from the wrap. With the counter not handed over (left at 0) every packet
// after the switch fails authentication, and the test fails.
func TestRecvSwitchROC(t *testing.T) {
	testutil.CheckLeaks(t)
	r := newSwitchRig(t, 65536-700)
	const total = 700 + 65536 + 3000 // two wraps
	got := make(chan []uint16, 1)
	go func() {
		var seqs []uint16
		b := make([]byte, recvSlotSize)
		for {
			n, _, err := r.s.Read(b, nil)
			if err != nil {
				got <- seqs
				return
			}
			if n < 12 || !bytes.Equal(b[12:15], []byte{1, 2, 3}) {
				t.Errorf("packet %x: not what was sent", b[:n])
			}
			seqs = append(seqs, uint16(b[2])<<8|uint16(b[3]))
		}
	}()
	// The rollover counter handed over, and the sequence number it was
	// handed at (the pump's).
	var roc, at []uint32
	r.u.direct(func(ssrc, c uint32) bool {
		roc, at = append(roc, c), append(at, uint32(uint16(r.s.ext)))
		return r.setROC(ssrc, c)
	})
	for range total {
		r.send()
	}
	// let the pump read the last ones, then end the stream
	testutil.Eventually(t, func() bool {
		return r.s.q.head.Load() == r.s.q.tail.Load() && r.pion.buf.Count() == 0
	}, 10*time.Second, "the pump read everything")
	r.u.unbind(r.s.info)
	seqs := <-got
	if r.authFailed != 0 {
		t.Errorf("%d packets failed authentication", r.authFailed)
	}
	// The first wrap is at packet 700; the switch waits for sequence
	// number rocGuard of the next cycle.
	if len(roc) != 1 || roc[0] != 1 || at[0] != rocGuard {
		t.Errorf("rollover counters handed over %v at sequence numbers %v, want [1] at [%d]", roc, at, rocGuard)
	}
	if len(seqs) != total {
		t.Fatalf("the pump read %d packets, want %d", len(seqs), total)
	}
	for i, s := range seqs {
		if want := uint16(65536 - 700 + i); s != want {
			t.Fatalf("packet %d: sequence number %d, want %d", i, s, want)
		}
	}
	// pion's buffer holds up to 200 (and the producer runs ahead) when the pump switches
	if got := r.stats.recvPackets.Load(); got < total-700-rocGuard-400 || r.stats.recvStreams.Load() != 1 {
		t.Errorf("%d packets taken directly in %d switches, want at least %d in 1", got, r.stats.recvStreams.Load(), total-700-rocGuard-400)
	}
	if r.s.ext != uint64(65536-700+total-1) {
		t.Errorf("extended sequence number %d, want %d", r.s.ext, 65536-700+total-1)
	}
}

// TestRecvSwitchDrain: the packets pion already took when the stream
// switched are read first, then the queue's, in order; off the direct
// path (direct(nil)) the stream goes back to pion's read stream once its
// queue is read; a closed stream ends the pump's read with io.EOF.
func TestRecvSwitchDrain(t *testing.T) {
	testutil.CheckLeaks(t)
	r := newSwitchRig(t, 5000)
	r.u.direct(r.setROC)
	b := make([]byte, recvSlotSize)
	read := func() uint16 {
		t.Helper()
		n, _, err := r.s.Read(b, nil)
		if err != nil || n < 12 {
			t.Fatalf("read: %d bytes, %v", n, err)
		}
		return uint16(b[2])<<8 | uint16(b[3])
	}
	// Five packets wait in pion's buffer; the first read switches.
	for range 5 {
		r.send()
	}
	if s := read(); s != 5000 || !r.u.takesSSRC(r.ssrc) {
		t.Fatalf("first read %d, switched %v", s, r.u.takesSSRC(r.ssrc))
	}
	// Three go to the queue, while pion's buffer still holds four: those
	// are read first (the drain window), then the queue's.
	for range 3 {
		r.send()
	}
	for i := range 7 {
		if s := read(); s != uint16(5001+i) {
			t.Fatalf("read %d: %d, want %d", i, s, 5001+i)
		}
	}
	// Back to pion: one more queued packet first, then pion's.
	r.send()
	r.u.direct(nil)
	if r.u.takesSSRC(r.ssrc) {
		t.Fatal("still taken off the direct path")
	}
	r.send()
	for i := range 2 {
		if s := read(); s != uint16(5008+i) {
			t.Fatalf("read %d after: %d, want %d", i, s, 5008+i)
		}
	}
	// Closing ends a pump waiting on the queue.
	r.u.direct(r.setROC)
	r.send() // switches at the read
	if s := read(); s != 5010 || !r.u.takesSSRC(r.ssrc) {
		t.Fatalf("read %d, switched %v", s, r.u.takesSSRC(r.ssrc))
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := r.s.Read(b, nil)
		for err == nil { // the drain window's end
			_, _, err = r.s.Read(b, nil)
		}
		done <- err
	}()
	time.Sleep(3 * switchDrain)
	r.u.close()
	select {
	case err := <-done:
		if !errors.Is(err, io.EOF) {
			t.Errorf("read after close: %v, want io.EOF", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the pump's read did not end when the stream closed")
	}
	if r.authFailed != 0 {
		t.Errorf("%d packets failed authentication", r.authFailed)
	}
}

// TestRecvQueueFull: a full queue drops (counted), the reader never
// waits; push and pop allocate nothing.
func TestRecvQueueFull(t *testing.T) {
	var stats sendState
	var drops atomic.Uint64
	u := &upRecv{stats: &stats, drops: &drops}
	s := u.bind(&interceptor.StreamInfo{SSRC: 7, MimeType: "audio/opus"}, &fakePionStream{buf: packetio.NewBuffer()}).(*recvStream)
	s.q.reset()
	u.mu.Lock()
	u.addLocked(s)
	u.mu.Unlock()
	h := &rtp.Header{SSRC: 7}
	pkt := make([]byte, 200)
	for range recvSlotsAudio + 10 {
		u.onRTP(h, pkt)
	}
	if stats.recvPackets.Load() != recvSlotsAudio || drops.Load() != 10 {
		t.Fatalf("%d queued, %d dropped; want %d and 10", stats.recvPackets.Load(), drops.Load(), recvSlotsAudio)
	}
	u.onRTP(&rtp.Header{SSRC: 8}, pkt) // not switched
	if drops.Load() != 11 {
		t.Fatalf("a packet of an SSRC not taken: %d dropped, want 11", drops.Load())
	}
	b := make([]byte, recvSlotSize)
	s.mode = modeQueue
	if n := testing.AllocsPerRun(1000, func() {
		u.onRTP(h, pkt)
		if _, _, err := s.Read(b, nil); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("%v allocations per packet", n)
	}
}

// BenchmarkRecvHandoff: one packet from the mux reader's goroutine to the
// pump's, through a switched stream's ring (the pump waits on its channel
// when the ring is empty) and, for comparison, through a packetio.Buffer,
// which each of pion's goroutine hand-offs on the receive path goes
// through (the SRTP read stream's among them). burst: the reader writes
// as fast as the pump takes; pingpong: it writes the next packet only once
// the pump took the last, so the pump waits (parks) for every one: the
// cost of a wake-up.
func BenchmarkRecvHandoff(b *testing.B) {
	pkt := make([]byte, 1200)
	for _, mode := range []string{"burst", "pingpong"} {
		b.Run("mode="+mode+"/impl=ring", func(b *testing.B) {
			var stats sendState
			var drops atomic.Uint64
			u := &upRecv{stats: &stats, drops: &drops}
			s := u.bind(&interceptor.StreamInfo{SSRC: 7, MimeType: "video/VP8"}, &fakePionStream{buf: packetio.NewBuffer()}).(*recvStream)
			s.q.reset()
			u.addLocked(s)
			s.mode = modeQueue
			h := &rtp.Header{SSRC: 7}
			done := make(chan struct{})
			go func() {
				defer close(done)
				buf := make([]byte, recvSlotSize)
				for range b.N {
					if _, _, err := s.Read(buf, nil); err != nil {
						return
					}
				}
			}()
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				limit := uint64(s.q.size)
				if mode == "pingpong" {
					limit = 1
				}
				for s.q.tail.Load()-s.q.head.Load() >= limit {
					runtime.Gosched()
				}
				u.onRTP(h, pkt)
			}
			<-done
			u.close()
		})
		b.Run("mode="+mode+"/impl=packetio", func(b *testing.B) {
			buf := packetio.NewBuffer()
			done := make(chan struct{})
			go func() {
				defer close(done)
				rb := make([]byte, recvSlotSize)
				for range b.N {
					if _, _, err := buf.Read(rb, nil); err != nil {
						return
					}
				}
			}()
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				limit := 256
				if mode == "pingpong" {
					limit = 1
				}
				for buf.Count() >= limit {
					runtime.Gosched()
				}
				if _, err := buf.Write(pkt, nil); err != nil {
					b.Fatal(err)
				}
			}
			<-done
			_ = buf.Close()
		})
	}
}

// TestRecvSwitchEdge: pion read a stream's first packet itself (numbered
// 65535: an undeclared stream's, before the switch could see it), so the
// switch first sees 0, 1, ...: pion's rollover counter is then 1, the
// switch's would be 0. The stream stays on pion's path and every packet
// reaches the pump. Switched with the counter it followed, every packet
// after the switch fails authentication and the test fails.
func TestRecvSwitchEdge(t *testing.T) {
	testutil.CheckLeaks(t)
	r := newSwitchRig(t, 65535)
	r.u.direct(r.setROC)
	// The first packet: decrypted by pion, not given to the pump.
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: r.seq, SSRC: r.ssrc}, Payload: []byte{1}}
	r.seq++
	raw, _ := p.Marshal()
	enc, _ := r.enc.EncryptRTP(nil, raw, nil)
	if _, err := r.pionCx.DecryptRTP(nil, enc, nil); err != nil {
		t.Fatal(err)
	}
	const total = 3000
	got := make(chan int, 1)
	go func() {
		n := 0
		b := make([]byte, recvSlotSize)
		for {
			if _, _, err := r.s.Read(b, nil); err != nil {
				got <- n
				return
			}
			n++
		}
	}()
	for range total {
		r.send()
	}
	testutil.Eventually(t, func() bool {
		return r.s.q.head.Load() == r.s.q.tail.Load() && r.pion.buf.Count() == 0
	}, 10*time.Second, "the pump read everything")
	r.u.close()
	_ = r.pion.buf.Close()
	if n := <-got; n != total || r.authFailed != 0 || r.u.takesSSRC(r.ssrc) {
		t.Errorf("the pump read %d of %d, %d failed authentication, switched %v; want all, none, false", n, total, r.authFailed, r.u.takesSSRC(r.ssrc))
	}
}
