package sfu

import (
	"net"
	"runtime"
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

// sendState is the SFU's: its batching mux socket, set once when the mux
// opens, and the packets spread fan-outs dropped (fanout_pool.go).
type sendState struct {
	batch         atomic.Pointer[udpbatch.Conn]
	fanOutDropped atomic.Uint64
	// the direct send path's (direct.go)
	directConns, directFallback, directPackets atomic.Uint64
	// the direct receive path's publishers' streams (recvswitch.go)
	recvStreams, recvPackets atomic.Uint64
	// inline is set when the mux opens on a single processor: fan-outs are
	// then never spread (fanout_pool.go).
	inline atomic.Bool
}

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
	s.send.inline.Store(runtime.GOMAXPROCS(0) == 1)
	if s.cfg.DisableBatchedSends {
		return conn
	}
	bc, err := udpbatch.NewConn(uc)
	if err != nil {
		s.logger.Info("UDP mux sends not batched", "err", err)
		return conn
	}
	s.send.batch.Store(bc)
	return bc
}

// sendBurst returns the batching mux socket for a fan-out to hold, or nil
// (Hold and Release of a nil *udpbatch.Conn do nothing).
func (s *SFU) sendBurst() *udpbatch.Conn { return s.send.batch.Load() }

// MuxStats describes the UDP mux socket's batched sends.
type MuxStats struct {
	// Batched is true when the mux's sends are batched.
	Batched bool
	// Calls counts the system calls that sent batches, Datagrams the
	// packets they sent: Datagrams/Calls is the mean batch.
	Calls, Datagrams uint64
	// Failed counts packets the system refused in a batch (dropped).
	Failed uint64
	// FanOutDropped counts packets a spread fan-out's worker lost, for its
	// share of a track's subscribers, because it was a full ring behind
	// (Config.SpreadAbove).
	FanOutDropped uint64
	// DirectConns counts the connections that switched to the direct send
	// path (Config.DisableDirectSend), DirectFallback those that could not
	// and send through pion (the SFU was the DTLS client, no key log, a
	// candidate pair not on the mux), DirectPackets the packets the direct
	// path sent.
	DirectConns, DirectFallback, DirectPackets uint64
	// UpstreamSwitched counts the publishers' streams switched to the
	// direct receive path (their pump reads what the mux socket's reader
	// decrypted), UpstreamPackets the RTP packets they got that way.
	UpstreamSwitched, UpstreamPackets uint64
	// RecvRTCP counts the SRTCP datagrams the direct receive path took
	// from subscribers (directrecv.go: read off the mux socket, decrypted
	// and handled without pion), RecvRTP the SRTP datagrams it took from
	// publishers, RecvToPion the SRTCP datagrams of direct connections it
	// gave to pion whole (compounds with a sender report), RecvDropped the
	// datagrams of direct connections it dropped: they failed SRTP or
	// SRTCP authentication or the replay check, or did not parse.
	RecvRTCP, RecvRTP, RecvToPion, RecvDropped uint64
}

// MuxStats returns the counters of the mux's batched sends (zero without a
// mux or with Config.DisableBatchedSends), of spread fan-outs and of the
// direct send and receive paths.
func (s *SFU) MuxStats() MuxStats {
	ms := MuxStats{FanOutDropped: s.send.fanOutDropped.Load(), DirectConns: s.send.directConns.Load(),
		DirectFallback: s.send.directFallback.Load(), DirectPackets: s.send.directPackets.Load(),
		UpstreamSwitched: s.send.recvStreams.Load(), UpstreamPackets: s.send.recvPackets.Load()}
	if r := s.muxRecv; r != nil {
		ms.RecvRTCP, ms.RecvRTP, ms.RecvToPion, ms.RecvDropped = r.rtcpTaken.Load(), r.rtpTaken.Load(), r.toPion.Load(), r.dropped.Load()
	}
	if bc := s.send.batch.Load(); bc != nil {
		st := bc.Stats()
		ms.Batched, ms.Calls, ms.Datagrams, ms.Failed = true, st.Calls, st.Datagrams, st.Failed
	}
	return ms
}
