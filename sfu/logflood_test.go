package sfu_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"

	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/internal/testutil/pionapi"
	"github.com/shoal-sfu/shoal/sfu"
)

// countingHandler counts the records it is given at Info and above, by
// message (the first 40 bytes), and keeps nothing else.
type countingHandler struct {
	mu    sync.Mutex
	total int
	byMsg map[string]int
}

func (h *countingHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	m := r.Message
	if len(m) > 40 {
		m = m[:40]
	}
	h.mu.Lock()
	h.total++
	h.byMsg[m]++
	h.mu.Unlock()
	return nil
}
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }

func (h *countingHandler) count() (int, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var lines []string
	for m, n := range h.byMsg {
		lines = append(lines, fmt.Sprintf("%6d %s", n, m))
	}
	sort.Strings(lines)
	return h.total, strings.Join(lines, "\n")
}

// floodPackets returns n hostile datagrams of each kind a peer can send to
// an SFU's ICE port: random bytes, STUN binding requests with a wrong
// username, STUN success responses of unknown transactions, STUN garbage,
// RTP and RTCP with bad SRTP tags, and DTLS application-data records that
// do not decrypt.
func floodPackets(rng *rand.Rand, n int) [][]byte {
	random := func(l int) []byte {
		b := make([]byte, l)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	stunMsg := func(typ uint16, attrs []byte) []byte {
		b := make([]byte, 20, 20+len(attrs))
		binary.BigEndian.PutUint16(b[0:], typ)
		binary.BigEndian.PutUint16(b[2:], uint16(len(attrs)))
		binary.BigEndian.PutUint32(b[4:], 0x2112A442)
		copy(b[8:], random(12))
		return append(b, attrs...)
	}
	username := []byte{0x00, 0x06, 0x00, 0x08, 'b', 'a', 'd', ':', 'u', 's', 'e', 'r'}
	var out [][]byte
	for i := range n {
		rtpPkt := random(200)
		rtpPkt[0], rtpPkt[1] = 0x80, 96 // version 2, payload type 96
		rtcpPkt := random(60)
		rtcpPkt[0], rtcpPkt[1] = 0x81, 201 // receiver report
		binary.BigEndian.PutUint16(rtcpPkt[2:], 14)
		dtls := random(80)
		dtls[0], dtls[1], dtls[2] = 23, 0xfe, 0xfd // application data, DTLS 1.2
		binary.BigEndian.PutUint16(dtls[3:], 1)    // epoch 1
		binary.BigEndian.PutUint16(dtls[11:], 67)
		garbage := random(1 + i%300)
		garbage[0] = byte(rng.IntN(256))
		out = append(out,
			garbage,
			stunMsg(0x0001, username),
			stunMsg(0x0101, nil),
			append(stunMsg(0x0001, nil)[:20:20], random(17)...), // length says 0, 17 bytes follow
			rtpPkt, rtcpPkt, dtls,
		)
	}
	return out
}

// TestLogsBoundedUnderFlood: a connected client's SFU gets 7 kinds of
// hostile datagrams, 300 of each, from a stranger's socket and from the
// client's own address (its ICE socket, so they reach its connection's
// ICE, DTLS and SRTP), on one UDP mux port and on ephemeral ports. Pion
// logs some of them once per packet at Info and above; the node's log
// must stay within a bound far below the 4,200 packets. The client
// stays connected.
func TestLogsBoundedUnderFlood(t *testing.T) {
	testutil.CheckLeaks(t)
	for _, mux := range []bool{false, true} {
		t.Run(fmt.Sprintf("mux=%v", mux), func(t *testing.T) {
			h := &countingHandler{byMsg: map[string]int{}}
			logger := slog.New(h)
			set := func(c *sfu.Config) { c.Logger = logger }
			var s *sfu.SFU
			if mux {
				s = muxSFU(t, set)
			} else {
				s = newSFU(t, set)
			}
			// The client's ICE runs on a socket the test also writes to.
			conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			cmux := ice.NewUDPMuxDefault(ice.UDPMuxParams{UDPConn: conn})
			t.Cleanup(func() { _ = cmux.Close() })
			api := pionapi.Local(func(se *webrtc.SettingEngine) { se.SetICEUDPMux(cmux) })
			c := join(t, s, clientOpts{channel: "flood", id: "C", role: sfu.RoleSendrecv, video: true, api: api})
			var sfuAddr *net.UDPAddr
			for _, tr := range c.pc.GetTransceivers() {
				if snd := tr.Sender(); snd != nil && snd.Transport() != nil {
					if p, err := snd.Transport().ICETransport().GetSelectedCandidatePair(); err == nil && p != nil {
						sfuAddr = &net.UDPAddr{IP: net.ParseIP(p.Remote.Address), Port: int(p.Remote.Port)}
						break
					}
				}
			}
			if sfuAddr == nil {
				t.Fatal("no selected candidate pair")
			}
			stranger, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer stranger.Close()
			before, _ := h.count()

			pkts := floodPackets(rand.New(rand.NewPCG(1, 2)), 300)
			for i, p := range pkts {
				_, _ = stranger.WriteToUDP(p, sfuAddr)
				_, _ = conn.WriteToUDP(p, sfuAddr)
				if i%50 == 49 {
					time.Sleep(2 * time.Millisecond) // let the SFU read, not the kernel drop
				}
			}
			time.Sleep(500 * time.Millisecond)
			total, byMsg := h.count()
			lines := total - before
			t.Logf("%d log lines for %d hostile datagrams:\n%s", lines, 2*len(pkts), byMsg)
			// 5 lines per kind of line at once; a few kinds per scope.
			if lines > 60 {
				t.Errorf("%d log lines for %d hostile datagrams, want at most 60:\n%s", lines, 2*len(pkts), byMsg)
			}
			if st := c.pc.ConnectionState(); st != webrtc.PeerConnectionStateConnected {
				t.Errorf("client %s after the flood", st)
			}
			// On the mux the connection is on the direct receive path: the
			// forged RTCP from its address is dropped there, counted.
			if d := s.Drops().MuxRecvInvalid; mux && d < 200 {
				t.Errorf("%d datagrams counted invalid on the direct receive path, want most of the 300 forged RTCP", d)
			}
		})
	}
}
