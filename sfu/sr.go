package sfu

// Sender reports. With the direct send path (direct.go) pion's report
// interceptor would see only what still goes through pion, so it is
// replaced by this one, which counts what either path sends: for each
// stream a connection sends, every srInterval (from one goroutine for the
// SFU, srClock), an RTCP sender report with the packets and payload
// octets sent and the RTP timestamp of the moment the report is made (the last new timestamp sent, advanced by the time
// since at the codec's clock rate) beside that moment's NTP time, as
// pion's does; a connection's reports go in one compound RTCP packet
// (up to srPerPacket of them). Retransmissions (RTX) are not counted:
// they reach neither (the outer RTX gate takes them past this
// interceptor, and the direct path notes only the main SSRC).

import (
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// srInterval is how often the reports go, as pion's default.
const srInterval = time.Second

// srPerPacket is the most reports in one compound packet: 28 bytes each,
// 840 bytes with SRTCP's overhead, well within a datagram.
const srPerPacket = 30

// srFactory makes one srInterceptor per peer connection and hands its
// streams to the connection through reg (not nil).
type srFactory struct {
	reg *srRegistries
}

// srRegistries hands each peer connection's streams to its Connection
// (by the peer connection's id) and holds the SFU's report clock.
type srRegistries struct {
	byPC  pcMap[*srRegistry]
	clock srClock
}

func (r *srRegistries) take(id string) *srRegistry {
	if r == nil {
		return nil
	}
	return r.byPC.take(id)
}

// pcMap hands what an interceptor factory made for a peer connection
// (NewInterceptor gets the peer connection's id) to the Connection, which
// takes it by that id once the peer connection exists.
type pcMap[T comparable] struct{ m sync.Map }

func (p *pcMap[T]) put(id string, v T) { p.m.Store(id, v) }

// take returns what was put for id, once; the zero T if nothing was.
func (p *pcMap[T]) take(id string) T {
	var zero T
	v, ok := p.m.LoadAndDelete(id)
	if !ok {
		return zero
	}
	return v.(T)
}

// forget drops v for id, if it is still there (the peer connection closed
// before its Connection took it).
func (p *pcMap[T]) forget(id string, v T) { p.m.CompareAndDelete(id, v) }

// srRegistry is a peer connection's streams, by SSRC.
type srRegistry struct {
	m sync.Map // uint32 → *srStream
}

func (r *srRegistry) lookup(ssrc uint32) *srStream {
	if r == nil {
		return nil
	}
	v, ok := r.m.Load(ssrc)
	if !ok {
		return nil
	}
	return v.(*srStream)
}

// NewInterceptor returns the peer connection's sender report interceptor.
func (f *srFactory) NewInterceptor(id string) (interceptor.Interceptor, error) {
	si := &srInterceptor{id: id, reg: f.reg, streams: &srRegistry{}}
	f.reg.byPC.put(id, si.streams)
	return si, nil
}

// srInterceptor is one peer connection's reports, sent by the SFU's
// report clock once pion binds the RTCP writer, until Close.
type srInterceptor struct {
	interceptor.NoOp
	id      string
	reg     *srRegistries
	streams *srRegistry

	// the clock's: the writer (nil until bound) and, under sendMu, whether
	// Close stopped the reports
	sendMu  sync.Mutex
	w       interceptor.RTCPWriter
	stopped bool
}

// srStream is what the reports of one stream need. Both paths note under
// mu.
type srStream struct {
	ssrc  uint32
	clock float64 // Hz

	mu      sync.Mutex
	packets uint32
	octets  uint32
	lastSN  uint16
	lastTS  uint32 // the last new RTP timestamp sent
	lastAt  int64  // mono() when it was sent
}

// note counts a packet sent, as pion's report interceptor does: the
// timestamp is taken from in-order packets only, when it changes (the
// first packet of a frame).
func (st *srStream) note(h *rtp.Header, payloadLen int, now int64) {
	st.mu.Lock()
	diff := h.SequenceNumber - st.lastSN
	if st.packets == 0 || (diff > 0 && diff < 1<<15) {
		st.lastSN = h.SequenceNumber
		if st.packets == 0 || h.Timestamp != st.lastTS {
			st.lastTS, st.lastAt = h.Timestamp, now
		}
	}
	st.packets++
	st.octets += uint32(payloadLen)
	st.mu.Unlock()
}

// report returns the stream's report at now (mono) and wall, false before
// its first packet.
func (st *srStream) report(now int64, wall time.Time) (rtcp.SenderReport, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.packets == 0 {
		return rtcp.SenderReport{}, false
	}
	return rtcp.SenderReport{
		SSRC:        st.ssrc,
		NTPTime:     ntpTime(wall),
		RTPTime:     st.lastTS + uint32(float64(now-st.lastAt)/1e9*st.clock),
		PacketCount: st.packets,
		OctetCount:  st.octets,
	}, true
}

// ntpTime is t as a 64-bit NTP timestamp.
func ntpTime(t time.Time) uint64 {
	secs := uint64(t.Unix()) + 2208988800
	frac := uint64(t.Nanosecond()) << 32 / uint64(time.Second)
	return secs<<32 | frac
}

// BindLocalStream counts the stream's packets that go through pion.
func (si *srInterceptor) BindLocalStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	st := &srStream{ssrc: info.SSRC, clock: float64(info.ClockRate)}
	si.streams.m.Store(info.SSRC, st)
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		st.note(h, len(payload), mono())
		return w.Write(h, payload, a)
	})
}

