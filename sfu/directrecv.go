package sfu

// The direct receive path. pion reads the UDP mux socket on one goroutine
// (ice.UDPMuxDefault) and hands each datagram on through four more: the
// ICE candidate's receive loop, the webrtc mux's, the SRTP or SRTCP
// session's, and the reader of the RTPSender or track. For a connection on
// the direct send path (direct.go) the SFU knows the SRTP keys of both
// directions and the remote address of the selected ICE pair, so the
// socket pion's mux reads is wrapped (recvConn): a datagram from such an
// address is looked up in a registry (a copy-on-write map, read without a
// lock) and, when it is SRTCP (RFC 7983: first byte 128 to 191; RFC 5761:
// second byte 192 to 223), decrypted with the connection's remote SRTP
// context and handled on the reading goroutine itself:
//
//   - transport-cc feedback goes to the connection's estimator
//     (twccSender.onRTCP),
//   - REMB to the connection's downlink (Connection.noteREMB),
//   - every other packet of the compound to the down track each of its
//     destination SSRCs names (pion's rule, rtcp.RawPacket.
//     ParseDestinationSSRC): NACKs, PLIs, FIRs, receiver reports
//     (downTrack.handleRTCP).
//
// A compound that starts with a sender report (the client also publishes:
// pion's receiver report interceptor needs the SRs for LSR and DLSR) is
// given to pion whole and handled there, never here. Everything else goes
// to pion unchanged: STUN (ICE keeps the pair alive with it: its checks
// and their responses), DTLS, datagrams from any other address, and SRTP,
// unless the connection's upstream hook (setUpstreamHook) takes its SSRC:
// then it is decrypted with the same remote context and given to the hook.
//
// What fails authentication, replay or parsing is dropped and counted
// (MuxStats.RecvDropped, Drops.MuxRecvInvalid), never logged. The path
// allocates nothing. pion's own readers (Connection.readRTCP) stay: they
// serve connections not on the direct path and the compounds given to pion,
// so a track's RTCP may be handled by both goroutines at once, which
// downTrack.handleRTCP allows (the resend marks are under the fan-out's
// lock, the rest is atomic or locked).

