package cluster

import (
	"crypto/rand"
	"errors"
	"log/slog"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/shoal-sfu/shoal/internal/testutil"
)

// logRecorder keeps the lines its nodes log.
type logRecorder struct{ buf testutil.LogBuffer }

// logger returns a logger writing to r at level and to the test's log.
func (r *logRecorder) logger(t *testing.T, level slog.Level) *slog.Logger {
	return slog.New(slog.NewMultiHandler(
		slog.NewTextHandler(&r.buf, &slog.HandlerOptions{Level: level}),
		testutil.LoggerLevel(t, levelFromEnv()).Handler()))
}

// logTo returns a config change giving the node that logger.
func logTo(l *slog.Logger) func(*Config) {
	return func(c *Config) { c.Logger = l }
}

func (r *logRecorder) lines() []string {
	s := strings.TrimSpace(r.buf.String())
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// atWarn returns the recorded lines at Warn or above.
func (r *logRecorder) atWarn() []string {
	var out []string
	for _, l := range r.lines() {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			out = append(out, l)
		}
	}
	return out
}

var suppressedRE = regexp.MustCompile(`msg="repeated lines from one source suppressed".* suppressed=(\d+)`)

// suppressed sums the counts of the summary lines recorded.
func (r *logRecorder) suppressed() int {
	sum := 0
	for _, l := range r.lines() {
		if m := suppressedRE.FindStringSubmatch(l); m != nil {
			k, _ := strconv.Atoi(m[1])
			sum += k
		}
	}
	return sum
}

// setLogLimitInterval sets how often the nodes started next report the
// lines they suppressed, and returns a function restoring it.
func setLogLimitInterval(d time.Duration) func() {
	old := logLimitInterval
	logLimitInterval = d
	return func() { logLimitInterval = old }
}

// Garbage at the gossip port, as a hostile or broken sender would send it,
// logs a few lines and a summary of how many were suppressed, not a line
// per packet.
func TestLogGarbageAtGossipPortIsLimited(t *testing.T) {
	testutil.CheckLeaks(t)
	defer setLogLimitInterval(time.Second)()
	rec := &logRecorder{}
	n := newTestCluster(t).addWith("n1", false, logTo(rec.logger(t, slog.LevelInfo)))
	target := net.JoinHostPort(n.ip.String(), strconv.Itoa(n.serfPort))

	const packets, streams = 2000, 20
	garbage := make([]byte, 200)
	conn, err := net.Dial("udp", target)
	if err != nil {
		t.Fatal(err)
	}
	for i := range packets {
		rand.Read(garbage)
		garbage[0] = 0xff // not a memberlist message type, should encryption be off
		if _, err := conn.Write(garbage); err != nil {
			t.Fatal(err)
		}
		if i%100 == 99 {
			time.Sleep(5 * time.Millisecond) // do not overflow the socket's buffer
		}
	}
	conn.Close()
	for range streams {
		s, err := net.Dial("tcp", target)
		if err != nil {
			t.Fatal(err)
		}
		rand.Read(garbage)
		s.Write(garbage)
		s.Close()
	}

	// Most of it reported as suppressed, within a flush interval or two.
	want := (packets + streams) * 3 / 4
	ok := testutil.WaitFor(func() bool { return rec.suppressed() >= want }, 5*time.Second)
	warn := rec.atWarn()
	t.Logf("%d packets and %d streams of garbage: %d lines at Warn or above, %d lines reported suppressed",
		packets, streams, len(warn), rec.suppressed())
	if len(warn) > 5 {
		t.Errorf("%d lines at Warn or above, want at most 5; the first: %q", len(warn), warn[:3])
	}
	if !ok {
		t.Errorf("summaries report %d lines suppressed, want at least %d", rec.suppressed(), want)
	}
}

// A normal start of a cluster prints no warning.
func TestLogNormalStartHasNoWarning(t *testing.T) {
	testutil.CheckLeaks(t)
	rec := &logRecorder{}
	ns := newTestCluster(t).regularWith(3, logTo(rec.logger(t, slog.LevelWarn)))
	for _, n := range ns {
		testutil.Eventually(t, func() bool { return len(n.Snapshot().Nodes) == 3 }, 5*time.Second, "%s lists 3 nodes", n.self)
	}
	time.Sleep(time.Second) // what follows the start: registrations, first housekeeping
	if warn := rec.atWarn(); len(warn) > 0 {
		t.Errorf("a normal start of 3 nodes logged %d lines at Warn or above:\n%s", len(warn), strings.Join(warn, "\n"))
	}
}

