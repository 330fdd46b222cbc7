// Package testutil holds helpers shared by Shoal's tests: a *slog.Logger that
// writes to t.Log, Eventually for conditions reached asynchronously, a
// goroutine-leak check, and distinct loopback addresses and ports for
// multi-node tests on one machine. The pion API of the tests' WebRTC
// clients is in the subpackage pionapi, apart so that tests without WebRTC
// do not build pion.
//
// Usage:
//
//	func TestThreeNodes(t *testing.T) {
//		testutil.CheckLeaks(t) // first, so its check runs after every other cleanup
//		log := testutil.Logger(t)
//		ip := testutil.LoopbackIP(t)      // e.g. 127.83.12.7, unique in this process
//		port := testutil.FreePort(t, ip)  // free for both TCP and UDP
//		...
//		testutil.Eventually(t, func() bool { return n.Ready() }, 5*time.Second, "node ready")
//	}
package testutil
