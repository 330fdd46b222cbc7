// Command load is a load generator for any signaling server that speaks the
// Sora wire (a Shoal node, or Sora itself), in the manner of LiveKit's
// `lk load-test`: P publishers and S subscribers join one channel through
// the Go signaling client (signaling/client, pion peer connections); each
// publisher sends synthetic video (VP8 or H.264) and Opus audio at set bit
// rates, each subscriber receives every publisher's tracks.
//
//	go run ./examples/load -url ws://127.0.0.1:5000/signaling \
//		-publishers 1 -subscribers 25 -duration 20s -server-pid $(pidof shoal)
//
// The media is generated, not encoded: frames of the size the bit rate
// gives, at -fps, packetized by pion's payloaders (VP8 with picture ids,
// H.264 with STAP-A and FU-A), behind valid headers (a VP8 keyframe's tag
// and start code, an H.264 keyframe's SPS, PPS and IDR slice), so that a
// server's keyframe logic sees real keyframes. A publisher sends a keyframe
// first, every -keyframe-interval, and on every PLI or FIR it receives.
//
// While it runs, a progress line goes to stderr once a second: elapsed
// time, phase (joining, warmup, measuring), connections joined, packets
// delivered per second and loss over the last second, and with -server-pid
// the server's CPU use. At the end a summary goes to stdout (-json for
// JSON): join time p50 and p99 (connect sent to peer connection
// connected), first media p50 and p99 (to the first packet of every
// track), delivered packets per second and loss over the measured window
// (loss from the subscribers' sequence numbers), the server's CPU time per
// delivered packet (with -server-pid: user plus system time from
// /proc/PID/stat, in 10 ms ticks, so measure long enough), the keyframes
// sent and asked for, and the load average.
//
// Flags:
//
//	-url                signaling URLs, comma-separated (default ws://127.0.0.1:5000/signaling)
//	-channel            channel_id (default load)
//	-publishers         sendonly connections (default 1)
//	-subscribers        recvonly connections (default 10)
//	-duration           measured window (default 10s)
//	-warmup             run before the window, after every subscriber receives every track (default 2s)
//	-media-timeout      longest wait for that (default 20s)
//	-video-codec        VP8, H264 or none (default VP8)
//	-video-kbps, -fps   video bit rate per publisher and frame rate (default 500, 30)
//	-keyframe-interval  periodic keyframes; 0 for only on request (default 2s)
//	-audio, -audio-kbps Opus audio and its bit rate (default true, 32)
//	-join-concurrency   connections joining at once (default 10)
//	-loopback           loopback candidates only: true, false, auto (default auto: when every URL is loopback)
//	-server-pid         a local server's PID, for CPU per delivered packet
//	-quiet, -json, -v   no progress line; JSON summary; log warnings
//
// # Files
//
//   - main.go: the flags and the output.
//   - load.go: the run: joining, the progress line, the window, the
//     summary.
//   - media.go: the synthetic VP8, H.264 and Opus frames and the
//     publishers' writers and keyframe requests.
//   - stats.go: what subscribers receive (packets and sequence numbers),
//     percentiles, /proc/PID/stat and /proc/loadavg.
//   - load_test.go: a run against a Shoal node in the test's process.
//   - server/: the servers to measure in a process of their own (a Shoal
//     node, a bare pion forwarder); figures.sh runs the tool against them.
package main
