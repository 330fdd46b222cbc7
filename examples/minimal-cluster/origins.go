package main

import (
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
)

// maxNotedOrigins bounds the refused origins remembered (each is logged
// once): a flood of made-up origins logs that many lines at most.
const maxNotedOrigins = 64

// originGuard is in front of the signaling handler: a browser page from an
// origin the signaling server refuses (403, by the same rule: the request's
// own host, or a pattern of -origins) is logged once per origin, with the
// flag that allows it; the request then goes on to the server, which
// refuses it.
type originGuard struct {
	next     http.Handler
	patterns []string
	log      *slog.Logger

	mu   sync.Mutex
	seen map[string]bool
}

func newOriginGuard(next http.Handler, patterns []string, log *slog.Logger) *originGuard {
	return &originGuard{next: next, patterns: patterns, log: log, seen: map[string]bool{}}
}

func (g *originGuard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if origin := r.Header.Get("Origin"); origin != "" && !originAllowed(r.Host, origin, g.patterns) {
		g.note(origin)
	}
	g.next.ServeHTTP(w, r)
}

func (g *originGuard) note(origin string) {
	g.mu.Lock()
	first := !g.seen[origin] && len(g.seen) < maxNotedOrigins
	if first {
		g.seen[origin] = true
	}
	g.mu.Unlock()
	if !first {
		return
	}
	host := origin
	if u, err := url.Parse(origin); err == nil && u.Host != "" {
		host = u.Host
	}
	g.log.Warn("signaling refused a page from another origin (HTTP 403); to allow it, start with -origins "+host+
		" (comma-separated, patterns like *.example.com:* allowed)", "origin", origin, "allowed", strings.Join(g.patterns, ","))
}

// originAllowed is the rule of the WebSocket library the signaling server
// uses (coder/websocket's AcceptOptions.OriginPatterns): the request's own
// host, or a pattern matching the origin's host (or, for a pattern with
// "://", its scheme and host), case-insensitively.
func originAllowed(host, origin string, patterns []string) bool {
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, u.Host) {
		return true
	}
	for _, p := range patterns {
		target := u.Host
		if strings.Contains(p, "://") {
			target = u.Scheme + "://" + u.Host
		}
		if ok, err := path.Match(strings.ToLower(p), strings.ToLower(target)); err == nil && ok {
			return true
		}
	}
	return false
}
