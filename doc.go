// Package shoal is a library for building clustered WebRTC SFUs: several
// nodes share one channel, clients are redirected to the right node, media and
// messages are relayed between nodes, and the cluster keeps serving through
// node loss and network partitions.
//
// Shoal is Sora-compatible: its signaling protocol, its cluster settings and
// operations, and its admin API follow the Sora SFU's published
// documentation and SDKs, so that clients written for Sora's SDKs (such as
// sora-js-sdk) connect unchanged and operators recognise the settings. The
// rest of this documentation says "Sora" when it means that server.
//
// The module is a set of small packages, each one concept:
//
//	cluster/    membership: who is in the cluster, who is alive, the majority
//	            rule, modes, load and channel owners (on serf and Raft)
//	affinity/   placement: pure decisions (serve, redirect, refuse) over a
//	            snapshot of the cluster, and capacity kept through failures
//	relay/      node-to-node forwarding of a channel's media and messages
//	signaling/  the WebSocket signaling server (the wire is in
//	            signaling/wire), redirects, the auth hook, the admin HTTP API;
//	            signaling/client is a Go client
//	sfu/        a small SFU on pion/webrtc v4: channels, fan-out, data channels
//
// The rules they implement are written down in the repository's docs/
// folder: docs/cluster.md (majority, modes, temporary nodes, InitCluster,
// purge), docs/placement.md (where a connection goes), docs/signaling.md
// (the wire protocol as implemented) and docs/relay.md (the links between
// nodes).
//
// # The flow of one connection
//
//	client ──ws──▶ signaling ──▶ auth hook ──▶ affinity.Place(view, request)
//	                                             │ (view from cluster.Node.Snapshot)
//	         ┌── redirect {location} ◀───────────┤
//	         ├── refuse {reason}     ◀───────────┤
//	         └── serve ──▶ sfu channel ──▶ offer / answer / candidates
//	                          │
//	   channel has clients on another node? ──▶ relay link to that node
//
// Data flows one way: signaling asks placement, placement reads a snapshot of
// the cluster, the SFU serves, and the relay joins channels across nodes.
// Placement never does I/O; time enters it as a value in the snapshot.
//
// # Ready wiring
//
// Node joins every part from one Config (the cluster settings as Go fields)
// and gives the signaling and admin handlers to mount:
//
//	cfg := shoal.DefaultConfig()
//	cfg.NodeName = "node1@10.0.0.1"
//	cfg.Cluster = true
//	cfg.ClusterKey = key // 32 bytes, the same on every node
//	cfg.ExternalSignalingURL = "wss://node1.example.com/signaling"
//	cfg.ExternalAPIURL = "https://node1.example.com/api/" // the nodes call each other here
//	cfg.Authenticator = &signaling.Webhook{URL: "https://auth.example.com/"}
//	n, err := shoal.New(cfg)
//	...
//	err = n.Start(ctx)
//	http.Handle("/signaling", n.SignalingHandler())
//	http.Handle("/api/", http.StripPrefix("/api", n.AdminHandler()))
//	...
//	select {
//	case <-ctx.Done():
//	case <-n.Done(): // a part stopped on its own: n.Err() says which and why
//	}
//	err = n.Close()
//
// A Node's lifecycle is net/http's: New starts nothing, Start binds and
// starts, a part that fails later closes Done and is reported by Err (and
// logged at Error), and Close stops everything, returning that error too.
//
// Everything Node does can be wired by hand from the packages (see
// Example_byHand); examples/minimal-cluster runs three nodes on one machine.
//
// # Files
//
//   - doc.go — this overview.
//   - node.go — Config, Node: building the parts (New), their lifecycle
//     (Start, Done, Err, Close) and the accessors.
//   - follow.go — what a Node does on each cluster event: make the relay's
//     peers and channels follow the channel owners (reconcile: DNS lookups
//     and the relay calls around the plan). Leaving the majority needs
//     nothing here: the signaling server drops its connections itself.
//   - relayplan.go — the plan itself: which peers and relayed channels a
//     view calls for, as pure functions of the view and of what is open.
//   - media.go — NewMedia, the adapter from *sfu.SFU to the media side the
//     signaling server needs.
//   - faults.go — SelfBlockConfig and the fault monitor: the node blocks
//     itself while its relay, data directory or media socket fails.
//   - stats.go — the admin API's stats (signaling.StatsProvider) over the
//     SFU's, the relay's and the signaling server's figures, and the SFU's
//     per-connection counters made into totals that only grow.
//   - metrics.go — MetricsCollector and MetricsHandler: Prometheus metrics
//     made at each scrape from the parts' snapshots (no global registry;
//     only this package imports Prometheus). docs/operations.md lists them.
//   - multicluster.go — MultiClusterConfig and the node's part in a
//     multi-cluster configuration (docs/multicluster.md): its gateway
//     entry, the gateways it marks gone, the channels it bridges (claimed
//     in its cluster, opened on the inter-cluster relay), and the Go
//     methods (SetMultiClusterConfiguration, ListGateways, ...).
//   - multicluster_bridge.go — the bridge between a gateway's two relays
//     (the cluster's and the inter-cluster one).
//   - multicluster_admin.go — the admin API's multi-cluster targets.
//     Their tests, with pion clients, are in internal/multiclustertest.
//
// The package's tests include real three-node clusters in one process
// (node_test.go, integration_test.go, admission_test.go for the "no
// cluster" column, admin_errors_test.go for the admin API's statuses,
// logs_test.go for what every log line carries, faults_test.go for the
// node blocking itself on a local fault, webhook_test.go for one
// session.created and session.destroyed per session across three nodes,
// metrics_test.go for /metrics parsed by Prometheus's parser,
// stats_consumers_test.go for the stats answers against what sora_exporter,
// sorabeat and shiguredo's Rust stats viewer read from Sora's), Chromium
// against three nodes with the example's page and the published
// sora-js-sdk (e2e*_test.go; e2e_ops_test.go checks the stats API against
// the browsers' own counts, and the live cluster page), the relay plan's table tests
// (relayplan_test.go) and the dependency fences (fence_test.go).
//
// # Dependencies
//
// Only cluster/ imports serf, memberlist and Raft. Pion is imported by sfu/,
// relay/, signaling/client (a Go client is a WebRTC peer) and the internal
// logging adapter; the root package and signaling/ reach it only through
// sfu's types. affinity/ imports the standard library alone, and signaling/
// builds without any media or membership stack. Prometheus is imported
// by the root package alone (metrics.go). fence_test.go keeps these
// fences, checking every package's transitive dependencies, so a user can
// take placement without a media stack, or replace the membership without
// touching the SFU.
package shoal
