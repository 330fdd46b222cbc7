package signaling

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/shoal-sfu/shoal/internal/lograte"
	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/signaling/wire"
)

// Clients that end their sessions on an error at will (40 connections
// sending a message that is not JSON) get the first few "signaling
// session ended" lines of that close code, not one each; another code's
// line still shows.
func TestSessionEndedLogLimited(t *testing.T) {
	logger, buf := testutil.BufferLogger(slog.LevelInfo)
	ts := newTestServer(t, Config{Logger: logger})
	const conns = 40
	for range conns {
		c := dial(t, ts.url)
		c.send("not json")
		c.wantClose(wire.CloseInvalidMessage, "")
	}
	c := dial(t, ts.url)
	c.send(`{"type":"connect","role":"admin","channel_id":"x"}`)
	c.wantClose(wire.CloseInvalidRole, "")
	ended := func(code int) int {
		return strings.Count(buf.String(), fmt.Sprintf(" code=%d reason=", code))
	}
	testutil.Eventually(t, func() bool {
		return ended(wire.CloseInvalidRole) == 1 && ended(wire.CloseInvalidMessage) >= lograte.DefaultBurst
	}, 5*time.Second, "the lines of both codes")
	time.Sleep(200 * time.Millisecond) // any late one
	if n := ended(wire.CloseInvalidMessage); n != lograte.DefaultBurst {
		t.Fatalf("%d lines for %d sessions ended on a bad message, want %d:\n%s", n, conns, lograte.DefaultBurst, buf)
	}
}