import (
	"encoding/binary"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// replayWindow is the SRTP and SRTCP replay window of the remote context:
// pion's default for its sessions.
const replayWindow = 64

// addrPortConn is what recvConn needs of the mux socket: *net.UDPConn and
// *udpbatch.Conn have it.
type addrPortConn interface {
	net.PacketConn
	ReadFromAddrPort(b []byte) (int, netip.AddrPort, error)
	WriteToAddrPort(b []byte, addr netip.AddrPort) (int, error)
}

// recvConn is the mux socket as pion's UDP mux reads it: datagrams of
// connections on the direct path are taken on the way (take); the others
// are returned. Its ReadFromAddrPort is called by the mux's one reading
// goroutine only: the scratch space is that goroutine's.
type recvConn struct {
	addrPortConn

	regMu sync.Mutex // writers of reg
	reg   atomic.Pointer[map[netip.AddrPort]*recvState]

	// counters (MuxStats)
	rtcpTaken, rtpTaken, toPion, dropped atomic.Uint64

	// the reading goroutine's
	raw  []rtcp.RawPacket
	dsts []uint32
}

// newRecvConn wraps the mux socket, or returns nil when it cannot read
// with addresses that do not allocate.
func newRecvConn(c net.PacketConn) *recvConn {
	ac, ok := c.(addrPortConn)
	if !ok {
		return nil
	}
	r := &recvConn{addrPortConn: ac, raw: make([]rtcp.RawPacket, 0, 16), dsts: make([]uint32, 0, 32)}
	r.reg.Store(&map[netip.AddrPort]*recvState{})
	return r
}

// ReadFromAddrPort returns the next datagram that is pion's.
func (r *recvConn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	for {
		n, ap, err := r.addrPortConn.ReadFromAddrPort(b)
		if err != nil || !r.take(b[:n], ap) {
			return n, ap, err
		}
	}
}

// ReadFrom is ReadFromAddrPort with a net.Addr (which allocates); pion's
// mux uses ReadFromAddrPort.
func (r *recvConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, ap, err := r.ReadFromAddrPort(b)
	if err != nil {
		return n, nil, err
	}
	return n, net.UDPAddrFromAddrPort(ap), nil
}

// canonical is the registry's key of an address: IPv4 unmapped, as pion's
// mux keys them.
func canonical(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// set moves rs in the registry from the address old to new (either may be
// invalid: nothing to remove, nothing to add). An address is removed only
// if rs still has it.
func (r *recvConn) set(old, new netip.AddrPort, rs *recvState) {
	if r == nil {
		return
	}
	r.regMu.Lock()
	defer r.regMu.Unlock()
	cur := *r.reg.Load()
	old, new = canonical(old), canonical(new)
	if old == new && (!new.IsValid() || cur[new] == rs) {
		return
	}
	m := make(map[netip.AddrPort]*recvState, len(cur)+1)
	for k, v := range cur {
		if k == old && v == rs {
			continue
		}
		m[k] = v
	}
	if new.IsValid() {
		m[new] = rs
	}
	r.reg.Store(&m)
}

// lookup returns the receive state of the connection at ap, or nil.
func (r *recvConn) lookup(ap netip.AddrPort) *recvState {
	return (*r.reg.Load())[canonical(ap)]
}

// take handles b, a datagram from ap, when it is the direct path's, and
// reports whether it did (taken or dropped); false: it is pion's.
func (r *recvConn) take(b []byte, ap netip.AddrPort) bool {
	// RFC 7983: RTP and RTCP start with 128 to 191; a header is 8 bytes
	// at least.
	if len(b) < 8 || b[0] < 128 || b[0] > 191 {
		return false
	}
	rs := r.lookup(ap)
	if rs == nil {
		return false
	}
	if b[1] >= 192 && b[1] <= 223 { // RFC 5761: RTCP
		if b[1] == uint8(rtcp.TypeSenderReport) {
			// pion's receiver report interceptor reads the SRs.
			r.toPion.Add(1)
			return false
		}
		if rs.rtcp(r, b) {
			r.rtcpTaken.Add(1)
		} else {
			r.dropped.Add(1)
		}
		return true
	}
	h := rs.up.Load()
	if h == nil || len(b) < 12 || !(*h).takesSSRC(binary.BigEndian.Uint32(b[8:12])) {
		return false
	}
	if rs.rtp(*h, b) {
		r.rtpTaken.Add(1)
	} else {
		r.dropped.Add(1)
	}
	return true
}

// upstreamHook takes a publisher's SRTP off the direct receive path
// (directSend.setUpstreamHook). Its methods run on the mux's reading
// goroutine, which reads every connection's datagrams: they must not
// block, and should not allocate.
type upstreamHook interface {
	// takesSSRC reports whether the hook takes the RTP packets of ssrc;
	// if not, they go to pion. Asked for every SRTP datagram of the
	// connection, before it is decrypted.
	takesSSRC(ssrc uint32) bool
	// onRTP is given a packet of an SSRC it takes, authenticated and
	// decrypted: pkt is the whole packet (header and payload, plaintext),
	// h its parsed header. Both are valid only until it returns. (No
	// arrival time: pion's transport-cc feedback, fed by the pump's read,
	// stamps its own.)
	onRTP(h *rtp.Header, pkt []byte)
}

// recvState is a connection's direct receive path.
type recvState struct {
	c  *Connection // nil in unit tests
	tw *twccSender

	// mu serializes the use of the remote context: the reading goroutine
	// decrypts, setRemoteROC may come from another.
	mu   sync.Mutex
	ctx  *srtp.Context // the remote's; set before the state is registered
	rtcH rtcp.Header
	rtpH rtp.Header

	// downs are the connection's down tracks (a snapshot, replaced when
	// they change); up is the upstream hook, nil: SRTP goes to pion.
	downs atomic.Pointer[[]*downTrack]
	up    atomic.Pointer[upstreamHook]

	// REMB (Connection.noteREMB); nil in unit tests
	remb func([]byte)
}

// setDowns publishes the connection's down tracks m to the reading
// goroutine.
func (rs *recvState) setDowns(m map[*source]*downTrack) {
	s := make([]*downTrack, 0, len(m))
	for _, d := range m {
		s = append(s, d)
	}
	rs.downs.Store(&s)
}

// downsChangedLocked publishes c.downs to the direct receive path. Called
// with c.mu held, whenever c.downs changes.
func (c *Connection) downsChangedLocked() {
	if c.direct != nil {
		c.direct.rx.setDowns(c.downs)
	}
}

// rtcp decrypts an SRTCP datagram in place and handles its packets. It
// reports false when the datagram was dropped (authentication, replay,
// parse).
func (rs *recvState) rtcp(r *recvConn, b []byte) bool {
	rs.mu.Lock()
	plain, err := rs.ctx.DecryptRTCP(b[:0], b, &rs.rtcH)
	rs.mu.Unlock()
	if err != nil {
		return false
	}
	raw, err := rtcp.AppendRawPackets(r.raw[:0], plain)
	if err != nil {
		return false
	}
	r.raw = raw[:0]
	now := mono()
	var downs []*downTrack
	if p := rs.downs.Load(); p != nil {
		downs = *p
	}
	for _, p := range raw {
		pkt := []byte(p)
		switch {
		case pkt[1] == uint8(rtcp.TypeTransportSpecificFeedback) && pkt[0]&0x1f == rtcp.FormatTCC:
			if rs.tw != nil {
				rs.tw.onRTCP(pkt, now)
			}
			continue
		case pkt[1] == uint8(rtcp.TypePayloadSpecificFeedback) && pkt[0]&0x1f == rtcp.FormatREMB:
			if rs.remb != nil {
				rs.remb(pkt)
			}
			continue
		}
		dsts, err := p.ParseDestinationSSRC(r.dsts[:0])
		r.dsts = dsts[:0]
		if err != nil {
			continue // as pion: the rest of the compound is still read
		}
		for i, ssrc := range dsts {
			if slices.Contains(dsts[:i], ssrc) {
				continue
			}
			for _, d := range downs {
				if bd := d.binding.Load(); bd != nil && bd.ssrc == ssrc {
					d.handleRTCP(pkt)
				}
			}
		}
	}
	return true
}

// rtp decrypts an SRTP datagram in place and gives it to h; false: it was
// dropped.
func (rs *recvState) rtp(h upstreamHook, b []byte) bool {
	rs.mu.Lock()
	plain, err := rs.ctx.DecryptRTP(b[:0], b, &rs.rtpH)
	if err == nil {
		// Under mu: the header is the context's scratch.
		h.onRTP(&rs.rtpH, plain)
	}
	rs.mu.Unlock()
	return err == nil
}

// newRemoteContext returns the context that authenticates and decrypts
// what the remote sends, with pion's replay windows.
func newRemoteContext(cfg srtp.Config) (*srtp.Context, error) {
	// Cryptex (RFC 9335) enabled: what pion's session accepts once the
	// SDP negotiated it (a pion publisher does), with or without.
	return srtp.CreateContext(cfg.Keys.RemoteMasterKey, cfg.Keys.RemoteMasterSalt, cfg.Profile,
		srtp.SRTPReplayProtection(replayWindow), srtp.SRTCPReplayProtection(replayWindow),
		srtp.Cryptex(srtp.CryptexModeEnabled))
}

// setUpstreamHook has the direct receive path give h the SRTP of the SSRCs
// it takes (nil: every SRTP datagram goes to pion). It can be set at any
// time; the packets of an SSRC the hook did not take before went to pion,
// whose roll-over counter the remote context does not know: set it first
// (setRemoteROC).
func (ds *directSend) setUpstreamHook(h upstreamHook) {
	if h == nil {
		ds.rx.up.Store(nil)
		return
	}
	ds.rx.up.Store(&h)
}

// setRemoteROC sets the roll-over counter of ssrc in the remote context,
// before the direct path takes its first packet of ssrc. It reports false
// when the connection has no remote context (not on the direct path yet).
func (ds *directSend) setRemoteROC(ssrc, roc uint32) bool {
	ds.rx.mu.Lock()
	defer ds.rx.mu.Unlock()
	if ds.rx.ctx == nil {
		return false
	}
	ds.rx.ctx.SetROC(ssrc, roc)
	return true
}
