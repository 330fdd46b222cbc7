package sfu

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/selfsign"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/shoal-sfu/shoal/internal/udpbatch"
)

// TestDirectKeysMatchPion runs real pion/dtls handshakes on loopback, the
// server seen through the key log writer and ServerHello hook as a
// connection's is, and checks that the SRTP keys derived from them are
// pion's: those of the server's own exporter (State.ExportKeyingMaterial)
// split by srtp.Config.ExtractSessionKeysFromDTLS, and those the client
// derives for what it receives. Every SRTP profile the SFU accepts, cipher
// suites of both PRF hashes, with and without the extended master secret.
func TestDirectKeysMatchPion(t *testing.T) {
	cert, err := selfsign.GenerateSelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	suites := []dtls.CipherSuiteID{
		dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		dtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		dtls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
	}
	for _, profile := range srtpProfiles {
		for _, suite := range suites {
			for _, ems := range []dtls.ExtendedMasterSecretType{dtls.RequireExtendedMasterSecret, dtls.DisableExtendedMasterSecret} {
				t.Run(fmt.Sprintf("%v/%v/ems=%d", srtp.ProtectionProfile(profile), dtls.CipherSuiteName(suite), ems), func(t *testing.T) {
					var k dtlsKeys
					common := []dtls.Option{dtls.WithCertificates(cert), dtls.WithCipherSuites(suite),
						dtls.WithSRTPProtectionProfiles(profile), dtls.WithExtendedMasterSecret(ems)}
					sopts := []dtls.ServerOption{dtls.WithKeyLogWriter(&k), dtls.WithServerHelloMessageHook(k.onServerHello)}
					copts := []dtls.ClientOption{dtls.WithInsecureSkipVerify(true)}
					for _, o := range common {
						sopts, copts = append(sopts, o), append(copts, o)
					}
					server, client := dtlsHandshake(t, sopts, copts)
					got, err := k.srtpConfig()
					if err != nil {
						t.Fatal(err)
					}
					if _, err := k.srtpConfig(); err != errDirectNoKeys || k.master != nil {
						t.Errorf("the master secret is kept after the keys were derived (again: %v)", err)
					}
					if got.Profile != srtp.ProtectionProfile(profile) {
						t.Errorf("profile %v, want %v", got.Profile, profile)
					}
					st, _ := server.ConnectionState()
					want := srtp.Config{Profile: srtp.ProtectionProfile(profile)}
					if err := want.ExtractSessionKeysFromDTLS(&st, false); err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got.Keys.LocalMasterKey, want.Keys.LocalMasterKey) || !bytes.Equal(got.Keys.LocalMasterSalt, want.Keys.LocalMasterSalt) ||
						!bytes.Equal(got.Keys.RemoteMasterKey, want.Keys.RemoteMasterKey) || !bytes.Equal(got.Keys.RemoteMasterSalt, want.Keys.RemoteMasterSalt) {
						t.Errorf("keys %+v, want pion's %+v", got.Keys, want.Keys)
					}
					cst, _ := client.ConnectionState()
					recv := srtp.Config{Profile: srtp.ProtectionProfile(profile)}
					if err := recv.ExtractSessionKeysFromDTLS(&cst, true); err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got.Keys.LocalMasterKey, recv.Keys.RemoteMasterKey) || !bytes.Equal(got.Keys.LocalMasterSalt, recv.Keys.RemoteMasterSalt) {
						t.Errorf("the client decrypts with %x/%x, the SFU would encrypt with %x/%x",
							recv.Keys.RemoteMasterKey, recv.Keys.RemoteMasterSalt, got.Keys.LocalMasterKey, got.Keys.LocalMasterSalt)
					}
				})
			}
		}
	}
}

// TestDirectKeysClientRole: as the DTLS client the SFU sees no ServerHello
// of its own; it must say so (the connection stays on pion's path) rather
// than derive keys from half the randoms.
func TestDirectKeysClientRole(t *testing.T) {
	cert, err := selfsign.GenerateSelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	var k dtlsKeys
	dtlsHandshake(t,
		[]dtls.ServerOption{dtls.WithCertificates(cert), dtls.WithSRTPProtectionProfiles(srtpProfiles...)},
		[]dtls.ClientOption{dtls.WithCertificates(cert), dtls.WithSRTPProtectionProfiles(srtpProfiles...), dtls.WithInsecureSkipVerify(true),
			dtls.WithKeyLogWriter(&k), dtls.WithClientHelloMessageHook(k.onClientHello)})
	if _, err := k.srtpConfig(); err != errDirectClientRole {
		t.Fatalf("keys as the DTLS client: err %v, want %v", err, errDirectClientRole)
	}
	var none dtlsKeys
	if _, err := none.srtpConfig(); err != errDirectNoKeys {
		t.Fatalf("keys of no handshake: err %v, want %v", err, errDirectNoKeys)
	}
}

