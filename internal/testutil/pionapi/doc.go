// Package pionapi builds the webrtc.API of the pion peers that tests run
// against an SFU: the clients of the sfu and relay tests. It is a package of
// its own, apart from testutil, so that the tests of packages without WebRTC
// (cluster, affinity, signaling) do not build pion.
//
//   - pionapi.go — Local, the clients' API.
//   - closablenet.go — ClosableNet, a network for an SFU whose UDP sockets
//     a test closes under it.
package pionapi
