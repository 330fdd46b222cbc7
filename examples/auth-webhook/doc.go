// Command auth-webhook is a tiny auth webhook for Shoal nodes: it allows or
// denies each connect by simple rules and can set cluster_affinity for it.
//
// Shoal POSTs one JSON object per connect (signaling.AuthRequest: channel_id,
// client_id, connection_id, role, metadata, node_name, channel_connections,
// redirect, ...) and expects 2xx with {"allowed": bool, "reason": "...",
// "cluster_affinity": bool}. A timeout, a non-2xx answer or malformed JSON
// denies the connect.
//
//	go run ./examples/auth-webhook -listen 127.0.0.1:8090 -token s3cret -deny 'admin*' -no-affinity 'lecture*'
//	go run ./examples/minimal-cluster -webhook http://127.0.0.1:8090/auth
//
// Rules, in order:
//   - -deny: a channel_id matching one of these patterns is denied;
//   - -token: when set, metadata.access_token must equal it;
//   - -max-per-channel: a channel already holding this many connections in
//     the cluster is denied;
//   - cluster_affinity is false for channels matching -no-affinity, true for
//     -affinity, otherwise what the client asks in metadata.cluster_affinity
//     (if -client-affinity), otherwise unset (the node's default).
//
// Patterns are path.Match patterns ("room-*", "lecture?").
//
// main.go holds the whole package; doc.go only this comment.
package main
