package affinity

import (
	"fmt"
	"testing"
)

// FuzzParseMode: mode names come from the HTTP API. Whatever the input,
// ParseMode either fails or returns a mode whose String is the input.
//
// Run: go test -run '^$' -fuzz FuzzParseMode -fuzztime 30s ./affinity/
func FuzzParseMode(f *testing.F) {
	for _, s := range []string{"normal", "block_new_session", "block_new_connection", "", "Normal", "block_new_session\x00", "Mode(3)"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMode(s)
		if err != nil {
			return
		}
		if m.String() != s || m > ModeBlockNewConnection {
			t.Fatalf("ParseMode(%q) = %v", s, m)
		}
	})
}

// byteSource reads small numbers from fuzz input, then zeros.
type byteSource struct {
	b []byte
}

func (s *byteSource) next(n int) int {
	if len(s.b) == 0 {
		return 0
	}
	x := int(s.b[0])
	s.b = s.b[1:]
	return x % n
}

// viewFromBytes builds a valid view and a request from arbitrary bytes, so
// that the fuzzer explores views the seeded generator may not reach.
func viewFromBytes(data []byte) (*View, Request) {
	s := &byteSource{b: data}
	flags := s.next(256)
	v := &View{
		Settings: Settings{Cluster: flags&1 == 0, Relay: flags&2 != 0, DefaultAffinity: flags&4 != 0,
			AffinityThreshold: s.next(8) - 1},
		InMajority: flags&8 == 0,
		Sessions:   map[string]Session{},
	}
	n := 1 + s.next(8)
	for i := range n {
		name := fmt.Sprintf("n%d", i)
		f := s.next(256)
		capa := s.next(12)
		v.Nodes = append(v.Nodes, Node{Name: name, Temporary: f&1 != 0, Connected: f&2 == 0,
			Mode: Mode(f >> 2 % 3), Capacity: capa, Connections: s.next(capa + 4),
			SignalingURL: "wss://" + name, APIURL: "https://" + name})
	}
	for ch := range 3 {
		k := s.next(4)
		if !v.Settings.Relay {
			k = min(k, 1)
		}
		var os []Owner
		used := 0
		for range k {
			node := s.next(n)
			if used&(1<<node) != 0 {
				continue
			}
			used |= 1 << node
			os = append(os, Owner{Node: node, Connections: s.next(8)})
		}
		if os != nil {
			v.Sessions[fmt.Sprintf("c%d", ch)] = Session{Owners: os}
		}
	}
	r := Request{ChannelID: fmt.Sprintf("c%d", s.next(4)), Contacted: fmt.Sprintf("n%d", s.next(n+1)),
		Affinity: Affinity(s.next(3)), Redirected: s.next(2) == 1}
	return v, r
}

// FuzzPlace checks the same properties as TestPlaceProperties on views the
// fuzzer builds.
//
// Run: go test -run '^$' -fuzz FuzzPlace -fuzztime 60s ./affinity/
func FuzzPlace(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0x06, 0x06, 0x03, 0x00, 0x0a, 0x05, 0x00, 0x0a, 0x01, 0x00, 0x0a, 0x09, 0x01, 0x02, 0x03, 0x00, 0x00, 0x01, 0x00})
	f.Add([]byte{0x02, 0x03, 0x02, 0x00, 0x0a, 0x0a, 0x02, 0x0a, 0x01, 0x00, 0x0a, 0x03, 0x01, 0x00, 0x09, 0x01, 0x00, 0x00, 0x01})
	f.Add([]byte{0x0e, 0x02, 0x04, 0x04, 0x0a, 0x02, 0x08, 0x0a, 0x0b, 0x00, 0x05, 0x01, 0x01, 0x05, 0x02, 0x03, 0x03, 0x00, 0x01, 0x02})
	f.Fuzz(func(t *testing.T, data []byte) {
		v, r := viewFromBytes(data)
		if err := v.Validate(); err != nil {
			t.Fatalf("viewFromBytes built an invalid view: %v", err)
		}
		d := Place(v, r)
		if err := checkProperties(v, r, d); err != nil {
			t.Fatalf("%v\nrequest %+v\ndecision %+v\nview %+v", err, r, d, *v)
		}
	})
}
