package shoal

import (
	"testing"

	"github.com/shoal-sfu/shoal/sfu"
)

// mediaTotals only grow: a connection that ends adds its last figures, a
// new one its own; a read of known connections allocates nothing.
func TestMediaTotals(t *testing.T) {
	var m mediaTotals
	conn := func(id string, in, out uint64) sfu.ConnectionStats {
		return sfu.ConnectionStats{ConnectionID: id, PacketsReceived: in, BytesReceived: 10 * in, PacketsSent: out, BytesSent: 10 * out,
			Outbound: []sfu.TrackStats{{NACKs: out / 10}}}
	}
	steps := []struct {
		conns   []sfu.ConnectionStats
		in, out uint64
	}{
		{[]sfu.ConnectionStats{conn("a", 5, 10), conn("b", 1, 2)}, 6, 12},
		{[]sfu.ConnectionStats{conn("a", 7, 20), conn("b", 3, 4)}, 10, 24},
		{[]sfu.ConnectionStats{conn("b", 4, 6)}, 11, 26},                   // a ended: its last figures stay
		{[]sfu.ConnectionStats{conn("b", 4, 6), conn("c", 2, 30)}, 13, 56}, // c is new
		{nil, 13, 56}, // all ended
		{[]sfu.ConnectionStats{conn("a", 1, 0)}, 14, 56}, // an id seen again counts anew
	}
	for i, s := range steps {
		got := m.observe(s.conns)
		if got.PacketsIn != s.in || got.PacketsOut != s.out || got.BytesIn != 10*s.in || got.BytesOut != 10*s.out {
			t.Fatalf("step %d: in %d/%d out %d/%d, want %d/%d, %d/%d", i, got.PacketsIn, got.BytesIn, got.PacketsOut, got.BytesOut,
				s.in, 10*s.in, s.out, 10*s.out)
		}
	}
	if got := m.observe(nil); got.NACKs != 2+0+3 {
		t.Errorf("NACKs %d, want the last figures of a, b and c: 5", got.NACKs)
	}
	if len(m.last) != 0 {
		t.Errorf("%d connections remembered after all ended", len(m.last))
	}

	conns := make([]sfu.ConnectionStats, 1000)
	for i := range conns {
		conns[i] = conn(string(rune('A'+i%26))+string(rune(i)), uint64(i), uint64(i))
	}
	m.observe(conns)
	if a := testing.AllocsPerRun(20, func() { m.observe(conns) }); a != 0 {
		t.Errorf("a read of 1,000 known connections allocates %v times, want 0", a)
	}
}
