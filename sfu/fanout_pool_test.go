package sfu

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/shoal-sfu/shoal/internal/testutil"
)

// seqWriter records the sequence numbers written to it; with block set,
// each write first waits for block to close (a stalled subscriber).
type seqWriter struct {
	mu    sync.Mutex
	seqs  []uint16
	block chan struct{}
}

func (w *seqWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	if w.block != nil {
		<-w.block
	}
	w.mu.Lock()
	w.seqs = append(w.seqs, h.SequenceNumber)
	w.mu.Unlock()
	return len(payload), nil
}

func (w *seqWriter) Write(b []byte) (int, error) {
	var h rtp.Header
	n, err := h.Unmarshal(b)
	if err != nil {
		return 0, err
	}
	return w.WriteRTP(&h, b[n:])
}

func (w *seqWriter) got() []uint16 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]uint16(nil), w.seqs...)
}

// newSpreadSource builds a source with n down tracks writing to
// seqWriters; set changes the SFU's Config first.
func newSpreadSource(t *testing.T, n int, set func(*Config)) (*source, []*downTrack, []*seqWriter) {
	t.Helper()
	cfg := Config{KeyframeInterval: time.Hour}
	if set != nil {
		set(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	src := newSource(newChannel(s, "spread"), TrackInfo{ID: "t", StreamID: "P", Kind: webrtc.RTPCodecTypeVideo, Codec: vp8}, nil, nil)
	t.Cleanup(src.close)
	var ds []*downTrack
	var ws []*seqWriter
	for i := range n {
		w := &seqWriter{}
		d := newDownTrack(src, nil)
		if _, err := d.Bind(&fakeContext{ssrc: webrtc.SSRC(1000 + i), pt: 96, ws: w}); err != nil {
			t.Fatal(err)
		}
		src.addSub(d)
		ds, ws = append(ds, d), append(ws, w)
	}
	return src, ds, ws
}

func seqPacket(seq uint16) []byte {
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 100, SequenceNumber: seq, Timestamp: 9000, SSRC: 42}, Payload: make([]byte, 1000)}
	b, _ := p.Marshal()
	return b
}

// Above SpreadAbove subscribers the fan-out runs on workers: every
// subscriber still gets every packet, in order, and the workers end when
// the source closes.
func TestSpreadDeliversInOrder(t *testing.T) {
	testutil.CheckLeaks(t)
	const subs, pkts = 30, 300
	src, _, ws := newSpreadSource(t, subs, nil)
	for i := range pkts {
		if err := src.write(seqPacket(uint16(65400 + i))); err != nil { // across the wrap
			t.Fatal(err)
		}
		if i%50 == 0 {
			time.Sleep(time.Millisecond) // let the workers keep up (a ring is 128)
		}
	}
	if src.spread.Load() == nil {
		t.Fatalf("%d subscribers, SpreadAbove %d: not spread", subs, src.ch.sfu.cfg.SpreadAbove)
	}
	testutil.Eventually(t, func() bool {
		for _, w := range ws {
			if len(w.got()) < pkts {
				return false
			}
		}
		return true
	}, 10*time.Second, "every subscriber gets every packet")
	for i, w := range ws {
		for j, seq := range w.got() {
			if seq != uint16(65400+j) {
				t.Fatalf("subscriber %d: packet %d has sequence number %d, want %d", i, j, seq, uint16(65400+j))
			}
		}
	}
	if d := src.ch.sfu.MuxStats().FanOutDropped; d != 0 {
		t.Errorf("%d packets dropped", d)
	}
	src.close() // the leak check sees the workers gone
}

