package sfu

// The direct send path. pion writes each packet a subscriber is sent
// through a chain per sender: its interceptors, the SRTP session (a lock,
// a marshal, an allocation, the encryption), the ICE connection and the
// UDP mux's lookup of the remote address. With the UDP mux
// (Network.UDPPort) and congestion control on, and unless
// Config.DisableDirectSend, a connection sends its media itself once its
// DTLS handshake is done: the header rewritten by the fan-out, the
// transport-wide sequence number and abs-send-time stamped (twcc.go), the
// packet encrypted with an SRTP context of the connection's own into a
// buffer reused for every packet, and written to the mux socket (batched
// by a fan-out, mux.go) addressed to the remote candidate of the
// connection's selected ICE pair.
//
// The SRTP keys: pion does not expose its SRTP context, so each
// connection has an API of its own (NewAPI copies nothing heavy; the
// MediaEngine is copied per peer connection anyway) whose SettingEngine
// writes the DTLS key log (the client random and the master secret) to
// the connection and shows it the ServerHello the SFU sends (the server
// random, the cipher suite, the SRTP profile chosen). From them the keys
// are derived as pion does: the RFC 5705 exporter of pion/dtls (label
// EXTRACTOR-dtls_srtp, seed the client random then the server random, the
// suite's PRF hash; the extended master secret changes the master secret,
// not the exporter) and pion/srtp's own split of the keying material
// (srtp.Config.ExtractSessionKeysFromDTLS). The SFU is the offerer
// (actpass), so the client normally takes the DTLS client role; a
// connection where the SFU is the DTLS client sees no ServerHello of its
// own and stays on pion's path, as does one whose selected pair is not a
// UDP host candidate of the mux (a relay candidate), or whose key log
// never came. MuxStats counts both kinds.
//
// What pion's chain did and the direct path must still do: the
// transport-wide sequence numbers and the ring of what was sent (under the
// same lock as pion's path, so the numbers stay in order), the sender
// reports (sr.go: pion's report interceptor is replaced by one that
// counts what both paths send), RTX (the resends and the probes' padding
// come with their RTX SSRC already set, rtx.go and probe.go), the audio
// level extension (set by the fan-out). The RTCP the SFU sends still goes
// through pion; what it receives from a subscriber is read directly
// (directrecv.go).

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/prf"
	"github.com/pion/dtls/v3/pkg/protocol/extension"
	"github.com/pion/dtls/v3/pkg/protocol/handshake"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/shoal-sfu/shoal/internal/udpbatch"
)

// Why a connection stays on pion's path.
var (
	errDirectClientRole = errors.New("sfu: direct send: the SFU is the DTLS client")
	errDirectNoKeys     = errors.New("sfu: direct send: no DTLS key log or ServerHello seen")
	errDirectProfile    = errors.New("sfu: direct send: no SRTP profile negotiated")
)

// directMax is the largest packet the direct path sends (an SRTP packet
// of the mux's batch slot); a larger one takes pion's path.
const directMax = udpbatch.SlotSize

// srtpOverhead is room for the authentication tag (16 for AES-GCM, 10 for
// AES-CM with HMAC-SHA1-80).
const srtpOverhead = 32

// dtlsKeys collects, for one peer connection, what its DTLS handshake
// shows through the SettingEngine's key log writer and hello hooks.
type dtlsKeys struct {
	mu           sync.Mutex
	clientRandom [handshake.RandomLength]byte
	serverRandom [handshake.RandomLength]byte
	master       []byte // from the key log line; dropped once the keys are derived
	serverHello  bool   // the SFU sent a ServerHello
	client       bool   // the SFU sent a ClientHello: it is the DTLS client
	suite        uint16
	profile      srtp.ProtectionProfile
}

