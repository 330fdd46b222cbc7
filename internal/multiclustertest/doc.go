// Package multiclustertest runs clusters in several regions in one process
// with real nodes (membership, relay, SFU, signaling) and real pion
// clients, to test and measure what crosses between clusters. It has
// tests only; it is a package of its own so that the pion clients stay out
// of the root package's tests (pion's types cross no API but sfu's and
// relay's).
//
// # Files
//
//   - regions_test.go — starting a region (a cluster of three nodes with
//     multi-cluster on), the publisher and subscriber clients, and the
//     tests: media and messages from cluster A reach subscribers in
//     cluster B, each packet crossing the inter-cluster link once for ten
//     subscribers, and a gateway stopped is taken over. The regions run
//     with testTiming, testTune and linkTimeout: cluster.FastTiming,
//     multicluster.FastTune and relay.FastConfig with a failure detector,
//     Raft timers and relay link timeout that hold when the -race process
//     is starved of CPU (too fast, they declared live nodes failed and
//     clients were closed at random).
//   - partition_test.go — the inter-cluster links cut (relay.FaultNet as
//     the nodes' RelayLink.Net, which the inter-cluster relay uses too):
//     each region keeps serving its clients, and media crosses again when
//     the cut heals.
//   - restart_test.go — a node of cluster A restarted (same name and
//     data dir, no seed) after every node of cluster B was replaced at new
//     addresses finds B's new gateways through the gossip channel (a real
//     redis-server the test starts) and relays B's media and messages to
//     its subscriber.
//   - delaynet_test.go — delayNet, a relay.Network that delays what
//     crosses between regions (40 ms each way in TestTwoRegionsDelayed,
//     run with SHOAL_MC_DELAY=1), as this kernel has no netem.
//   - admin_test.go — the admin API's multi-cluster targets and the
//     configuration errors.
package multiclustertest
