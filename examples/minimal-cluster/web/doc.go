// Package web is the example's web page: a small client that publishes the
// camera and microphone, shows every other participant of a channel, and
// sends and shows messages. It is plain HTML and JavaScript speaking Shoal's
// signaling protocol (docs/signaling.md), embedded in the binary: no build
// step, no CDN.
//
// Usage:
//
//	mux.Handle("/", web.Handler())          // index.html and shoal.js
//	mux.Handle("/signaling", node.SignalingHandler())
//
// The page connects to ws(s)://<its host>/signaling unless its query names
// other URLs: ?signaling=ws://a/signaling,ws://b/signaling&channel=room&auto=1.
//
// web.go holds the whole package; doc.go only this comment.
package web
