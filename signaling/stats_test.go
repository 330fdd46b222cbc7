package signaling

import (
	"fmt"
	"testing"
	"time"

	"github.com/shoal-sfu/shoal/signaling/wire"
)

// serverWithSessions returns a server holding n served sessions (made up:
// no socket), in 20 channels, the roles in turn, plus one not served.
func serverWithSessions(tb testing.TB, n int) *Server {
	ts := newTestServer(tb, Config{})
	s := ts.Server
	roles := []wire.Role{wire.RoleSendrecv, wire.RoleRecvonly, wire.RoleSendonly}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range n {
		ch := fmt.Sprintf("room-%d", i%20)
		se := &session{served: true, infoV: ConnectionInfo{ChannelID: ch, ConnectionID: fmt.Sprintf("C%025d", i),
			Role: roles[i%3], NodeName: "a@10.0.0.1", CreatedTime: time.Now()}}
		s.sessions[se] = struct{}{}
		s.perChannel[ch]++
	}
	s.sessions[&session{infoV: ConnectionInfo{ChannelID: "gone", Role: wire.RoleSendrecv}}] = struct{}{}
	return s
}

// ConnectionCounts agrees with AllConnections and allocates nothing.
func TestConnectionCounts(t *testing.T) {
	s := serverWithSessions(t, 1000)
	want := ConnectionCounts{}
	channels := map[string]bool{}
	for _, c := range s.AllConnections() {
		switch c.Role {
		case wire.RoleSendrecv:
			want.Sendrecv++
		case wire.RoleSendonly:
			want.Sendonly++
		case wire.RoleRecvonly:
			want.Recvonly++
		}
		channels[c.ChannelID] = true
	}
	want.Channels = len(channels)
	if got := s.ConnectionCounts(); got != want || got.Sendrecv+got.Sendonly+got.Recvonly != 1000 {
		t.Fatalf("ConnectionCounts %+v, want %+v (1,000 in all)", got, want)
	}
	if a := testing.AllocsPerRun(20, func() { s.ConnectionCounts() }); a != 0 {
		t.Errorf("ConnectionCounts allocates %v times, want 0", a)
	}
	s.mu.Lock()
	s.sessions = map[*session]struct{}{} // New's Close must not wait for made-up sessions
	s.mu.Unlock()
}

// BenchmarkConnectionCounts1000 is what a metrics scrape asks signaling
// for, with 1,000 connections: the counts, against the copies
// (AllConnections, which a scrape used before).
func BenchmarkConnectionCounts1000(b *testing.B) {
	s := serverWithSessions(b, 1000)
	b.Cleanup(func() {
		s.mu.Lock()
		s.sessions = map[*session]struct{}{}
		s.mu.Unlock()
	})
	b.Run("counts", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			s.ConnectionCounts()
		}
	})
	b.Run("all", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			s.AllConnections()
		}
	})
}
