package sfu

import (
	"testing"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
)

// TestStampAllocatesNothing: the transport-wide sequence number and
// abs-send-time go into the header without an allocation, the header
// comes back as it was, and the ring notes the packet.
func TestStampAllocatesNothing(t *testing.T) {
	tw := &twccSender{cc: true, bwe: newBWE()}
	var n, ast int
	var seq [2]byte
	next := interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, _ interceptor.Attributes) (int, error) {
		n, ast = len(h.Extensions), len(h.GetExtension(4))
		copy(seq[:], h.GetExtension(6))
		return len(payload), nil
	})
	w := tw.BindLocalStream(&interceptor.StreamInfo{RTPHeaderExtensions: []interceptor.RTPHeaderExtension{
		{URI: sdp.TransportCCURI, ID: 6}, {URI: sdp.ABSSendTimeURI, ID: 4}, {URI: sdp.AudioLevelURI, ID: 5},
	}}, next)
	h := &rtp.Header{Version: 2, SSRC: 1, Extensions: make([]rtp.Extension, 0, 4)}
	payload := make([]byte, 1000)
	if _, err := w.Write(h, payload, nil); err != nil {
		t.Fatal(err)
	}
	if n != 2 || ast != 3 || seq != [2]byte{0, 0} {
		t.Fatalf("%d extensions, abs-send-time %d bytes, sequence number % x", n, ast, seq)
	}
	if h.Extension || len(h.Extensions) != 0 {
		t.Fatalf("header not given back: %+v", h)
	}
	if s := tw.ring[0]; s.seq != 0 || s.size != uint16(12+4+4+4+1000) {
		t.Fatalf("ring slot %+v", s)
	}
	if a := testing.AllocsPerRun(200, func() { _, _ = w.Write(h, payload, nil) }); a != 0 {
		t.Fatalf("stamping allocates %v", a)
	}
	if seq != [2]byte{0, 201} { // AllocsPerRun runs it once more
		t.Fatalf("sequence number % x after 202 packets", seq)
	}
}

// TestTWCCRegistryForgets: a peer connection's sender leaves the registry
// when the connection takes it, or when the peer connection closes first.
func TestTWCCRegistryForgets(t *testing.T) {
	reg := &ccRegistry{}
	f := &twccFactory{reg: reg}
	i, _ := f.NewInterceptor("a")
	if reg.take("a") != i {
		t.Fatal("sender not registered")
	}
	i, _ = f.NewInterceptor("b")
	_ = i.Close()
	if reg.take("b") != nil {
		t.Fatal("a closed peer connection's sender is still registered")
	}
}
