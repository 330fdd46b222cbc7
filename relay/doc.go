// Package relay forwards the audio, video and messages of channels that span
// several nodes of a cluster, both ways, with keyframe requests and loss
// recovery across the hop (docs/relay.md). Each pair of nodes shares one
// link, multiplexing every relayed channel; the fan-out to subscribers
// happens on the receiving node, so each packet crosses each link once.
//
// # What a link is
//
// A link is a TLS 1.3 control stream over TCP plus SRTP datagrams over UDP,
// both on one port per node (Config.ListenAddr, DefaultPort 49020, in the
// cluster's 49010–49020 range).
//
//   - Authentication: every node derives the same ed25519 key and
//     self-signed certificate from the cluster key (HKDF-SHA256). Both ends
//     present it and accept only a peer whose key is the same, so a process
//     without the cluster key cannot finish a handshake
//     (Stats.HandshakeFailures counts the attempts).
//   - Media keys: each direction of each control connection gets its own
//     SRTP master key (AEAD_AES_128_GCM), derived by HKDF from the cluster
//     key, the TLS exporter of that connection, a nonce from each end and
//     the direction's node names. Datagrams that fail SRTP authentication or
//     replay checks are dropped and counted (LinkStats.AuthFailures); those
//     from an address that is no live peer's are dropped and counted too
//     (Stats.UnknownSource).
//   - Frames: kind, flags, channel id, track id, payload (see Frame). RTP
//     packets, NACKs and pings travel as datagrams (the relayed RTP packet,
//     header included, is inside the encrypted payload); channel and track
//     announcements, messages and keyframe requests travel on the control
//     stream, in order.
//
// The node whose name sorts first dials; the other accepts. A broken link
// (closed connection, or a control stream silent for LinkTimeout) is dialled
// again with jittered exponential backoff between ReconnectMin and
// ReconnectMax. On resume each side announces its channels and tracks
// again: tracks that survived carry on as the same remote tracks (the SFU's
// subscribers see only the gap) and a keyframe is requested for each; tracks
// that ended meanwhile are removed.
//
// Both kinds of break are tested. TestLinkBreaksAndRecovers closes the
// connection under a stream. TestLinkGoesSilentAndRecovers runs both nodes
// on a FaultNet (Config.Net) and blocks the pair instead, as a cable pulled
// without FIN or RST: control bytes and datagrams vanish both ways, dials
// go unanswered. Both ends find the link down after LinkTimeout, keep
// their remote tracks, the dialler redials with backoff while the silence
// lasts, and when it ends the link comes back by itself and the stream
// resumes on the same track with a keyframe request. On the host's network
// (Config.Net nil) nothing of the FaultNet is on the packet path.
//
// # Loss and keyframes across the hop
//
// The sending side keeps the last NACKBuffer packets of each outgoing track.
// The receiving side watches sequence numbers per track and NACKs gaps of
// up to 64 packets; the sender answers from its buffer (FlagRetransmit).
// Keyframe requests of a remote track's subscribers are coalesced on the
// receiving node: at most one per KeyframeInterval (500 ms) per track
// crosses the link, however many subscribers ask.
//
// # Transport choice, measured
//
// Two transports were considered: QUIC (quic-go datagrams), or SRTP over
// UDP with a TLS control stream. Both were measured on this project's dev VM (2 vCPU,
// shared, Go 1.26, loopback, 1,200-byte payloads, one sender and one
// receiver, encrypted, 200,000 packets):
//
//	go test -run '^$' -bench Transport -benchtime 200000x ./relay/
//
//	transport                      received pkts/s   allocs/pkt   B/pkt   loss
//	SRTP (pion/srtp, AES-128-GCM)       131,194            0          0     0 %
//	QUIC datagrams (quic-go v0.65)       45,539           10      4,297   4.3 %
//
// SRTP over UDP won: 2.9 times the packet rate, and it is the only one that
// can keep the per-packet path free of allocations (quic-go copies every
// datagram into a new frame on send and returns a new slice on receive, and
// its datagram queues drop under load). Messages and control need order and
// delivery, which the TLS stream gives. BenchmarkTransportQUIC stays as the
// record of the comparison.
//
// # The per-packet path
//
// LocalTrack.WriteRTP frames the packet, seals it with SRTP into a slot of
// the link's send queue (512 datagrams) and returns; a send goroutine per
// link writes the queue with sendmmsg, up to 32 datagrams per system call,
// and one receive goroutine per relay reads with recvmmsg (Linux; one
// datagram per call elsewhere). On this VM the system call is most of a
// packet's cost, so batching doubles the packets per core. On Linux, runs
// of equal-sized datagrams also go out as one message with UDP_SEGMENT
// (GSO) and come in as one buffer with UDP_GRO, cut at the segment size:
// the wire carries the same datagrams, and the kernel's per-datagram cost
// on both ends drops by more than half again. A full queue
// drops rather than blocks: a slow link never stalls the SFU's track
// readers. Nothing on this path allocates. Figures and commands are in
// README.md.
//
// # Usage
//
// The relay does not decide when a channel spans nodes: the node's wiring
// watches the cluster's channel owners and calls OpenChannel when a second
// node gets a client in a channel, and CloseChannel when the session ends.
// Local is the node's SFU; for package sfu, NewSFULocal is the adapter.
//
//	r, err := relay.New(relay.Config{
//		NodeName:   "a@10.0.0.1",
//		ClusterKey: key, // the same on every node, at least 16 bytes
//		Local:      relay.NewSFULocal(s, logger),
//		Logger:     logger,
//	})
//	if err != nil { ... }
//	if err := r.Listen(); err != nil { ... }       // binds; r.Addr() is valid from here
//	go func() { errc <- r.Serve(ctx) }()           // until ctx ends or Close: nil, or the socket error that stopped it
//	r.SetPeer("b@10.0.0.2", netip.MustParseAddrPort("10.0.0.2:49020"))
//	r.OpenChannel("sora", "b@10.0.0.2")            // relay "sora" with b, both ways
//	...
//	r.CloseChannel("sora")                         // the session ended
//	st := r.Stats()                                // per link and per channel
//
// With NewSFULocal, each relayed channel's local tracks are tapped from
// the sfu channel and its remote tracks are added to it with
// sfu.Channel.AddRemoteTrack, so subscribers cannot tell them from local
// ones; "#" messages go both ways with their sender's connection id.
//
// # Simulcast
//
// A simulcast track (sfu.TrackInfo.Simulcast) is relayed as one track per
// layer ("<id>~r0", "~r1", "~r2", with TrackInfo.Layer and Group), each
// with its own sequence numbers, loss recovery and keyframe requests; the
// receiving node's SFULocal joins a Group's layers into one sfu track again.
// Only the layers the receiving node's subscribers want cross: its sfu
// track says which (sfu.TrackWriter.OnDemand), and for each layer track
// the node sends its demand (Wanter, KindTrackDemand) to the publisher's
// node, which then skips that link for the track's packets. A track is
// wanted when it opens; a layer's demand is sent again whenever the link
// comes back, so a pause survives a break and a restarted receiver is not
// left paused. TestE2ESimulcastThroughRelay measured it in Chromium: with
// one r0 receiver across the link, 126-153 kbit/s crossed while the
// publisher sent r0 127-155, r1 295-362 and r2 836-842 kbit/s; with an r2
// receiver added, 995 kbit/s (r0 and r2).
//
// # Concurrency
//
// Every method of Relay is safe for concurrent use. Local.RelayChannel and
// the ChannelSink callbacks run on the relay's link goroutines and must not
// block. The receive goroutine only decrypts, checks sequence numbers and
// copies each packet into its remote track's queue (Config.TrackQueueLen
// slots, preallocated); each remote track has a goroutine of its own that
// calls TrackWriter.WriteRTP, so the SFU's fan-out of one track never
// waits for another's queue, and the tracks of a node spread over its
// cores. At most as many fan-outs as processors (at least two) run at
// once, each for up to 16 packets before the next waiting track's turn:
// fifty at once only contended for the SFU's locks and crowded out its
// other goroutines (BenchmarkRelayedFanOut, README.md). The price: a
// writer that blocks holds its slot, and with every slot held the other
// tracks wait (their queues fill and drop) until one returns; the receive
// goroutine never waits for a slot (TestBlockedWritersStallNoReceive).
// sfu.TrackWriter.WriteRTP does not block. A track's goroutine ends when
// it closes, before its writer's Close. A full track queue drops
// (Drops.TrackQueueFull). LocalTrack.WriteRTP allocates
// nothing and does not block on the network.
//
// # Control never lost
//
// Control frames (channel and track announcements, demand, keyframe
// requests, heartbeats) have a queue of their own on each link, written
// ahead of messages and never full: it grows only with changes of state and
// is coalesced (a heartbeat or keyframe request already waiting absorbs the
// next of its kind for the same track; a newer demand replaces the waiting
// one in place, LinkStats.ControlCoalesced). A stream that cannot write
// for LinkTimeout breaks, and the next session announces the current state
// again; so does one whose control queue reaches 65,536 frames before that
// (LinkStats.ControlOverflows). Messages have a bounded queue (Config.QueueLen); a full one drops
// them, counted. TestControlSurvivesMessageFlood floods messages while
// tracks open and close: every announcement arrives.
//
// # Drops
//
// Stats().Drops (and each LinkStats.Dropped) counts what the relay dropped,
// by reason, with atomic counters that cost nothing until read: LinkDown,
// SendQueueFull, SendFailed (media out); MessageQueueFull, NoChannel
// (messages); NoSession, BadFrame, UnknownTrack, TrackNotReady,
// TrackQueueFull, WriteFailed (media in); TooLarge. LinkStats.Drops and
// ChannelStats.Drops are totals. A metrics exporter reads Stats
// periodically; the field names are stable.
//
// # Lifecycle
//
// New checks the Config and starts nothing. Listen binds the UDP and TCP
// sockets (once; Addr is valid when it returns). Serve serves links on
// them until its context ends or Close is called, and returns nil then; a
// socket that fails under it (closed, or accepting fails) ends every link
// and Serve returns that error. Run is Listen then Serve. Close closes the
// sockets, ends every link and relayed channel and waits for Serve; calls
// after it fail with errors wrapping net.ErrClosed.
//
// # Files
//
//   - relay.go: Relay, New, the lifecycle (Listen, Serve, Run, Close) and
//     peers (SetPeer, RemovePeer)
//   - config.go: Config, its defaults and checks, FastConfig
//   - local.go: what the relay needs of the local SFU (Local, ChannelSink,
//     TrackWriter, KeyframeRequester)
//   - sfulocal.go: SFULocal, the Local of package sfu
//   - channel.go: relayed channels (OpenChannel, CloseChannel,
//     SendMessage) and local tracks (AddLocalTrack, LocalTrack)
//   - link.go: a link to one peer, its dial loop and backoff, and the
//     session that serves one connection of it
//   - handshake.go: dialling, accepting, and the TLS handshake, hellos and
//     SRTP keys of a new connection
//   - control.go: the control stream (announcements, messages, keyframe
//     requests, heartbeats): the control queue, never dropped and
//     coalesced, and the bounded message queue behind it
//   - datagram.go: the media path: sealing and sending datagrams, the
//     receive goroutine, NACK answers
//   - inbound.go: tracks a peer relays to this node (remote tracks), gap
//     detection, keyframe coalescing, and each track's queue and dispatch
//     goroutine
//   - frame.go: the frame format and its payloads (Frame, TrackInfo,
//     Message)
//   - keys.go: key derivation from the cluster key
//   - ring.go: the per-track buffer that answers NACKs
//   - stats.go: Stats, LinkStats, ChannelStats, Drops
//   - health.go: LinksDown, which links are down and since when
//   - net.go: Network, the host's network (Config.Net's default) and
//     binding both sockets on one port
//   - faultnet.go: FaultNet, the network for tests that pulls cables
//   - batch.go: reading and writing datagrams in batches (sendmmsg,
//     recvmmsg, GSO, GRO on Linux), with internal/udpbatch
package relay