// Write takes the key log line pion/dtls writes once the master secret is
// known: "CLIENT_RANDOM <client random> <master secret>", in hex.
func (k *dtlsKeys) Write(p []byte) (int, error) {
	f := bytes.Fields(p)
	if len(f) != 3 || string(f[0]) != "CLIENT_RANDOM" {
		return len(p), nil
	}
	cr, err1 := hex.DecodeString(string(f[1]))
	ms, err2 := hex.DecodeString(string(f[2]))
	if err1 != nil || err2 != nil || len(cr) != handshake.RandomLength || len(ms) == 0 {
		return len(p), nil
	}
	k.mu.Lock()
	copy(k.clientRandom[:], cr)
	k.master = ms
	k.mu.Unlock()
	return len(p), nil
}

// onServerHello notes the server random, cipher suite and SRTP profile of
// the ServerHello the SFU sends, and sends it unchanged.
func (k *dtlsKeys) onServerHello(m handshake.MessageServerHello) handshake.Message {
	k.mu.Lock()
	k.serverHello = true
	k.serverRandom = m.Random.MarshalFixed()
	if m.CipherSuiteID != nil {
		k.suite = *m.CipherSuiteID
	}
	k.profile = 0
	for _, e := range m.Extensions {
		if u, ok := e.(*extension.UseSRTP); ok && len(u.ProtectionProfiles) > 0 {
			k.profile = srtp.ProtectionProfile(u.ProtectionProfiles[0])
		}
	}
	k.mu.Unlock()
	return &m
}

// onClientHello notes that the SFU is the DTLS client, and sends the
// ClientHello unchanged.
func (k *dtlsKeys) onClientHello(m handshake.MessageClientHello) handshake.Message {
	k.mu.Lock()
	k.client = true
	k.mu.Unlock()
	return &m
}

// ExportKeyingMaterial is pion/dtls's (State.ExportKeyingMaterial) for
// the SFU as the DTLS server: seed = label, client random, server random.
// Called with mu held (context).
func (k *dtlsKeys) ExportKeyingMaterial(label string, context []byte, length int) ([]byte, error) {
	if len(context) != 0 {
		return nil, errors.New("sfu: direct send: exporter context not supported")
	}
	seed := make([]byte, 0, len(label)+2*handshake.RandomLength)
	seed = append(append(append(seed, label...), k.clientRandom[:]...), k.serverRandom[:]...)
	return prf.PHash(k.master, seed, length, suiteHash(k.suite))
}

// suiteHash is the PRF hash of a DTLS 1.2 cipher suite: SHA-384 for the
// two AES-256-GCM suites, SHA-256 for every other pion/dtls implements.
func suiteHash(id uint16) prf.HashFunc {
	switch dtls.CipherSuiteID(id) {
	case dtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, dtls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384:
		return sha512.New384
	}
	return sha256.New
}

// srtpConfig returns the SRTP profile and keys of the connection, the SFU
// being the DTLS server. It can be called once: it drops the master secret.
func (k *dtlsKeys) srtpConfig() (srtp.Config, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	switch {
	case k.client:
		return srtp.Config{}, errDirectClientRole
	case k.master == nil || !k.serverHello:
		return srtp.Config{}, errDirectNoKeys
	case k.profile == 0:
		return srtp.Config{}, errDirectProfile
	}
	cfg := srtp.Config{Profile: k.profile}
	err := cfg.ExtractSessionKeysFromDTLS(k, false)
	// The master secret is not needed again: a connection derives its keys
	// once, so it does not keep the secret for as long as it lives.
	clear(k.master)
	k.master = nil
	if err != nil {
		return srtp.Config{}, fmt.Errorf("sfu: direct send: %w", err)
	}
	return cfg, nil
}

// contexts returns the SRTP contexts of the connection from one
// derivation: local encrypts what the SFU sends, remote authenticates and
// decrypts what it receives (directrecv.go); and the profile.
func (k *dtlsKeys) contexts() (local, remote *srtp.Context, _ srtp.ProtectionProfile, _ error) {
	cfg, err := k.srtpConfig()
	if err != nil {
		return nil, nil, 0, err
	}
	local, err = srtp.CreateContext(cfg.Keys.LocalMasterKey, cfg.Keys.LocalMasterSalt, cfg.Profile)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("sfu: direct send: %w", err)
	}
	remote, err = newRemoteContext(cfg)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("sfu: direct receive: %w", err)
	}
	return local, remote, cfg.Profile, nil
}