// A stalled subscriber holds up neither the track's writer nor the
// subscribers of the other workers: they get every packet while it waits.
// Without spreading (SpreadAbove -1), the write stalls with it.
func TestSpreadStalledSubscriber(t *testing.T) {
	testutil.CheckLeaks(t)
	for _, spread := range []bool{true, false} {
		t.Run(map[bool]string{true: "spread", false: "inline"}[spread], func(t *testing.T) {
			const subs, pkts = 30, 100
			src, ds, ws := newSpreadSource(t, subs, func(c *Config) {
				if !spread {
					c.SpreadAbove = -1
				}
			})
			release := make(chan struct{})
			ws[0].block = release
			defer close(release)
			done := make(chan struct{})
			go func() {
				defer close(done)
				for i := range pkts {
					_ = src.write(seqPacket(uint16(i)))
				}
			}()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				if spread {
					t.Fatal("the track's writes stalled with one subscriber")
				}
				return // inline: stalled, as expected
			}
			if !spread {
				t.Fatal("inline fan-out did not stall on a stalled subscriber: the test cannot tell")
			}
			stalledWorker := spreadIndex(ds[0], len(src.spread.Load().workers))
			others := 0
			testutil.Eventually(t, func() bool {
				others = 0
				for i, w := range ws {
					if spreadIndex(ds[i], len(src.spread.Load().workers)) == stalledWorker {
						continue
					}
					if len(w.got()) < pkts {
						return false
					}
					others++
				}
				return true
			}, 10*time.Second, "the other workers' subscribers get every packet")
			if others == 0 {
				t.Fatal("every subscriber shares the stalled one's worker: the test cannot tell")
			}
			if n := len(ws[0].got()); n != 0 {
				t.Fatalf("the stalled subscriber got %d packets", n)
			}
		})
	}
}

// What the fan-out writes to a subscriber is read by its NACK handler and
// stats under lockSent, which must be the lock its writer holds: run with
// -race (with the source's lock the detector reports the spread workers'
// writes).
func TestSpreadLockSent(t *testing.T) {
	src, ds, _ := newSpreadSource(t, 25, nil)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, d := range ds[:5] {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				mu := d.lockSent()
				_ = d.rx.marks.get(5)
				_ = d.stats.packets
				mu.Unlock()
				_ = d.trackStats()
			}
		})
	}
	for i := range 500 {
		_ = src.write(seqPacket(uint16(i)))
		if i%50 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	close(stop)
	wg.Wait()
	if src.spread.Load() == nil {
		t.Fatal("not spread")
	}
}

// A spread write allocates nothing (the workers' writes included).
func TestSpreadAllocs(t *testing.T) {
	src, _ := newTestSource(t, 30, nil)
	t.Cleanup(src.close)
	pkt := testPacket(false)
	_ = src.write(pkt)
	if src.spread.Load() == nil {
		t.Fatal("not spread")
	}
	if allocs := testing.AllocsPerRun(200, func() { _ = src.write(nextSeq(pkt)) }); allocs != 0 {
		t.Fatalf("a spread write allocates %v per packet", allocs)
	}
}

// With the UDP mux opened on a single processor a fan-out is never
// spread, whatever its subscribers; on two it is.
func TestNoSpreadOnOneProcessor(t *testing.T) {
	testutil.CheckLeaks(t)
	for _, procs := range []int{1, 2} {
		t.Run(fmt.Sprintf("procs=%d", procs), func(t *testing.T) {
			ip := testutil.LoopbackIP(t)
			port := testutil.FreePort(t, ip)
			prev := runtime.GOMAXPROCS(procs)
			src, _, ws := newSpreadSource(t, 30, func(c *Config) {
				c.Network.UDPPort, c.Network.ListenIP, c.Network.IPFilter = port, ip, nil
			})
			s := src.ch.sfu
			s.mu.Lock()
			err := s.start() // opens the mux, as the first Join does
			s.mu.Unlock()
			runtime.GOMAXPROCS(prev)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 20 {
				if err := src.write(seqPacket(uint16(i))); err != nil {
					t.Fatal(err)
				}
			}
			if spread := src.spread.Load() != nil; spread != (procs > 1) {
				t.Fatalf("GOMAXPROCS %d with the mux: spread %v", procs, spread)
			}
			testutil.Eventually(t, func() bool { return len(ws[29].got()) == 20 }, 10*time.Second, "the last subscriber gets every packet")
			src.close()
		})
	}
}
