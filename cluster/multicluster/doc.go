// Package multicluster holds what clusters in several regions share to
// carry channels between them (docs/multicluster.md): the multi-cluster
// configuration an operator sets (which clusters are joined), the gateway
// table (gossip address → cluster id, node, relay address, active or not,
// version, the channels it bridges), the rules that merge them, the
// choice of a cluster's gateways and of the gateway that bridges each
// channel, and the gossip that spreads the state between gateways and
// gossip channels.
//
// # Ordering without clocks
//
// Every entry has one writer and is ordered by that writer's version,
// never by comparing the clocks of different machines. A gateway entry is
// written by its gateway, with a counter it raises at each change; when a
// gateway's node is gone from its cluster, the first gateway of that
// cluster writes the entry inactive at the next version. The configuration
// is a Lamport clock: a node that sets it writes one version above the
// newest it knows, ties broken by the writer's name. Merge keeps the newer
// entry of each key and returns the delta; merging is commutative and
// idempotent, so every copy converges whatever order messages arrive in.
// Each entry's Order is a string compared byte by byte, so that a gossip
// channel (a Redis script) orders entries exactly as Go does.
//
// # Files
//
//   - data.go — Status, Gateway, Configuration, Data; Order, Merge,
//     NewerThan.
//   - codec.go — Message, the gossip message between gateways and what
//     gossip channels store; Encode, Decode (checks every field, fuzzed:
//     FuzzDecode with its corpus in testdata/fuzz); NewConfiguration.
//   - gateways.go — ChooseGateways (up to MaxGateways active nodes,
//     balanced across zones, pure) and Bridge (which gateway bridges a
//     channel: rendezvous hashing, so a lost gateway moves only its
//     channels).
//   - channel.go — GossipChannel, the external stores that bootstrap the
//     gossip (publish if newer; synchronize and get back what is newer),
//     and SynchronizeAll over several, one down not being an error while
//     another answers; MemoryChannel for tests and examples. Package
//     redischannel keeps one in Redis.
//   - agent.go — Agent: one member of a memberlist pool (WAN profile,
//     encrypted with the multi-cluster key, labelled with the service id)
//     of the nodes of every joined cluster. A change made here (SetSelf,
//     MarkInactive, SetConfiguration) is pushed at once to every member
//     and channel, once, without retry; every SyncInterval (30 s,
//     jittered ±25 %) it exchanges the whole state with one random
//     partner among the members and channels (memberlist's push-pull for
//     a member), which repairs lost pushes. At start it reads the
//     channels and joins its seeds and the active gateways they list.
//     Liveness of members is memberlist's; that of a cluster's own
//     nodes is the cluster's (serf), whose view decides its gateways.
package multicluster
