package faultpair

import (
	"net/netip"
	"testing"
)

func TestOf(t *testing.T) {
	a := netip.MustParseAddr("127.0.0.2")
	b := netip.MustParseAddr("127.0.0.1")
	mapped := netip.MustParseAddr("::ffff:127.0.0.2")
	if Of(a, b) != Of(b, a) {
		t.Fatalf("Of(a, b) = %v, Of(b, a) = %v; want equal", Of(a, b), Of(b, a))
	}
	if want := (Key{b, a}); Of(a, b) != want {
		t.Fatalf("Of(a, b) = %v, want %v", Of(a, b), want)
	}
	if Of(mapped, b) != Of(a, b) {
		t.Fatalf("Of(mapped, b) = %v, want %v", Of(mapped, b), Of(a, b))
	}
}