// dtlsHandshake connects a pion/dtls server and client on loopback.
func dtlsHandshake(t *testing.T, sopts []dtls.ServerOption, copts []dtls.ClientOption) (server, client *dtls.Conn) {
	t.Helper()
	sc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	server, err = dtls.ServerWithOptions(sc, cc.LocalAddr(), sopts...)
	if err != nil {
		t.Fatal(err)
	}
	client, err = dtls.ClientWithOptions(cc, sc.LocalAddr(), copts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close(); _ = server.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- server.HandshakeContext(ctx) }()
	if err := client.HandshakeContext(ctx); err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	return server, client
}

// directPair is a direct path writing to a UDP socket on loopback, and a
// context that decrypts what it sends, with the keys of a profile.
func directPair(t *testing.T, profile srtp.ProtectionProfile, batched bool) (*directWriter, *net.UDPConn, *srtp.Context) {
	t.Helper()
	keyLen, _ := profile.KeyLen()
	saltLen, _ := profile.SaltLen()
	key, salt := bytes.Repeat([]byte{7}, keyLen), bytes.Repeat([]byte{9}, saltLen)
	enc, err := srtp.CreateContext(key, salt, profile)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := srtp.CreateContext(key, salt, profile)
	if err != nil {
		t.Fatal(err)
	}
	send, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	recv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	_ = recv.SetReadBuffer(4 << 20)
	t.Cleanup(func() { _ = send.Close(); _ = recv.Close() })
	ds := &directSend{tw: &twccSender{cc: true, bwe: newBWE(), ring: make([]twccSent, sentRingMin)}, ctx: enc, stats: &sendState{}}
	if batched {
		if ds.batch, err = udpbatch.NewConn(send); err != nil {
			t.Skip("no batched sends here:", err)
		}
	} else {
		ds.uc = send
	}
	ds.hdr.CSRC = make([]uint32, 0, 15)
	ds.hdr.Extensions = make([]rtp.Extension, 0, 16)
	ap := recv.LocalAddr().(*net.UDPAddr).AddrPort()
	ds.addr.Store(&ap)
	return &directWriter{ds: ds, ssrc: 1234, tcc: 6, ast: 4}, recv, dec
}

// TestDirectSendROC: across the wrap of the 16-bit sequence number the
// direct path's SRTP context counts the roll-over, so the receiver, whose
// context follows the same numbers, still authenticates and decrypts
// every packet (a wrong roll-over count fails SRTP authentication). Both
// profiles Chromium negotiates.
func TestDirectSendROC(t *testing.T) {
	for _, profile := range []srtp.ProtectionProfile{srtp.ProtectionProfileAeadAes128Gcm, srtp.ProtectionProfileAes128CmHmacSha1_80} {
		t.Run(profile.String(), func(t *testing.T) {
			w, recv, dec := directPair(t, profile, false)
			payload := bytes.Repeat([]byte{0xab}, 1000)
			const n = 40
			for i := range n {
				h := rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(65520 + i), Timestamp: uint32(i * 3000), SSRC: 1234}
				if _, err := w.WriteRTP(&h, payload); err != nil {
					t.Fatal(err)
				}
			}
			buf := make([]byte, 1500)
			_ = recv.SetReadDeadline(time.Now().Add(5 * time.Second))
			var h rtp.Header
			for i := range n {
				m, _, err := recv.ReadFromUDPAddrPort(buf)
				if err != nil {
					t.Fatalf("packet %d: %v", i, err)
				}
				out, err := dec.DecryptRTP(nil, buf[:m], &h)
				if err != nil {
					t.Fatalf("packet %d (sequence number %d): %v", i, uint16(65520+i), err)
				}
				if h.SequenceNumber != uint16(65520+i) || !bytes.Equal(out[len(out)-len(payload):], payload) {
					t.Fatalf("packet %d: sequence number %d, payload changed", i, h.SequenceNumber)
				}
				if len(h.GetExtension(6)) != 2 || len(h.GetExtension(4)) != 3 {
					t.Fatalf("packet %d: transport-wide sequence number or abs-send-time missing", i)
				}
			}
			if roc, ok := dec.ROC(1234); !ok || roc != 1 {
				t.Errorf("receiver's roll-over count %d (%v), want 1", roc, ok)
			}
			if got := w.ds.tw.next; got != n {
				t.Errorf("%d transport-wide sequence numbers taken, want %d", got, n)
			}
		})
	}
}

