// Package web is the example's web page: a small client that publishes the
// camera and microphone, shows every other participant of a channel, and
// sends and shows messages. It is plain HTML and JavaScript speaking Shoal's
// signaling protocol (docs/signaling.md), embedded in the binary: no build
// step, no CDN.
//
// Usage:
//
//	mux.Handle("/", web.Handler())          // index.html, shoal.js, cluster.html
//	mux.Handle("/cluster.json", web.StatusHandler(node))
//	mux.Handle("/signaling", node.SignalingHandler())
//
// The page connects to ws(s)://<its host>/signaling unless its query names
// other URLs: ?signaling=ws://a/signaling,ws://b/signaling&channel=room&auto=1.
//
// cluster.html is a live picture of the cluster: every node (mode, majority,
// connections against capacity, temporary or regular), the channels with
// the nodes holding them, and the relay links with their packet rates,
// redrawn every second from each node's /cluster.json (StatusHandler).
//
// Files: web.go (Handler, the embedded files; AdminHandler, the admin API
// at a path such as /api), status.go (StatusHandler,
// /cluster.json), index.html and shoal.js (the client page), cluster.html.
package web
