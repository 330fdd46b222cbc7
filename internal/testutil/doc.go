// Package testutil holds helpers shared by Shoal's tests: a *slog.Logger that
// writes to t.Log, Eventually for conditions reached asynchronously, a
// goroutine-leak check, distinct loopback addresses and ports for
// multi-node tests on one machine, a log buffer to assert on, calls of the
// admin API, and a headless Chromium for the end-to-end tests. The pion API
// of the tests' WebRTC clients is in the subpackage pionapi, apart so that
// tests without WebRTC do not build pion. No program may import it (the
// dependency fence checks).
//
// # Files
//
//   - testutil.go — Logger, LoggerLevel, Eventually, WaitFor, Context,
//     CheckLeaks, LoopbackIP, LoopbackIPs, FreePort.
//   - logbuf.go — BufferLogger and LogBuffer: a logger's output a test
//     reads while it is written, with Missing.
//   - admin.go — AdminPost (one admin API request) and ClusterNodes
//     (ListClusterNodes as node_name → connected).
//   - browser.go — ChromiumPath, Browser and BrowserWith: headless Chromium
//     with a fake camera and microphone (BrowserWith: inside a network
//     namespace, or with origins treated as secure).
//   - redis.go — Redis: a redis-server on a free loopback port for a test.
//   - pionapi/ — the pion API of the tests' WebRTC peers.
//
// # Usage
//
//	func TestThreeNodes(t *testing.T) {
//		testutil.CheckLeaks(t) // first, so its check runs after every other cleanup
//		log := testutil.Logger(t)
//		ips := testutil.LoopbackIPs(t, 3)     // e.g. 127.83.12.7, unique in this process
//		port := testutil.FreePort(t, ips[0])  // free for both TCP and UDP
//		...
//		testutil.Eventually(t, func() bool { return n.Ready() }, 5*time.Second, "node ready")
//	}
package testutil
