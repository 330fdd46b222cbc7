// Package shoal is a library for building clustered WebRTC SFUs: several
// nodes share one channel, clients are redirected to the right node, media and
// messages are relayed between nodes, and the cluster keeps serving through
// node loss and network partitions.
//
// The module is a set of small packages, each one concept with an interface
// and a default implementation:
//
//	cluster/    Membership: who is in the cluster, who is alive, the majority
//	            rule, modes, load and channel owners (default: Serf + Raft)
//	affinity/   Placement: pure decisions (serve, redirect, refuse) over a
//	            snapshot of the cluster, and capacity kept through failures
//	relay/      node-to-node forwarding of a channel's media and messages
//	signaling/  WebSocket signaling wire-compatible with the seed SFU's SDKs,
//	            redirects, the auth hook and the admin HTTP API
//	sfu/        a small SFU on pion/webrtc v4: channels, fan-out, data channels
//
// # The flow of one connection
//
//	client ──ws──▶ signaling ──▶ auth hook ──▶ affinity.Place(view, request)
//	                                             │ (view from cluster.Membership)
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
// Node joins every part from one Config (the seed's settings as Go
// fields) and gives the signaling and admin handlers to mount:
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
//
// Everything Node does can be wired by hand from the packages (see
// Example_byHand); examples/minimal-cluster runs three nodes on one machine.
//
// # Behaviour
//
// The cluster's behaviour (regular and temporary nodes, InitCluster,
// RegisterClusterNode, PurgeClusterNode, the majority rule, the placement
// tables, capacity kept through failures) follows the seed SFU's cluster
// documentation, so that operators and existing client SDKs recognise it. Each
// package's documentation says which rules it implements.
//
// # Dependencies
//
// Only cluster/ imports Serf, memberlist and Raft; only sfu/ and relay/ import
// pion; affinity/ imports the standard library alone. A test keeps these
// fences, so a user can take placement without a media stack, or replace the
// membership layer without touching the SFU.
package shoal
