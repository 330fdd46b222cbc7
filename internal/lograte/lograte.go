package lograte

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Defaults: 5 lines of a kind at once, then one every 10 seconds.
const (
	DefaultBurst    = 5
	DefaultInterval = 10 * time.Second
	// MaxKinds bounds the kinds one Limiter tracks; lines of any further
	// kind share one kind, so a peer cannot grow the map.
	MaxKinds = 1024
)

// SuppressedKey is the attribute that says how many lines of the same
// kind were left out since the previous one shown.
const SuppressedKey = "suppressed"

// Limiter rate-limits log lines per kind. Each kind has a bucket of Burst
// tokens, refilled at one per Interval; a line takes one token or is
// suppressed (counted). The zero value is not usable; use New.
type Limiter struct {
	burst    int
	interval time.Duration
	now      func() time.Time

	mu    sync.Mutex
	kinds map[uint64]*kind
}

type kind struct {
	tokens     int
	refilled   time.Time // when tokens were last counted up
	suppressed int
}

// New returns a limiter letting burst lines of a kind through at once, then
// one per interval. burst < 1 means 1; interval <= 0 means DefaultInterval.
func New(burst int, interval time.Duration) *Limiter {
	if burst < 1 {
		burst = 1
	}
	if interval <= 0 {
		interval = DefaultInterval
	}
	return &Limiter{burst: burst, interval: interval, now: time.Now, kinds: map[uint64]*kind{}}
}

// SetClock replaces the clock the limiter reads (time.Now), for tests.
// Call it before the limiter is used.
func (l *Limiter) SetClock(now func() time.Time) { l.now = now }

// overflowKind is where lines go once MaxKinds kinds are tracked.
const overflowKind = 0

// Allow says whether a line of kind key may be written now and, if so,
// how many lines of that kind were suppressed since the previous one
// allowed (which the line should show).
func (l *Limiter) Allow(key uint64) (ok bool, suppressed int) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	k := l.kinds[key]
	if k == nil {
		if len(l.kinds) >= MaxKinds-1 { // one left for the overflow kind
			key = overflowKind
			k = l.kinds[key]
		}
		if k == nil {
			k = &kind{tokens: l.burst, refilled: now}
			l.kinds[key] = k
		}
	}
	if k.tokens < l.burst {
		if n := int(now.Sub(k.refilled) / l.interval); n > 0 {
			k.tokens = min(l.burst, k.tokens+n)
			k.refilled = k.refilled.Add(time.Duration(n) * l.interval)
		}
	}
	if k.tokens == 0 {
		k.suppressed++
		return false, 0
	}
	if k.tokens == l.burst {
		k.refilled = now // a full bucket starts its refill from its first use
	}
	k.tokens--
	suppressed, k.suppressed = k.suppressed, 0
	return true, suppressed
}

// Log writes msg with args to logger at level unless the level is off or
// the line's kind (level and msg) is over its rate; a line that follows
// suppressed ones carries SuppressedKey.
func (l *Limiter) Log(ctx context.Context, logger *slog.Logger, level slog.Level, msg string, args ...any) {
	l.LogKind(ctx, logger, level, Key(uint64(level), msg), msg, args...)
}

// LogKind is Log with the kind given, for lines whose kind is not their
// message alone (e.g. Key(closeCode, msg)).
func (l *Limiter) LogKind(ctx context.Context, logger *slog.Logger, level slog.Level, kind uint64, msg string, args ...any) {
	if !logger.Enabled(ctx, level) {
		return
	}
	ok, n := l.Allow(kind)
	if !ok {
		return
	}
	if n > 0 {
		args = append(args, SuppressedKey, n)
	}
	logger.Log(ctx, level, msg, args...)
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// Key derives a kind from a seed (e.g. the level) and a message
// template, without allocating.
func Key(seed uint64, template string) uint64 { return hash(seed, template, false) }

// keyMessageBytes is how much of a formatted message KeyMessage reads,
// digits not counted.
const keyMessageBytes = 64

// KeyMessage derives a kind from a formatted message: its first 64 bytes
// other than digits, so that lines differing only in numbers (an SSRC, a
// size, "10.0.0.1:5000") are alike. It does not allocate.
func KeyMessage(seed uint64, msg string) uint64 { return hash(seed, msg, true) }

// hash is FNV-1a of seed then s (with message, s's first keyMessageBytes
// bytes other than digits), never the overflow kind.
func hash(seed uint64, s string, message bool) uint64 {
	h := uint64(fnvOffset) ^ seed
	h *= fnvPrime
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if message {
			if n == keyMessageBytes {
				break
			}
			if c >= '0' && c <= '9' {
				continue
			}
			n++
		}
		h ^= uint64(c)
		h *= fnvPrime
	}
	return h | 1
}
