package faultpair

import "net/netip"

// Key is an unordered pair of addresses, the lesser first.
type Key [2]netip.Addr

// Of returns the key of the pair a, b: Of(a, b) == Of(b, a).
func Of(a, b netip.Addr) Key {
	a, b = a.Unmap(), b.Unmap()
	if b.Less(a) {
		a, b = b, a
	}
	return Key{a, b}
}