// directSend is a connection's direct path. Its buffers and SRTP context
// are used under the connection's twccSender.mu, which orders the
// transport-wide sequence numbers with the sends.
type directSend struct {
	keys  dtlsKeys
	tw    *twccSender
	batch *udpbatch.Conn // the mux socket, batching; or
	uc    *net.UDPConn   // the mux socket, not batching
	stats *sendState

	setup   sync.Mutex // enable, follow and stop
	ctx     *srtp.Context
	stopped bool // under setup: the connection closed
	// addr is the remote address of the selected pair; nil: pion's path.
	addr atomic.Pointer[netip.AddrPort]

	// the direct receive path (directrecv.go): registered in rc under
	// addr while the connection sends directly; rc nil: none.
	rc *recvConn
	rx recvState

	// under tw.mu
	hdr    rtp.Header
	tccBuf [2]byte
	astBuf [3]byte
	plain  [directMax]byte
	cipher [directMax + srtpOverhead]byte
}

// newDirectSend returns the direct path of a new connection, or nil when
// the SFU cannot send directly (no mux socket of the host's network).
func (s *SFU) newDirectSend() *directSend {
	if s.cfg.DisableDirectSend || s.cc == nil {
		return nil
	}
	ds := &directSend{batch: s.send.batch.Load(), stats: &s.send, rc: s.muxRecv}
	if ds.batch == nil {
		uc, ok := s.mux.(*net.UDPConn)
		if !ok {
			return nil
		}
		ds.uc = uc
	}
	ds.hdr.CSRC = make([]uint32, 0, 15)
	ds.hdr.Extensions = make([]rtp.Extension, 0, 16)
	return ds
}

// settingEngine returns se set to show ds the connection's DTLS keys.
func (ds *directSend) settingEngine(se webrtc.SettingEngine) webrtc.SettingEngine {
	se.SetDTLSKeyLogWriter(&ds.keys)
	se.SetDTLSServerHelloMessageHook(ds.keys.onServerHello)
	se.SetDTLSClientHelloMessageHook(ds.keys.onClientHello)
	return se
}

// enable switches the connection to the direct path once its DTLS is
// connected, and follows its selected ICE pair. What cannot be switched
// stays on pion's path, counted.
func (c *Connection) enableDirect() {
	ds := c.direct
	if ds == nil {
		return
	}
	ds.setup.Lock()
	defer ds.setup.Unlock()
	if ds.ctx != nil || ds.tw == nil || ds.stopped {
		return
	}
	ctx, remote, profile, err := ds.keys.contexts()
	if err != nil {
		ds.stats.directFallback.Add(1)
		c.logger.Debug("media sent through pion", "err", err)
		return
	}
	sctp := c.pc.SCTP()
	if sctp == nil {
		ds.stats.directFallback.Add(1)
		return
	}
	ice := sctp.Transport().ICETransport()
	ds.ctx = ctx
	ds.rx.mu.Lock()
	ds.rx.c, ds.rx.tw, ds.rx.ctx, ds.rx.remb = c, ds.tw, remote, c.noteREMB
	ds.rx.mu.Unlock()
	ice.OnSelectedCandidatePairChange(func(p *webrtc.ICECandidatePair) {
		ds.setup.Lock()
		defer ds.setup.Unlock()
		ds.followLocked(p)
	})
	pair, _ := ice.GetSelectedCandidatePair()
	if ds.followLocked(pair) {
		ds.stats.directConns.Add(1)
		c.logger.Debug("media sent directly", "profile", profile.String())
	} else {
		ds.stats.directFallback.Add(1)
	}
}

