// Package signaling is everything a client and an operator talk to: the
// WebSocket signaling server, Sora-compatible (Sora's published SDKs
// connect to it unchanged); the auth hook (a Go function or an HTTP
// webhook); placement's decisions carried out as redirects; and the admin
// HTTP API, with Sora's targets, and its 307s. The messages on the
// WebSocket, their types and the close codes are package signaling/wire's;
// docs/signaling.md describes the protocol as implemented. The Go client is
// in the subpackage client.
//
// The package imports no WebRTC stack. The server reaches the media side
// through Media and MediaConn (plain types), which the root package
// implements over *sfu.SFU (shoal.NewMedia), and the cluster through Cluster,
// which *cluster.Node satisfies. MemCluster is an in-memory Cluster for
// tests, benchmarks and single-process demos.
//
// # One session
//
// Each WebSocket is one session, owned by the ServeHTTP goroutine, which
// does every write; a reader goroutine it starts and ends feeds it the
// client's messages, and media events are queued for it without blocking
// the SFU. No subprotocol; text frames of JSON only.
//
//  1. The first message must be connect (within ConnectTimeout, 10 s).
//     A socket that opens and closes without a message is dropped quietly.
//  2. Placement before authentication: a refusal (not in the majority, no
//     capacity, ...) closes at once, without asking the hook; without relay
//     a redirect is sent at once too, since the hook's cluster_affinity
//     cannot change it. With relay the contacted node always authenticates
//     first (as Sora does), so authentication may run twice.
//  3. Authentication: the Authenticator gets an AuthRequest (with the new
//     connection_id and the channel's cluster-wide connection count). A
//     denial, an error, a webhook timeout, non-2xx or malformed answer
//     closes with 4401 and the reason.
//  4. Placement after authentication, with the hook's cluster_affinity:
//     redirect ({"type":"redirect","location":...}, then the server waits up
//     to RedirectLinger for the client to close), refuse, or serve. A
//     connect with "redirect": true is passed to placement, which serves it
//     where it landed whenever it can (no redirect ping-pong). A redirect is
//     never sent after the offer. A decision to serve takes one of this
//     node's slots at once (see "Admission" below).
//  5. Serve: the channel is claimed in the cluster (for its first local
//     connection), Media.Join creates the peer connection, the majority is
//     checked once more, and the offer goes out with connection_id,
//     client_id, bundle_id, mid, data_channels and the hook's metadata.
//     notify connection.created (this connection's own included) and
//     connection.destroyed follow, with channel counts.
//  6. Then: answer (once), re-offer / re-answer (one outstanding; the
//     re-answer may come on the WebSocket or the "signaling" data channel),
//     trickled candidates (bounded by MaxCandidates), ping every
//     PingInterval (5 s) answered by pong within PongTimeout (15 s),
//     disconnect. The load and the channel's release are published to the
//     cluster as connections come and go.
//
// # Admission
//
// With a Cluster, two rules hold whatever the timing (admission.go):
//
//   - max_connections is a hard limit. Placement reads this node's load as
//     at least the slots it has reserved (connections placed here and not
//     yet ended, joining or served), not only the load the view shows,
//     which is published after the fact; a decision to serve takes a slot
//     in the same critical section, and the slot comes back when the
//     connection fails or ends. So a burst of connects to a node with room
//     for k serves exactly k, and the others get what the placement table
//     says for a full node: a redirect to the most free node, or a refusal
//     (NO-CAPACITY with clustering off).
//   - No connection survives leaving the majority. The server reads its
//     Cluster's view every 50 ms and, while it says the node is out of the
//     majority (clustering on), closes every served connection with 4503
//     NOT-IN-MAJORITY; placement refuses new ones. A connection placed before
//     the change and still joining is refused where it would become served,
//     under the same lock as the drop. A server wired by hand gets this as
//     the ready-made node does; nothing has to call DisconnectAll.
//
// Push messages ({"type":"push","data":{...}}, from the admin API's
// PushChannel, PushConnection and PushClient, or Server.PushChannel and
// friends in Go) go on the WebSocket, or on the "push" data channel once the
// session switched (below). Like media events they are queued on the
// session without blocking and written by its goroutine in order; a client
// whose queue overflows (4096 messages) is dropped with 4500 TOO-SLOW.
//
// # Data-channel signaling
//
// A connection signals over its data channels when data_channel_signaling
// is in effect: connect's field, or Config.DataChannelSignaling when connect
// does not set it (false by default, as in Sora); likewise
// ignore_disconnect_websocket and Config.IgnoreDisconnectWebSocket. The auth
// hook's answer cannot set them (AuthResult has no such fields).
//
//  1. Once the answer is applied and the media side reports every data
//     channel open (MediaEvents.DataChannelsOpen; the root package's
//     adapter reports it when pion has opened them all), the server waits
//     300 ms, the margin the SDK needs to fire its datachannel events for
//     "#" channels first (a switched that comes before them loses the
//     SDK's datachannel callback for that channel), then sends
//     {"type":"switched","ignore_disconnect_websocket":bool} on the
//     WebSocket. A Media that never reports the channels open, or whose
//     offer has no "signaling" channel, keeps the session on the WebSocket.
//  2. From then on re-offers and close go on the "signaling" data channel,
//     notify on "notify", push on "push" (each on the WebSocket if the
//     offer lacks that channel). re-answer, candidate and disconnect are
//     accepted on the "signaling" channel at any time, as the SDK sends them
//     there as soon as it exists.
//  3. Without ignore_disconnect_websocket the WebSocket stays open and
//     pinged, and its close still ends the session.
//  4. With it the client closes the WebSocket: the server stops pinging at
//     switched (the SDK can only pong on the WebSocket) and the socket's end
//     no longer ends the session. The session lives on until the media ends,
//     the client's disconnect arrives on the "signaling" channel, the API
//     disconnects it or the server closes; in the last two cases the server
//     sends {"type":"close","code":n,"reason":s} on the "signaling" channel
//     (the SDK then reports a normal SHUTDOWN), waits up to a
//     second for it to leave, then closes the media.
//  5. After a switched client's disconnect (on the data channel; the SDK
//     then waits for all its data channels to close), the server closes the
//     data channels gracefully first (DataChannelCloser, up to 2 s), then
//     the WebSocket if it is open, then the media: a peer connection closed
//     at once makes the SDK report DISCONNECT-DATA-CHANNEL-ERROR instead of
//     a normal DISCONNECT.
//
// Compression (offer.data_channels[].compress, zlib) is never used on the
// channels the server reads or writes: the media side opens
// "signaling", "notify" and "push" with compress false, and connect's
// data_channels may only name "#" channels, so a client cannot ask for it
// there; their messages are JSON text. A "#" channel's compress is echoed
// from connect to the offer and its messages are forwarded as they are
// (opaque): clients that all asked for compress on it exchange zlib, while
// one that did not gets the sender's bytes unconverted. The server does not
// send "update".
//
// # Close codes
//
// The SDK has no error message: a refusal or a malformed message closes the
// socket with a code and a reason (at most 123 bytes) that connect()
// rejects with. The codes are the wire.Close... constants.
//
//	1000 TYPE-DISCONNECT, MEDIA-CLOSED, REDIRECTED, or the API's reason
//	(after a switched without WebSocket the code and reason go in close on
//	the "signaling" data channel instead, for every row below that applies)
//	1001 SERVER-SHUTDOWN                 Server.Close
//	4400 INVALID-MESSAGE, MISSING-TYPE, UNKNOWN-TYPE, INVALID-FIELD,
//	     BINARY-MESSAGE, MISSING-SDP, INVALID-ANSWER, INVALID-DATA-CHANNELS
//	4401 the hook's reason, AUTH-DENIED, AUTH-ERROR, AUTH-TIMEOUT,
//	     AUTH-WEBHOOK-TIMEOUT, AUTH-WEBHOOK-STATUS, AUTH-WEBHOOK-BAD-RESPONSE
//	4408 ANSWER-TIMEOUT                  no answer or re-answer in AnswerTimeout (30 s)
//	4409 CONNECT-TIMEOUT                 no connect in ConnectTimeout (10 s)
//	4413 MESSAGE-TOO-LARGE               over MaxMessageSize (1 MiB)
//	4429 TOO-MANY-CANDIDATES             over MaxCandidates (200)
//	4490 INVALID-CHANNEL-ID              missing, empty, over 255 bytes, not UTF-8
//	4491 INVALID-ROLE
//	4492 CONNECT-EXPECTED, UNEXPECTED-CONNECT, UNEXPECTED-ANSWER, UNEXPECTED-RE-ANSWER
//	4500 MEDIA-ERROR, TOO-SLOW, NO-SIGNALING-URL, INTERNAL-ERROR, DATA-CHANNEL-ERROR
//	4503 NOT-IN-MAJORITY, NO-CAPACITY, NO-USABLE-NODE, NODE-FULL, NODE-BLOCKED,
//	     SESSION-NODE-FULL, SESSION-NODE-UNAVAILABLE, UNKNOWN-NODE, CHANNEL-CLAIM-FAILED
//	4504 PING-TIMEOUT                    no pong in PongTimeout
//
// A failing client never affects the others: each session ends alone,
// and its media connection is closed before the close handshake, so a dead
// client's resources are freed at once.
//
// # Events
//
// With Config.Events set (an *EventWebhook, or any EventSink), the server
// emits Sora's event webhook's connection.created (when the client's
// first answer is applied), connection.destroyed (its end, with the close
// reason), connection.failed (a connection offered here that ended
// before an answer) and the session webhook's session.created and
// session.destroyed; the EventWebhook adds connection.updated every
// UpdatedInterval. Every event carries an id, the same on each retry, so
// that a receiver can drop duplicates. A session spanning several nodes
// gives one session.created, sent by the node whose claim created it, and
// one session.destroyed, sent by the node whose release removed its last
// owner (the cluster orders claims and releases; *cluster.Node reports
// which release ended a session, see ChannelReleaser), or by the Raft
// leader when it released a failed node's claims, or by the node whose
// release returned an error but ended it (SessionEndedInCluster). Delivery is
// asynchronous: Emit never blocks, a full queue drops and counts, so a
// slow or dead receiver never slows signaling. docs/operations.md has the
// bodies.
//
// # Admin API
//
// NewAdminHandler serves POST / with an x-sora-target header and a JSON
// body, a thin layer over Admin (which *cluster.Node satisfies) and
// ChannelOps (which *Server implements): Sora's InitCluster,
// RegisterClusterNode, PurgeClusterNode, ListClusterNodes,
// ListClusterChannels, Sora_20201013.ListChannelConnections,
// Sora_20151104.DisconnectChannel, DisconnectConnection, DisconnectClient,
// and Sora_20160711.PushChannel, PushConnection, PushClient,
// Sora_20251210.RequestSimulcastRid (the older Sora_20201005.RequestRtpStream
// with recv_connection_id and send_connection_id is accepted too; it needs
// SimulcastOps, which *Server implements, and reaches the receiver on
// whichever node serves it), plus
// Shoal_20261123.SetClusterNodeMode (Sora has none), and the stats
// targets Sora_20171010.GetStatsReport, Sora_20171101.GetStatsAllConnections
// and Sora_20171101.GetStatsConnection (they need AdminConfig.Stats, which
// the root package's Node sets; {"cluster": true} asks every node). The name we used for
// ListChannelConnections before Sora's was known,
// Shoal_20261123.ListChannelConnections, is still accepted (deprecated).
// Bad input answers 400 {"error": "..."}: a missing or empty channel_id,
// connection_id or client_id, one over 255 bytes, a push without "data" or
// whose "data" is not a JSON object (the whole body is bounded by
// AdminConfig.MaxBodySize, 64 KiB by default, which bounds the push); so
// does a node_name_list naming a node twice, and a contact_node_name that
// is this node. An operation that fails answers {"error": "..."} with the
// status its error carries (HTTPStatuser; *cluster.Node's errors do): 400
// for a malformed node name or a list not naming this node, 404 for an
// unknown purge target, 409 for what the cluster's state refuses
// (InitCluster on a running cluster, a purge of a live node or of this
// one, a cluster not initialised), 503 while the node is not in the
// majority, 502 when a node it needed could not be reached, and 500 only
// for other failures. A bearer token and Sora's CORS headers are options
// (CORS off by default).
//
// Sora's 200 answers to the push and per-connection targets are not
// known to us: they answer {"channel_id"} plus the connection_id or
// client_id the request named, plus, as DisconnectChannel does, the count
// ("pushed" or "disconnected") in all and "nodes": [{"node_name", count}].
// ListChannelConnections answers Sora's entries: {"channel_id",
// "client_id", "connection_id", "role", "multistream": true, "simulcast":
// false, "spotlight": false, "created_time" (integer microseconds since the
// epoch), "audio" and "video" (false, or {"codec_type", "bit_rate"} as
// connect asked)}, plus our "node_name"; there is no session_id.
//
// Channel operations act on the whole cluster. With relay on, one
// channel's session spans several nodes:
//
//   - A node holding no part of the channel's session, while another node
//     does, answers 307 with Location = the gathering node's
//     external_api_url (the first connected holder's, if the gathering
//     node is disconnected).
//   - A node holding part of it does its own part and, in parallel, sends
//     the same target and body to every other holder's external_api_url
//     with the header x-shoal-scope: node (ScopeHeader) and its own bearer
//     token (the nodes share it), through AdminConfig.HTTPClient (default:
//     DefaultPeerTimeout, 5 s, per call) and the request's context;
//     redirects are not followed. ListChannelConnections answers every
//     node's connections (each with its node_name, sorted by node, then
//     age); DisconnectChannel answers {"channel_id"} (as before) plus
//     "disconnected" (in all) and "nodes": [{"node_name", "disconnected"}],
//     and the other operations likewise. The per-connection operations
//     (DisconnectConnection, DisconnectClient, PushConnection, PushClient)
//     are asked of every holder too, since the connection may be on any of
//     them; when none has it (and none failed) the answer is 404 with
//     "error" and the zero counts.
//   - A request with x-shoal-scope: node is answered for this node's own
//     connections only: never passed on, never 307 (no loops), never 404
//     (a per-connection operation that finds nothing here answers 0). "cluster"
//     (the default) is the other value; any other is a 400.
//   - A holder that fails (not connected in the view, no external_api_url,
//     unreachable, timed out, non-2xx, malformed answer) makes the answer
//     502 with "error" and "failed_nodes": [{"node_name", "status",
//     "error"}], next to what succeeded: the counts' fields, or
//     "connections" for ListChannelConnections. If only this node's own
//     part failed, the status is its error's (503 for a closed server).
//     This holds for the per-connection operations too, even when a node
//     that answered did the work (read the count before retrying a push),
//     and a failure turns their 404 into a 502, since the failed node may
//     hold the connection.
//
// # Usage
//
//	media := shoal.NewMedia(sfuNode)              // *sfu.SFU → signaling.Media
//	srv, err := signaling.New(signaling.Config{
//		Logger:        logger,
//		NodeName:      "node1@10.0.0.1",
//		Authenticator: &signaling.Webhook{URL: "https://auth.example.com/hook", Timeout: 3 * time.Second},
//		Media:         media,
//		Cluster:       clusterNode,              // *cluster.Node; nil for a single SFU
//	})
//	if err != nil { ... }
//	defer srv.Close()
//	admin, err := signaling.NewAdminHandler(clusterNode, signaling.AdminConfig{
//		NodeName: "node1@10.0.0.1", Channels: srv, Token: os.Getenv("ADMIN_TOKEN")})
//	mux := http.NewServeMux()
//	mux.Handle("/signaling", srv)
//	go http.ListenAndServe(":5000", mux)
//	go http.ListenAndServe("127.0.0.1:3000", admin)
//
// The server closes its connections by itself when clusterNode leaves the
// majority (see Admission).
//
// A session that ends on an error (close code 4400 and above, but 4503)
// is logged at Info, rate-limited per close code since a client causes it
// at will: 5 lines of a code at once, then one per 10 seconds, the next
// one with suppressed=N (internal/lograte). Others are logged at Debug.
//
// Benchmarks and their figures are in README.md.
//
// # Files
//
//   - doc.go — this overview.
//   - config.go — Config, its defaults and validation.
//   - server.go — Server: New, Close, ServeHTTP (one session per
//     WebSocket), and the per-channel bookkeeping (claim and release in the
//     cluster, served counts, the published load).
//   - operations.go — the channel operations on this node's connections
//     (Connections, Disconnect..., Push..., DisconnectAll) and
//     ConnectionInfo with its JSON.
//   - session.go — one session: its state, its event queue, run (the end:
//     close handshake, data channels, media), the reader and the writes.
//   - connect.go — the steps from connect to the offer: handle and the
//     steps it calls in order, redirects, placement's helpers.
//   - admission.go — the rules placement alone cannot hold: a slot per
//     connection (max_connections as a hard limit) and the majority (the
//     drop, and the check where a connection becomes served).
//   - loop.go — an offered connection's loop: answers, candidates, pings,
//     re-offers, notify, push, the switch to data-channel signaling.
//   - media.go — Media and MediaConn, the media side as the server sees it.
//   - cluster.go — Cluster, what the server needs of the cluster layer.
//   - memcluster.go — MemCluster, an in-memory Cluster.
//   - auth.go — the auth hook: AuthRequest, AuthResult, AuthFunc, Webhook.
//   - admin.go — the admin API: targets, DecodeAdminRequest,
//     NewAdminHandler, the cluster operations.
//   - admin_cluster.go — channel operations across the nodes holding a
//     channel: scope, routing (307), asking the peers, merging the answers.
//   - webhook_events.go — Event, the events the server emits to
//     Config.Events and where (connection.created at the first answer,
//     .destroyed / .failed at the end, session.created / .destroyed on the
//     one node whose claim created, or whose release ended, the session).
//   - webhook.go — EventWebhook: the EventSink that POSTs events with
//     Sora's bodies from a bounded queue (retries, backoff, timeout, drops
//     counted), and sends connection.updated on an interval.
//   - stats.go — the server's counters (ServerCounters), its connections
//     by role for metrics (ConnectionCounts, allocation-free), and the
//     stats answers' types (StatsReport, ConnectionStatsReport,
//     StatsProvider).
//   - stats_admin.go — the stats targets of the admin API: this node's
//     answer, or every node's with "cluster": true (or Sora's "local":
//     false; failed_nodes and 502 when some fail), and GetLicense.
package signaling