// TestDirectSendAllocatesNothing: a packet through the direct path, batched
// or not, allocates nothing, and the header comes back as it was.
func TestDirectSendAllocatesNothing(t *testing.T) {
	for _, batched := range []bool{false, true} {
		t.Run(fmt.Sprintf("batched=%v", batched), func(t *testing.T) {
			w, recv, _ := directPair(t, srtp.ProtectionProfileAeadAes128Gcm, batched)
			go func() { // drain
				buf := make([]byte, 1500)
				for {
					if _, _, err := recv.ReadFromUDPAddrPort(buf); err != nil {
						return
					}
				}
			}()
			payload := make([]byte, 1000)
			h := rtp.Header{Version: 2, PayloadType: 96, SSRC: 1234, Extensions: make([]rtp.Extension, 0, 4)}
			if _, err := w.WriteRTP(&h, payload); err != nil {
				t.Fatal(err)
			}
			allocs := testing.AllocsPerRun(500, func() {
				h.SequenceNumber++
				if _, err := w.WriteRTP(&h, payload); err != nil {
					t.Fatal(err)
				}
			})
			if allocs != 0 {
				t.Errorf("%.1f allocations a packet, want 0", allocs)
			}
			if h.Extension || len(h.Extensions) != 0 {
				t.Errorf("header changed: %+v", h)
			}
			if st := w.ds.stats.directPackets.Load(); st != 502 {
				t.Errorf("%d packets counted, want 502", st)
			}
		})
	}
}

// TestDirectSendFollowsPair: the path sends only to the remote candidate
// of a UDP pair whose local candidate is a host one (the mux's), goes
// back to pion's for another pair, and stops when the connection closes.
//
// The receive path's registry follows it: the connection is found under
// the remote address it sends to, and under no other.
func TestDirectSendFollowsPair(t *testing.T) {
	w, _, _ := directPair(t, srtp.ProtectionProfileAeadAes128Gcm, false)
	ds := w.ds
	ds.rc = &recvConn{}
	ds.rc.reg.Store(&map[netip.AddrPort]*recvState{})
	registered := func() string {
		m := *ds.rc.reg.Load()
		for ap, rs := range m {
			if rs != &ds.rx || len(m) != 1 {
				return "wrong registry"
			}
			return ap.String()
		}
		return ""
	}
	host := &webrtc.ICECandidate{Protocol: webrtc.ICEProtocolUDP, Typ: webrtc.ICECandidateTypeHost, Address: "127.0.0.1", Port: 50000}
	remote := &webrtc.ICECandidate{Protocol: webrtc.ICEProtocolUDP, Typ: webrtc.ICECandidateTypePrflx, Address: "192.0.2.7", Port: 4242}
	relay := &webrtc.ICECandidate{Protocol: webrtc.ICEProtocolUDP, Typ: webrtc.ICECandidateTypeRelay, Address: "127.0.0.1", Port: 3478}
	tcp := &webrtc.ICECandidate{Protocol: webrtc.ICEProtocolTCP, Typ: webrtc.ICECandidateTypeHost, Address: "192.0.2.7", Port: 9}
	for _, c := range []struct {
		pair *webrtc.ICECandidatePair
		want string
	}{
		{&webrtc.ICECandidatePair{Local: host, Remote: remote}, "192.0.2.7:4242"},
		{&webrtc.ICECandidatePair{Local: relay, Remote: remote}, ""},
		{&webrtc.ICECandidatePair{Local: host, Remote: tcp}, ""},
		{&webrtc.ICECandidatePair{Local: host, Remote: &webrtc.ICECandidate{Protocol: webrtc.ICEProtocolUDP, Address: "x.local", Port: 1}}, ""},
		{nil, ""},
		{&webrtc.ICECandidatePair{Local: host, Remote: remote}, "192.0.2.7:4242"},
	} {
		direct := ds.followLocked(c.pair)
		got := ""
		if ap := ds.addr.Load(); ap != nil {
			got = ap.String()
		}
		if got != c.want || direct != (c.want != "") {
			t.Errorf("pair %v: sends to %q (direct %v), want %q", c.pair, got, direct, c.want)
		}
		if r := registered(); r != c.want {
			t.Errorf("pair %v: receives from %q, want %q", c.pair, r, c.want)
		}
	}
	ds.stop()
	if ds.addr.Load() != nil || registered() != "" {
		t.Fatal("stopped, yet an address")
	}
	// A pair change reported after the close does not register it again.
	if ds.followLocked(&webrtc.ICECandidatePair{Local: host, Remote: remote}) || registered() != "" {
		t.Fatal("a pair followed after the connection stopped")
	}
}