// UnbindLocalStream forgets the stream.
func (si *srInterceptor) UnbindLocalStream(info *interceptor.StreamInfo) {
	si.streams.m.Delete(info.SSRC)
}

// BindRTCPWriter starts the reports.
func (si *srInterceptor) BindRTCPWriter(w interceptor.RTCPWriter) interceptor.RTCPWriter {
	si.sendMu.Lock()
	first := si.w == nil && !si.stopped
	si.w = w
	si.sendMu.Unlock()
	if first {
		si.reg.clock.add(si)
	}
	return w
}

// Close stops the reports (none is being sent when it returns) and
// forgets the streams in the registry, should the connection never have
// taken them.
func (si *srInterceptor) Close() error {
	si.reg.clock.remove(si)
	si.sendMu.Lock()
	si.stopped = true
	si.sendMu.Unlock()
	si.reg.byPC.forget(si.id, si.streams)
	return nil
}

// send writes the connection's reports at now (mono) and wall, in
// compound packets (pion's interceptor sends one datagram per stream).
// pkts is scratch, returned for reuse.
func (si *srInterceptor) send(now int64, wall time.Time, pkts []rtcp.Packet, srs []rtcp.SenderReport) ([]rtcp.Packet, []rtcp.SenderReport) {
	si.sendMu.Lock()
	defer si.sendMu.Unlock()
	if si.stopped || si.w == nil {
		return pkts, srs
	}
	srs = srs[:0]
	si.streams.m.Range(func(_, v any) bool {
		if sr, ok := v.(*srStream).report(now, wall); ok {
			srs = append(srs, sr)
		}
		return true
	})
	pkts = pkts[:0]
	for i := range srs {
		pkts = append(pkts, &srs[i])
	}
	for rest := pkts; len(rest) > 0; {
		n := min(len(rest), srPerPacket)
		if _, err := si.w.Write(rest[:n], nil); err != nil {
			break
		}
		rest = rest[n:]
	}
	clear(pkts)
	return pkts[:0], srs
}

// srClock sends the reports of every connection of the SFU from one
// goroutine, every srInterval, where each connection had a goroutine and
// a ticker: N connections woke the process N times a second, each at its
// own moment; the clock wakes it once. It starts with the first
// connection and ends with the SFU (close).
type srClock struct {
	clockSet[*srInterceptor]
	// the goroutine's, reused
	round []*srInterceptor
	pkts  []rtcp.Packet
	srs   []rtcp.SenderReport
}

func (k *srClock) add(si *srInterceptor) { k.clockSet.add(si, k.loop) }

func (k *srClock) loop() {
	defer close(k.done)
	t := time.NewTicker(srInterval)
	defer t.Stop()
	for {
		select {
		case <-k.stop:
			return
		case <-t.C:
		}
		k.round = k.snapshot(k.round)
		now, wall := mono(), time.Now()
		for i, si := range k.round {
			k.pkts, k.srs = si.send(now, wall, k.pkts, k.srs)
			k.round[i] = nil
		}
		k.round = k.round[:0]
	}
}
