// Package affinity is placement: for one connecting client it decides
// whether the contacted node serves it, redirects it to another node, or
// refuses it with a reason. It is a pure function of a snapshot of
// the cluster (View, filled by cluster/) and of the connect (Request, built
// by signaling/); it does no I/O, reads no clock, changes nothing, and
// allocates nothing. The same view and request always give the same Decision.
//
// # The rules
//
// The table is Sora's (relay = cluster_relay, affinity =
// default_cluster_affinity or the auth hook's cluster_affinity override);
// docs/placement.md says the same for users:
//
//	case                              relay+affinity         relay, no affinity     no relay                          no cluster
//	new session                       redirect to most free  contacted node         redirect to most free             contacted node
//	existing session                  redirect to its node   contacted node         redirect to its node; full: fail  contacted node
//	new session, contacted node full  redirect to most free  redirect to most free  redirect to most free             fail
//	existing session, contacted full  redirect to most free  redirect to most free  redirect to its node; full: fail  fail
//
// "Redirect" to the contacted node itself means serving there. Around the
// table:
//
//   - A node can take the connection ("usable") when it is Connected, its
//     mode admits the connection, and its Connections are below its effective
//     capacity. Only usable nodes are ever served on or redirected to.
//   - Modes: ModeNormal admits all; ModeBlockNewSession admits
//     only connections of sessions the node already holds (an Owner of the
//     channel), so with relay it takes no new part of another node's session
//     either; ModeBlockNewConnection, and any unknown mode, admits none.
//   - "Most free" is the usable node with the lowest Connections / effective
//     capacity, compared exactly; ties go to the contacted node, then to the
//     lowest Name. With no usable node the connect is refused with
//     ErrNoCapacity (some node would admit it but is full) or ErrNoUsableNode.
//   - Relay with affinity, existing session: the session's owners are tried
//     in order (the gathering node, Owners[0], first); the first usable one
//     with at most AffinityThreshold of the session's connections serves.
//     Otherwise the most free usable node at or under the threshold (a node
//     without the session has 0); if every usable node is over it, the usable
//     node with the fewest connections overall. AffinityThreshold <= 0 means
//     no threshold. A full owner is skipped, which gives Sora's "if the
//     chosen node is full, the most free node". The row "existing session,
//     contacted full" therefore goes to the most free node when the
//     contacted node is the session's node, and to the session's node when
//     that is another node with room: the contacted node's load does not
//     matter when the connection leaves it anyway.
//   - Relay without affinity: the contacted node serves if usable, else the
//     most free node.
//   - Without relay a session lives on exactly one node, Owners[0]; affinity
//     does not apply. If that node is full the connect fails
//     (ErrSessionNodeFull); if it is blocked, ErrNodeBlocked; if it is not
//     connected, ErrSessionNodeUnavailable (cluster/ decides when a failed
//     node's sessions end; until then they cannot move).
//   - Without cluster (Settings.Cluster false) the node is a plain SFU: it
//     serves unless its mode blocks the connection (ErrNodeBlocked) or it is
//     full at its own Capacity (ErrNoCapacity). InMajority, Connected and
//     other nodes are ignored.
//   - With cluster on, a node outside the majority refuses everything
//     (ErrNotInMajority), and an unknown contacted node is refused with
//     ErrUnknownNode. The contacted node must appear in the view with
//     Connected true, as cluster/ lists itself.
//   - A connect with Request.Redirected (it came with "redirect": true) is
//     served at the contacted node whenever that node is usable and, without
//     relay, the session is new or held there. Two nodes' views can differ
//     for a moment and the client SDK follows redirects without a hop limit;
//     this rule is what prevents redirect ping-pong. With one view the rule is
//     not even needed: a redirect target would itself choose to serve.
//
// # Capacity kept through failures
//
// A regular node with Connected false has failed. Its Capacity is spread over
// the connected nodes with a positive Capacity, regular and temporary: each
// takes ceil(total failed capacity / remaining nodes) extra (three nodes of
// 100, one failed: 150 each; three regular and one temporary of 100, a
// regular failed: +34 each). A failed temporary node moves nothing. When the
// node returns the limits go back; a node above its limit is full, and no
// connection is dropped. See View.ExtraCapacity and EffectiveCapacities.
//
// # Usage
//
//	v := clusterNode.Snapshot()       // an affinity.View, from *cluster.Node
//	d := affinity.Place(&v, affinity.Request{
//		ChannelID:  msg.ChannelID,
//		Contacted:  localName,
//		Affinity:   hookAffinity,     // from the auth hook, or AffinityUnset
//		Redirected: msg.Redirect,
//	})
//	switch d.Action {
//	case affinity.ActionServe:     // join the channel here
//	case affinity.ActionRedirect:  // send {"type":"redirect","location": d.SignalingURL}
//	case affinity.ActionRefuse:    // close with a 4xxx code and d.Err().Error()
//	}
//
// A View may be shared by concurrent Place calls. Code that wants to swap
// the policy takes a Placer; Default implements the rules above.
//
// # Files
//
//   - doc.go — this overview and the rules.
//   - view.go — the inputs: View (nodes, sessions, settings, majority, time),
//     Node, Owner, Session, Settings, Mode, Request and Affinity.
//   - place.go — the decision: Place, the Placer interface and Default,
//     Decision, Action and the refusal reasons (Err*, RefusedError).
//   - capacity.go — capacity kept through failures: ExtraCapacity,
//     EffectiveCapacity, EffectiveCapacities.
//   - validate.go — View.Validate, what placement relies on in a view.
//
// The tests hold a case for each cell of the table (place_test.go), an
// oracle written apart from the implementation checked over random views
// (property_test.go), a fuzz test (fuzz_test.go) and benchmarks
// (bench_test.go).
package affinity
