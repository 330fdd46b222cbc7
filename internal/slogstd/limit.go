package slogstd

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Defaults of a Limiter.
const (
	// DefaultInterval is how often a Limiter reports what it suppressed.
	DefaultInterval = 10 * time.Second
	// DefaultMaxSources is how many sources a Limiter tracks one by one.
	DefaultMaxSources = 16
)

// OtherSources is the source named in the summary of lines from sources
// that found a Limiter's table full.
const OtherSources = "other sources"

// Limiter bounds the warnings and errors logged about one source, so that a
// sender of garbage packets cannot fill a disk with one line per packet.
//
// The first line from a source is logged. Further lines from it are
// counted instead, and every interval one summary line per source says how
// many were suppressed (with the last of them). A source that sent nothing
// for a whole interval is forgotten: its next line is logged again.
//
// The table holds at most maxSources sources; lines from further sources
// are counted under OtherSources until the table has room again, so that a
// sender spoofing many addresses grows neither memory nor output without
// bound. Per interval at most 2*maxSources+1 lines are logged.
//
// A source is the address after "from=" in a line (its IP, the port
// dropped), as memberlist writes it. Lines below Warn and lines naming no
// source are never limited. A Limiter is safe for concurrent use and may
// be shared by several loggers (New with WithLimiter).
type Limiter struct {
	interval   time.Duration
	maxSources int
	after      func(time.Duration, func()) // time.AfterFunc; a fake in tests

	mu      sync.Mutex
	sources map[string]*entry
	other   entry
	armed   bool // a flush is scheduled
}

// entry is what a Limiter knows of one source in the current interval.
type entry struct {
	suppressed int
	level      slog.Level   // the highest level suppressed
	last       string       // the last line suppressed
	l          *slog.Logger // the logger of that line
}

// NewLimiter returns a Limiter reporting every interval (DefaultInterval
// if not positive) and tracking at most maxSources sources one by one
// (DefaultMaxSources if not positive).
func NewLimiter(interval time.Duration, maxSources int) *Limiter {
	if interval <= 0 {
		interval = DefaultInterval
	}
	if maxSources <= 0 {
		maxSources = DefaultMaxSources
	}
	return &Limiter{
		interval:   interval,
		maxSources: maxSources,
		after:      func(d time.Duration, f func()) { time.AfterFunc(d, f) },
		sources:    map[string]*entry{},
	}
}

// admit reports whether a line from src at level should be logged now. If
// not, it counts the line, to be reported through l.
func (lim *Limiter) admit(src string, level slog.Level, line string, l *slog.Logger) bool {
	lim.mu.Lock()
	defer lim.mu.Unlock()
	e, ok := lim.sources[src]
	switch {
	case ok:
	case len(lim.sources) < lim.maxSources:
		lim.sources[src] = &entry{}
		lim.arm()
		return true
	default:
		e = &lim.other
		lim.arm()
	}
	if e.suppressed == 0 || level > e.level {
		e.level = level
	}
	e.suppressed++
	e.last, e.l = line, l
	return false
}

// arm schedules a flush one interval from now unless one is; lim.mu is held.
func (lim *Limiter) arm() {
	if !lim.armed {
		lim.armed = true
		lim.after(lim.interval, lim.flush)
	}
}

// summary is one line a flush logs.
type summary struct {
	src string
	e   entry
}

// flush logs one summary per source with suppressed lines, forgets the
// sources that sent nothing since the last flush, and schedules the next
// flush while any source is remembered.
func (lim *Limiter) flush() {
	lim.mu.Lock()
	var out []summary
	for src, e := range lim.sources {
		if e.suppressed == 0 {
			delete(lim.sources, src)
			continue
		}
		out = append(out, summary{src, *e})
		*e = entry{}
	}
	if lim.other.suppressed > 0 {
		out = append(out, summary{OtherSources, lim.other})
		lim.other = entry{}
	}
	lim.armed = false
	if len(lim.sources) > 0 {
		lim.arm()
	}
	lim.mu.Unlock()
	for _, s := range out {
		s.e.l.Log(context.Background(), s.e.level, "repeated lines from one source suppressed",
			"source", s.src, "suppressed", s.e.suppressed, "within", lim.interval, "last", s.e.last)
	}
}

var fromKey = []byte("from=")

// Source returns the source a line names: the address after "from=", its
// IP without the port when it has one. ok is false if the line names none.
func Source(line []byte) (src string, ok bool) {
	i := bytes.LastIndex(line, fromKey)
	if i < 0 {
		return "", false
	}
	v := line[i+len(fromKey):]
	if j := bytes.IndexAny(v, " \t\n"); j >= 0 {
		v = v[:j]
	}
	if len(v) == 0 {
		return "", false
	}
	s := string(v)
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().String(), true
	}
	if host, _, err := net.SplitHostPort(s); err == nil {
		return host, true
	}
	return s, true
}
