// Package redischannel is a multi-cluster gossip channel kept in Redis
// (multicluster.GossipChannel). Each service has two hashes,
// shoal:multicluster:<service>:entries (the entries, JSON) and
// ...:order (each entry's order key); a Lua script stores an entry only
// when its order key is higher than the stored one, so a stale writer
// never overwrites a newer entry, however writers interleave. Entries read
// back are decoded strictly and checked; one that fails is skipped and
// counted (Malformed).
//
// Tests start a real redis-server on a free loopback port (Debian's
// package; scripts/test.sh installs it when missing) and skip when it is
// not installed.
//
// # Files
//
//   - redis.go — Channel: New, NewWithClient, Publish, Synchronize, Read,
//     and the conditional-write script.
package redischannel
