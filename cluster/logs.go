package cluster

import (
	"errors"
	"fmt"
	"log"
	"log/slog"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/shoal-sfu/shoal/internal/slogstd"
)

// logLimitInterval is how often the gossip loggers report the warnings
// they suppressed from one source (a variable for tests).
var logLimitInterval = slogstd.DefaultInterval

// libLogs are the loggers a node gives memberlist, serf and Raft: each line
// tagged with the library's name as component and with node=<node_name>
// once. Warnings and errors of memberlist and serf that name a source are
// limited per source (slogstd.Limiter), so that garbage sent to the gossip
// port logs a line and then a summary per interval, not a line per packet.
// Raft's messages that are part of a normal start are logged at Debug.
type libLogs struct {
	memberlist, serf *log.Logger
	raft             hclog.Logger
}

// newLibLogs returns the library loggers of node self, writing to base (the
// Config's Logger, which does not carry node=).
func newLibLogs(base *slog.Logger, self string) libLogs {
	l := base.With("node", self)
	lim := slogstd.NewLimiter(logLimitInterval, 0)
	return libLogs{
		memberlist: slogstd.New(l, "memberlist", slogstd.WithLimiter(lim)),
		serf:       slogstd.New(l, "serf", slogstd.WithLimiter(lim)),
		raft:       slogstd.NewHCLog(l, "raft", raftLevel),
	}
}

// raftLevel demotes to Debug the warnings Raft logs in a normal start and
// catch-up, which say nothing is wrong:
//   - "no known peers, aborting election": a new node waits for InitCluster
//     or RegisterClusterNode;
//   - "heartbeat timeout reached, starting election" when no leader was
//     known: the first election after a start (when a known leader is
//     lost it stays a warning);
//   - "failed to get previous log" with raft.ErrLogNotFound: a follower is
//     behind (new or restarted), and the leader answers with
//     "appendEntries rejected, sending older logs".
//
// Every other message keeps its level.
func raftLevel(level slog.Level, msg string, args []any) slog.Level {
	if level != slog.LevelWarn {
		return level
	}
	switch msg {
	case "no known peers, aborting election",
		"appendEntries rejected, sending older logs":
		return slog.LevelDebug
	case "heartbeat timeout reached, starting election":
		if id, ok := hcArg(args, "last-leader-id"); ok && fmt.Sprint(id) == "" {
			return slog.LevelDebug
		}
	case "failed to get previous log":
		if err, ok := hcArg(args, "error"); ok {
			if err, ok := err.(error); ok && errors.Is(err, raft.ErrLogNotFound) {
				return slog.LevelDebug
			}
		}
	}
	return level
}

// hcArg returns the value of key in hclog's key-value pairs.
func hcArg(args []any, key string) (any, bool) {
	for i := 0; i+1 < len(args); i += 2 {
		if k, ok := args[i].(string); ok && k == key {
			return args[i+1], true
		}
	}
	return nil, false
}
