package sfu

import (
	"net"
	"sync/atomic"

	"github.com/shoal-sfu/shoal/internal/udpbatch"
)

// The UDP mux socket (Network.UDPPort) carries every connection's packets.
// Its buffers are sized for bursts (muxBufferSize each way), and unless
// Config.DisableBatchedSends its sends are batched: a fan-out holds the
// socket (udpbatch.Conn.Hold) while it writes a packet to each subscriber
// and releases it at the end, which sends them all, up to 64 per sendmmsg,
// from the fan-out's own goroutine. Packets written outside a fan-out
// (RTCP, retransmissions, ICE and DTLS) go out at once, or with the burst
// of a fan-out running at that moment.

// muxBufferSize is the mux socket's receive and send buffer size (the
// kernel caps it at net.core.rmem_max and wmem_max).
const muxBufferSize = 4 << 20

// muxBatch is the batching mux socket, set once when the mux opens.
type muxBatch = atomic.Pointer[udpbatch.Conn]

// muxSocket sizes the buffers of the mux socket conn and, unless
// Config.DisableBatchedSends or the system cannot, returns it wrapped to
// batch its sends. Another network's socket (Config.Net) is returned as it
// is.
func (s *SFU) muxSocket(conn net.PacketConn) net.PacketConn {
	uc, ok := conn.(*net.UDPConn)
	if !ok {
		return conn
	}
	_ = uc.SetReadBuffer(muxBufferSize)
	_ = uc.SetWriteBuffer(muxBufferSize)
	if s.cfg.DisableBatchedSends {
		return conn
	}
	bc, err := udpbatch.NewConn(uc)
	if err != nil {
		s.logger.Info("UDP mux sends not batched", "err", err)
		return conn
	}
	s.batch.Store(bc)
	return bc
}

// sendBurst returns the batching mux socket for a fan-out to hold, or nil
// (Hold and Release of a nil *udpbatch.Conn do nothing).
func (s *SFU) sendBurst() *udpbatch.Conn { return s.batch.Load() }

// MuxStats describes the UDP mux socket's batched sends.
type MuxStats struct {
	// Batched is true when the mux's sends are batched.
	Batched bool
	// Calls counts the system calls that sent batches, Datagrams the
	// packets they sent: Datagrams/Calls is the mean batch.
	Calls, Datagrams uint64
	// Failed counts packets the system refused in a batch (dropped).
	Failed uint64
}

// MuxStats returns the counters of the mux's batched sends (zero without a
// mux or with Config.DisableBatchedSends).
func (s *SFU) MuxStats() MuxStats {
	bc := s.batch.Load()
	if bc == nil {
		return MuxStats{}
	}
	st := bc.Stats()
	return MuxStats{Batched: true, Calls: st.Calls, Datagrams: st.Datagrams, Failed: st.Failed}
}
