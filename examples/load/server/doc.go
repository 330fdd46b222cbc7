// Command server runs what examples/load measures, in a process of its own
// so that its CPU time is the server's alone: a single Shoal node (cluster
// off, the SFU on one UDP port), or a bare pion forwarder that speaks just
// enough of the Sora signaling wire for the load tool.
//
//	go run ./examples/load/server -impl shoal -addr 127.0.0.1:5000
//	go run ./examples/load/server -impl pion -addr 127.0.0.1:5000
//
// -impl shoal: a shoal.Node with every connect allowed, its SFU on
// -udp-port (the UDP mux) on 127.0.0.1, batched sends unless -batch=false,
// fan-outs spread above -spread-above subscribers (0: the default, 20; -1:
// never), with its downlink congestion control unless -cc=false; with
// -stats-every it prints what the SFU paced, dropped and batched
// (sfu.Stats, MuxStats) to stderr that often.
//
// -pprof (either impl) serves net/http/pprof at /debug/pprof/ on the same
// address: /debug/pprof/profile for a CPU profile, /debug/pprof/trace for
// an execution trace (which goroutine wakes which, system calls, the
// scheduler's handoffs), e.g. curl -o t.out
// 'http://127.0.0.1:5000/debug/pprof/trace?seconds=3' during a run, then
// go tool trace t.out.
//
// -impl pion: bare pion v4 with its default codecs and interceptors (NACK,
// RTCP reports, TWCC, stats), every peer connection on its own UDP socket
// (pion's default), loopback candidates only. A sendonly connection gets an
// offer with a recvonly audio and video m-line (Opus and VP8 only); each
// track it sends is forwarded by one goroutine reading the TrackRemote and
// writing every packet to one TrackLocalStaticRTP per recvonly connection
// (the plain pion fan-out). A recvonly connection gets the tracks of the
// channel's publishers connected before it (no re-offers: join the
// publishers first, as the load tool does). PLI and FIR from a subscriber
// go to the publisher. No notify, no data channels, no ping.
//
// Ctrl-C or SIGTERM stops it. examples/load/figures.sh runs it against the
// load tool for the figures in sfu/README.md.
//
// # Files
//
//   - main.go: the flags, the Shoal node, the HTTP server.
//   - bare.go: the bare pion forwarder and its signaling.
//   - server_test.go: the bare forwarder through the Go signaling client.
package main