// followLocked sends to the remote candidate of pair, when it is a UDP
// pair of the mux; else through pion. It reports whether it sends
// directly.
// The direct receive path follows it: the connection is registered under
// the remote address as long as it sends directly.
func (ds *directSend) followLocked(p *webrtc.ICECandidatePair) bool {
	if ds.ctx == nil || ds.stopped || p == nil || p.Local == nil || p.Remote == nil ||
		p.Local.Protocol != webrtc.ICEProtocolUDP || p.Local.Typ != webrtc.ICECandidateTypeHost ||
		p.Remote.Protocol != webrtc.ICEProtocolUDP {
		ds.unfollowLocked()
		return false
	}
	ip, err := netip.ParseAddr(p.Remote.Address)
	if err != nil {
		ds.unfollowLocked()
		return false
	}
	ap := netip.AddrPortFrom(ip, p.Remote.Port)
	var old netip.AddrPort
	if o := ds.addr.Load(); o != nil {
		old = *o
	}
	ds.addr.Store(&ap)
	ds.rc.set(old, ap, &ds.rx)
	ds.followRecv(true) // recvswitch.go
	return true
}

// unfollowLocked sends and receives nothing more directly.
func (ds *directSend) unfollowLocked() {
	if o := ds.addr.Swap(nil); o != nil {
		ds.rc.set(*o, netip.AddrPort{}, &ds.rx)
		ds.followRecv(false) // recvswitch.go
	}
}

// stop sends and receives nothing more directly: the connection closed.
func (ds *directSend) stop() {
	if ds != nil {
		ds.setup.Lock()
		ds.stopped = true
		ds.unfollowLocked()
		ds.rx.downs.Store(nil)
		ds.setup.Unlock()
	}
}

// write stamps, encrypts and sends a packet to addr. h is given back as
// it came (the fan-out hands one header to every subscriber).
func (ds *directSend) write(w *directWriter, addr netip.AddrPort, h *rtp.Header, payload []byte) (int, error) {
	t := ds.tw
	ext, prof, n0 := h.Extension, h.ExtensionProfile, len(h.Extensions)
	t.mu.Lock()
	t.stampLocked(h, w.tcc, w.ast, len(payload), &ds.tccBuf, &ds.astBuf)
	n, err := h.MarshalTo(ds.plain[:])
	if err == nil && n+len(payload) <= len(ds.plain) {
		n += copy(ds.plain[n:], payload)
		var out []byte
		if out, err = ds.ctx.EncryptRTP(ds.cipher[:0], ds.plain[:n], &ds.hdr); err == nil {
			if ds.batch != nil {
				_, err = ds.batch.WriteToAddrPort(out, addr)
			} else {
				_, err = ds.uc.WriteToUDPAddrPort(out, addr)
			}
		}
	} else if err == nil {
		err = errDirectTooLarge
	}
	t.mu.Unlock()
	h.Extension, h.ExtensionProfile, h.Extensions = ext, prof, h.Extensions[:n0]
	if err != nil {
		return 0, err
	}
	ds.stats.directPackets.Add(1)
	return n, nil
}

var errDirectTooLarge = errors.New("sfu: direct send: packet larger than a datagram")

// directWriter is a down track's writer: the direct path when its
// connection has switched to it, else pion's (next). Pacer, RTX and
// probes write through it unchanged.
type directWriter struct {
	ds       *directSend
	next     webrtc.TrackLocalWriter
	ssrc     uint32 // the main stream's, counted in the sender reports
	tcc, ast uint8  // the subscriber's extension ids; 0: not negotiated
	srs      *srRegistry
	sr       atomic.Pointer[srStream]
}

var _ webrtc.TrackLocalWriter = (*directWriter)(nil)

// WriteRTP sends a packet.
func (w *directWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	ap := w.ds.addr.Load()
	if ap == nil || h.MarshalSize()+len(payload)+srtpOverhead > directMax {
		return w.next.WriteRTP(h, payload)
	}
	if h.SSRC == w.ssrc {
		if st := w.stream(); st != nil {
			st.note(h, len(payload), mono())
		}
	}
	return w.ds.write(w, *ap, h, payload)
}

// Write sends a marshalled packet through pion.
func (w *directWriter) Write(b []byte) (int, error) { return w.next.Write(b) }

// stream is the sender report state of the main stream, bound by pion
// after the track (sr.go).
func (w *directWriter) stream() *srStream {
	if st := w.sr.Load(); st != nil {
		return st
	}
	st := w.srs.lookup(w.ssrc)
	if st != nil {
		w.sr.Store(st)
	}
	return st
}