var nodeAttrRE = regexp.MustCompile(`(^| )node=`)

// Every line of a node names it once: node= is not repeated, and another
// node is named under another key.
func TestLogNamesTheNodeOnce(t *testing.T) {
	testutil.CheckLeaks(t)
	rec := &logRecorder{}
	ns := newTestCluster(t).regularWith(3, logTo(rec.logger(t, slog.LevelInfo)))
	ns[2].Close() // the others log its leave
	testutil.Eventually(t, func() bool { return !connected(ns[0], ns[2].self) }, 5*time.Second, "n3 seen gone")
	lines := rec.lines()
	bad := 0
	for _, l := range lines {
		if k := len(nodeAttrRE.FindAllString(l, -1)); k != 1 {
			bad++
			if bad <= 3 {
				t.Errorf("node= %d times in %q", k, l)
			}
		}
	}
	t.Logf("%d of %d lines carry node= other than once", bad, len(lines))
}

// The warnings of a normal start are demoted; the same messages when
// something is wrong, and all others, keep their level.
func TestLogRaftLevels(t *testing.T) {
	warn, debug := slog.LevelWarn, slog.LevelDebug
	for _, tc := range []struct {
		msg   string
		args  []any
		level slog.Level
		want  slog.Level
	}{
		{"no known peers, aborting election", nil, warn, debug},
		{"heartbeat timeout reached, starting election", []any{"last-leader-addr", raft.ServerAddress(""), "last-leader-id", raft.ServerID("")}, warn, debug},
		{"heartbeat timeout reached, starting election", []any{"last-leader-addr", raft.ServerAddress("10.0.0.1:1"), "last-leader-id", raft.ServerID("n1@10.0.0.1")}, warn, warn},
		{"failed to get previous log", []any{"previous-index", 1, "last-index", 0, "error", raft.ErrLogNotFound}, warn, debug},
		{"failed to get previous log", []any{"previous-index", 1, "last-index", 0, "error", errors.New("disk on fire")}, warn, warn},
		{"appendEntries rejected, sending older logs", []any{"peer", "x", "next", 1}, warn, debug},
		{"previous log term mis-match", nil, warn, warn},
		{"failed to contact quorum of nodes, stepping down", nil, warn, warn},
		{"no known peers, aborting election", nil, slog.LevelError, slog.LevelError},
		{"entering follower state", nil, slog.LevelInfo, slog.LevelInfo},
	} {
		if got := raftLevel(tc.level, tc.msg, tc.args); got != tc.want {
			t.Errorf("raftLevel(%v, %q, %v) = %v, want %v", tc.level, tc.msg, tc.args, got, tc.want)
		}
	}
}

// failingListener fails every Accept with a non-timeout error (as when the
// process is out of file descriptors) until closed.
type failingListener struct{ closed chan struct{} }

func (l *failingListener) Accept() (net.Conn, error) {
	select {
	case <-l.closed:
		return nil, net.ErrClosed
	default:
		return nil, errors.New("accept: too many open files")
	}
}
func (l *failingListener) Close() error   { close(l.closed); return nil }
func (l *failingListener) Addr() net.Addr { return &net.TCPAddr{} }

// Failed accepts, which a flood of connections can cause, give the first
// few "cluster: accept" lines, not one per 10 ms.
func TestAcceptErrorsLogLimited(t *testing.T) {
	testutil.CheckLeaks(t)
	logger, buf := testutil.BufferLogger(slog.LevelInfo)
	m := &mux{ln: &failingListener{closed: make(chan struct{})}, logger: logger}
	m.start()
	time.Sleep(300 * time.Millisecond) // about 30 failures
	m.close()
	n := strings.Count(buf.String(), "cluster: accept")
	if n == 0 || n > 5 {
		t.Fatalf("%d lines for 300 ms of failed accepts, want 1 to 5:\n%s", n, buf)
	}
}
