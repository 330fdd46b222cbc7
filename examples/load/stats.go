package main

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// rxTrack counts what one subscriber receives of one track: packets, and
// the highest extended sequence number (loss is the gap between the two).
type rxTrack struct {
	count  atomic.Uint64
	maxExt atomic.Int64
	first  int64 // extended sequence number of the first packet
	// Owned by the reader goroutine.
	started bool
	cycles  int64
	last    uint16
}

// add counts a packet with sequence number seq. Reader goroutine only.
func (t *rxTrack) add(seq uint16) {
	if !t.started {
		t.started, t.last, t.first = true, seq, int64(seq)
		t.maxExt.Store(int64(seq))
		t.count.Add(1)
		return
	}
	diff := int16(seq - t.last)
	if diff > 0 {
		if seq < t.last {
			t.cycles += 1 << 16
		}
		t.last = seq
		t.maxExt.Store(t.cycles + int64(seq))
	}
	t.count.Add(1)
}

// point is a track's counters at one instant.
type point struct{ count, maxExt, first int64 }

func (t *rxTrack) point() point {
	c := int64(t.count.Load())
	if c == 0 {
		return point{}
	}
	return point{c, t.maxExt.Load(), t.first}
}

// rxSet holds every subscriber's tracks.
type rxSet struct {
	mu     sync.Mutex
	tracks []*rxTrack
}

func (s *rxSet) add(t *rxTrack) {
	s.mu.Lock()
	s.tracks = append(s.tracks, t)
	s.mu.Unlock()
}

// snapshot returns the counters of every track, in the order added.
func (s *rxSet) snapshot() []point {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := make([]point, len(s.tracks))
	for i, t := range s.tracks {
		ps[i] = t.point()
	}
	return ps
}

// delta returns the packets received and expected between two snapshots.
// A track absent from or silent in a counts from its first packet.
func delta(a, b []point) (received, expected int64) {
	for i, p := range b {
		if p.count == 0 {
			continue
		}
		var q point
		if i < len(a) {
			q = a[i]
		}
		received += p.count - q.count
		if q.count == 0 {
			expected += p.maxExt - p.first + 1
			continue
		}
		expected += p.maxExt - q.maxExt
	}
	return received, expected
}

// percentile returns the p-th percentile (0..100) of ds, nearest rank.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p/100*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// procCPU returns the user and system CPU time a process has used, from
// /proc/PID/stat (fields 14 and 15).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // the command name may hold spaces
	if i < 0 {
		return 0, errors.New("unexpected /proc stat format")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, errors.New("unexpected /proc stat format")
	}
	// f[0] is field 3 (state): utime is field 14, stime 15.
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc stat times: %w", err)
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// loadAvg returns the first field of /proc/loadavg, or "?".
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
