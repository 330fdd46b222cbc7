// Package slogstd adapts a *slog.Logger to the loggers the gossip and Raft
// libraries take: the standard library *log.Logger of serf and memberlist,
// which write their level as a "[LEVEL]" prefix, and raft's hclog.Logger.
//
// Usage:
//
//	lim := slogstd.NewLimiter(0, 0) // shared by the loggers of one node
//	conf := serf.DefaultConfig()
//	conf.Logger = slogstd.New(logger, "serf", slogstd.WithLimiter(lim))
//	conf.MemberlistConfig.Logger = slogstd.New(logger, "memberlist", slogstd.WithLimiter(lim))
//	raftConf.Logger = slogstd.NewHCLog(logger, "raft", nil)
//
// A line such as "[WARN] memberlist: Refuting a suspect message" becomes a
// slog record at LevelWarn with the message "memberlist: Refuting a suspect
// message" and the attribute component=memberlist. Lines without a known
// prefix are logged at Info. Warnings and errors naming a source ("from=")
// pass through a Limiter, so that garbage packets from one sender log one
// line and then one summary per interval, not one line per packet.
//
// Files:
//   - slogstd.go — New: the *log.Logger adapter; ParseLine.
//   - limit.go — Limiter: per-source limits on warnings and errors; Source.
//   - hclog.go — NewHCLog: the hclog.Logger adapter, with a hook to change
//     the level of known messages.
package slogstd
