// Package sfu is the media core of a Shoal node: a minimal selective
// forwarding unit on pion/webrtc v4.
//
// Clients join channels (rooms named by channel_id) as sendrecv, sendonly or
// recvonly connections. Every connection receives the audio and video of
// every other connection of its channel, and the messages they send on
// messaging data channels (labels starting with "#"). The server is the
// offerer, as Sora's signaling protocol requires: Join returns an
// offer with all the server's candidates inside; the client's upstream audio
// and video are the first audio and first video m-lines; each forwarded
// track is a sendonly m-line whose a=msid stream id is the publishing
// connection's id; when tracks come or go the connection gets a re-offer
// (one outstanding at a time, closing a client that does not answer within
// Config.AnswerTimeout), and a leaving publisher's m-lines go inactive.
// Once the client has answered an offer that carries an m-line inactive, a
// later track of the same kind may reuse it: same mid, a new a=msid and a
// new SSRC, and a sender made by pion's peer connection (so it has its
// interceptors: sender reports, RTX). Config.MLineReuse says which: ReuseOnce
// (the default) takes only m-lines carried inactive in exactly one offer,
// which every client handles; ReuseAny takes any, so a connection's SDP
// holds its upstream m-lines plus as many forwarded ones as it ever had
// tracks at once, but a pion v4.2.26 answerer (signaling/client included)
// gets no media on a reused m-line that two or more offers carried
// inactive; ReuseNever gives every track a new m-line. In a test of 8
// publishers coming and going, a recvonly subscriber ended with 4 m-lines
// with ReuseAny, 11 to 15 with ReuseOnce and 18 with ReuseNever
// (TestMLinesBoundedUnderChurn). The server opens every data
// channel in-band (Offer.DataChannels lists them, for offer.data_channels)
// and never closes one on its own: the SDK disconnects when any closes.
//
// Codecs: a publisher's upstream m-lines offer the codec its connect asked
// for first (JoinRequest.AudioCodec, VideoCodec; VP8, VP9, H264, AV1, H265,
// Opus), so the client sends it; its bit_rate becomes b=AS and b=TIAS on
// them. A forwarded m-line offers the publisher's codec first and still
// lists the others. A subscriber whose connect SDP (JoinRequest.ClientSDP)
// does not list a publisher's codec gets no m-line for that track; one
// whose answer leaves the codec out keeps a silent m-line for it. Either
// way it still sees the publisher in notify, and its other tracks flow.
//
// Simulcast: a publisher that joins with JoinRequest.Simulcast is offered
// its video m-line with the receive rids r0, r1, r2 (a=rid, a=simulcast)
// and Offer.Encodings for offer.encodings (SimulcastEncodings: with
// scalabilityMode L1T3 for VP9 and AV1, without which Chromium sends one
// scalable stream); what it sends is one track of
// the channel with up to three layers. Each subscriber receives one layer:
// JoinRequest.SimulcastRid (default r0), changed at run time with
// Connection.SetSimulcastRid; "none" stops the video; a named layer is a
// ceiling the congestion control stays under, and "auto" (RidAuto) leaves
// the layer to it. A layer that does not arrive gives the nearest lower
// one, else the nearest higher one. A switch happens on a keyframe of the
// new layer, asked for at once, and the subscriber's stream goes on
// without a seam: same SSRC, the next sequence number, a timestamp
// advanced by the time elapsed, the next VP8 or VP9 picture id and
// TL0PICIDX. ConnectionHooks.SimulcastSwitched reports each change: the
// first layer's start (from none), each switch, a stop (to none) and a
// restart, with the layers the congestion control allows. Sora's API names
// no temporal layer: every temporal layer of the chosen layer is forwarded,
// unless the congestion control needs fewer (below).
//
// A track of a channel is a source: a local publisher, or a remote track
// injected with Channel.AddRemoteTrack (the relay). Subscribers cannot tell
// them apart. Channel.Observe hands local tracks, messages and connection
// events to the relay; Channel.InjectMessage brings remote messages in. A
// simulcast track crosses the relay by layer: the relay taps each layer
// (TrackTap.SetLayerSink, RequestLayerKeyframe) and feeds the remote
// track's layers (TrackWriter.AddLayer, WriteLayerRTP); TrackWriter.OnDemand
// says which layers the subscribers of the node want, so that the others
// need not cross.
// Keyframe requests (PLI/FIR) of subscribers reach the source's publisher,
// coalesced and rate-limited (Config.KeyframeInterval); a new subscriber
// triggers one.
//
// Downlink congestion control (congestion.go, twcc.go, bwe.go, pacer.go,
// probe.go):
// each connection stamps a transport-wide sequence number on every packet it
// sends (one interceptor per peer connection, writing into the packet's
// header extensions without allocating) and keeps what it sent (sequence
// number, time, size) in a ring of 512 (4 KB) that doubles, up to 2048,
// when feedback comes more than half of it late. The subscriber's
// transport-cc feedback, parsed in place, feeds a send-side estimator built
// as GCC is: delay based (packets grouped by 5 ms of send time, the
// trendline filter over 20 groups, an adaptive overuse threshold, AIMD
// cutting to 0.85 of the acknowledged rate) and loss based (over 10% loss
// it drops, under 2% it may grow; the ratio is taken over 20 packets at
// least, as libwebrtc does). A client's REMB caps the estimate, and
// is the estimate of a client without transport-cc. Every 200 ms the
// connection shares the estimate among its tracks: audio first, the rest
// evenly among its simulcast tracks, each getting the highest layer that
// fits (Connection.EstimatedBitrate), measured as a bitrate smoothed over
// seconds (a keyframe's second would make the lowest layer look far off).
// Under its lowest layer a VP8, VP9 or AV1 track (browsers send VP8
// simulcast with three temporal layers, L1T3, and VP9 and AV1 with the
// L1T3 their encodings ask for) has steps of fewer frames: that layer's temporal layers 0 and 1
// (half its frames), then 0 alone (a quarter), as LiveKit and mediasoup
// do. The forwarder drops whole frames of the temporal layers above the
// step, at once going down and from a layer sync frame (VP8's Y, VP9's U;
// AV1: the next layer's next frame) going up, and moves the subscriber's sequence numbers (and VP8 picture
// ids; VP9's stay as sent) so that its stream goes on without a gap
// (dropTemporal); a packet that arrives out of order after a drop or a
// padding probe gets the number of its place (snRanges). Down at
// once when far off, after 3 s when a little; up one step at a time once
// the next fits for 2 s (a layer with a quarter to spare; longer after
// tries that failed); only when the share stays under the lowest step for
// 3 s does the video pause while audio flows, and the lowest step is tried
// again after 4 s, then twice as long each time. H.264 and H.265 tracks
// keep every temporal layer (see docs/media.md). The estimate grows while
// what is sent gets through, even when less is sent than it allows. When
// the tracks want more than the estimate (a paused video, or the next layer
// up), the connection probes, as LiveKit's probe clusters and mediasoup's
// probation do: for half a second it tops the media up to 1.5 times the
// estimate (at most what the step needs) with padding-only packets on a video
// track's RTX stream (for a subscriber without RTX, on a simulcast track's
// media stream, taking numbers of its rewritten sequence), paced in 10 ms
// slices; it stops as soon as the estimate drops, and waits twice as long
// after each probe that failed.
// A packet that arrives twice (a browser pads a video track, each
// simulcast layer and a track without layers alike, with RTX copies of
// recent packets) is forwarded once: a duplicate under the same number is
// dropped by the subscriber's SRTP replay check, which transport-cc
// reports as loss.
//
// Pacing: as LiveKit (its default pacer hands packets to a send goroutine
// without holding them to a rate) and mediasoup (which paces only its
// probation packets) do, media is not held back to a rate: the layer
// choice keeps the rate within the estimate, and a queue that a track
// without layers overran would only add delay. What is bounded is the
// keyframe burst: a keyframe's packets leave at once while a token bucket
// filled at 2.5 times the estimate has tokens (20 ms of it, at least
// 9.6 KB), and the rest waits in a FIFO of at most 128 packets that is
// sent as the bucket refills; video that comes meanwhile goes behind it
// (no reordering), audio never waits, and a full FIFO drops its oldest
// packet (ConnectionStats.PacerDropped; a NACK still gets it from the
// source's buffer). Nothing is paced before the first estimate.
//
// Config.DisableCongestionControl turns all this off (abs-send-time is
// still stamped). TestCongestionSettlesAndRecovers (pion's vnet, a
// 300 kbit/s token bucket) measured settling on r0 in 8.4 and 10.4 s and,
// with SFU_TEST_LONG=1, climbing back to r2 in 16.7 and 14.6 s once the
// limit is lifted (two runs, load average 12 to 15; it passes under -race
// too). With a Chromium subscriber (the root package's
// TestE2ENetnsSimulcastCongestion) it settles on r0 in 3 to 7 s, keeps
// decoding r0's lower temporal layers under the limit, and climbs back to
// r2 in 20 to 30 s: see README.md.
//
// Retransmission: NACKs from a subscriber are answered by the SFU from one
// buffer per source stream (a track, or a simulcast layer: the last 512
// packets within 512 KB) shared by all its subscribers, as RTX (RFC 4588)
// when the subscriber negotiated it, else as the packet itself; a packet is
// resent to one subscriber at most 4 times, spaced by its round-trip time,
// and what a subscriber is resent stays within a tenth of what it is
// forwarded (plus two packets per 500 ms), so that a congested link is not
// loaded further.
// A subscriber of a simulcast track keeps what it was sent: 512 sequence
// numbers mapped to the buffer's packets (8 KB), which also undoes a
// switch's rewrite; one of a track without layers is sent the source's
// numbers and keeps only the resend counts of 512 packets (3 KB). pion's own NACK responder, which copies the last 1024 packets
// for every subscriber, is not used. Packets a publisher's uplink lost are
// asked of it by pion's NACK generator; its repairs (RTX included) are
// fanned out to every subscriber like the rest. For a relayed track the
// NACK is answered on the subscriber's node too; only a packet that node
// never received is asked of the track's origin (RetransmitRequester), and
// what comes back goes to every subscriber there.
//
// Stats: Connection.Stats and SFU.Stats give per connection and per track
// packets, bytes, loss, jitter, round-trip time, NACKs and retransmissions,
// and the simulcast layer forwarded.
//
// Messages: a "#" message goes to every other connection of the channel
// that has the label, through a queue per receiving connection
// (Config.Messages.QueueLen, 256) that one goroutine of the connection
// sends from, with no channel lock held, waiting while a data channel has
// Config.Messages.BufferedMax (1 MiB) buffered until pion says it drained
// to half. A client that reads slowly, or not at all, fills its queue: what
// comes next for it is dropped and counted, or, with
// Config.Messages.CloseSlow, the connection is closed (ErrSlowConsumer).
// The other receivers never wait for it, and the server holds at most its
// queue and BufferedMax for it: TestSlowMessageReaderIsBounded passes 24 MB
// of messages by a client that never reads, and the heap grows about 6 MB,
// none of it in the second half (39 MB before the queues, 19 MB of it in
// the second half). Every receiver and observer of a message shares one
// buffer of it: queueing allocates nothing per receiver (one buffer per
// message for the receivers that want the sender id header).
// Connection.Send and SendText (signaling, notify, push) fail with
// ErrSlowConsumer, and drop the message, while the data channel has four
// times BufferedMax buffered.
//
// Drops: SFU.Drops counts, by reason, every message and packet the SFU
// dropped (a receiver's queue full, a data channel not open or refusing a
// message, a slow consumer closed, packets written to a removed track or
// not parsing, packets a subscriber's sender refused, dropped from a full
// pacer queue or a spread fan-out's full ring, or refused by the system in
// a batched send), with atomic counters read without a lock; the names are
// stable, for a metrics exporter. Several observers may tap one track: each
// TrackTap has its own sink.
//
// Direct send (direct.go, sr.go): with the UDP mux (Network.UDPPort) and
// congestion control on, unless Config.DisableDirectSend, a connection
// whose DTLS is done sends its media without pion's per-sender chain
// (interceptors, SRTP session, ICE connection): the fan-out, the pacer,
// RTX and probes write to the same writer, which stamps the transport-wide
// sequence number and abs-send-time, encrypts with an SRTP context of the
// connection's own (keys derived from the DTLS key log and ServerHello, as
// pion derives them; AES-GCM and AES-CM-HMAC-SHA1 profiles) into a reused
// buffer, and writes to the mux socket, batched, addressed to the selected
// ICE pair's remote candidate, allocating nothing. A connection where the
// SFU is the DTLS client, or whose pair is not a host UDP pair of the mux,
// stays on pion's path (SFU.MuxStats counts both kinds). The sender
// reports are the SFU's own, one compound RTCP packet a second per
// connection, counting what either path sent.
//
// Direct receive (directrecv.go): the mux socket pion's UDP mux reads is
// wrapped, and a datagram from the remote address of a connection on the
// direct send path is taken on pion's reading goroutine when it is SRTCP:
// decrypted with the connection's remote SRTP context (derived with the
// sending one) and handled there, without pion's four further goroutine
// hand-offs: transport-cc feedback to the estimator, REMB to the
// downlink, NACKs, PLIs, FIRs and receiver reports to the down track of
// their SSRC, allocating nothing. Compounds led by a sender report (a
// client that also publishes), STUN (which keeps ICE alive), DTLS, other
// addresses and SRTP no upstream hook takes go to pion unchanged; what
// fails authentication, the replay check or parsing is dropped and
// counted (MuxStats.RecvDropped, Drops.MuxRecvInvalid), never logged.
//
// A publisher's RTP takes that path too (recvswitch.go): the innermost
// interceptor wraps each remote stream's reader, and once pion has set the
// stream up (its pump reads it; a simulcast layer's rid is known) and the
// connection is on the direct path, the stream switches, on the pump's
// goroutine, after a packet pion decrypted: the SRTP rollover counter
// followed through pion's packets is handed to the remote context (only at
// a sequence number 1024 or more from a wrap; a stream first seen numbered
// below 64 may have wrapped unseen and stays on pion's), the mux reader
// then takes the stream's SSRC and puts the decrypted packets in the
// stream's ring of reused slots, and the pump, after reading pion's
// stream for 20 ms more
// (what pion already had), reads the ring: one goroutine hand-off per
// packet instead of four. pion's receive interceptors (NACK generation,
// receiver reports, transport-cc feedback, RTX in the track) still read
// every packet. A full ring drops (Drops.UpstreamQueueFull; the reader
// never waits); RTX repair streams stay on pion's path;
// MuxStats.UpstreamSwitched and UpstreamPackets count the rest. A
// connection taken off the direct path (its selected pair no longer on
// the mux) has its streams read from pion's again, and switched again
// once it is back.
//
// The per-packet fan-out allocates nothing: one header parse per packet,
// then the payload type and SSRC are rewritten for each subscriber's sender.
// Header extensions are dropped, since their ids were negotiated with the
// publisher, not with the subscriber, but for the audio level
// (ssrc-audio-level) of audio packets, which a subscriber that negotiated it
// gets under its own id; abs-send-time and the transport-wide sequence
// number are stamped on every packet as it leaves (twcc.go), retransmissions
// included.
//
// # Usage
//
//	s, err := sfu.New(sfu.Config{Logger: logger, MaxConnections: 500,
//		Network: sfu.NetworkConfig{UDPPort: 50000, NAT1To1IPs: []string{"203.0.113.10"}}})
//	...
//	defer s.Close()
//
//	// From the signaling layer, on connect:
//	conn, err := s.Join(ctx, sfu.JoinRequest{
//		ChannelID: "room", ConnectionID: id, Role: sfu.RoleSendrecv,
//		Audio: true, Video: true,
//		DataChannels: []sfu.DataChannelSpec{{Label: "#chat"}},
//		Hooks: sfu.ConnectionHooks{
//			ReOffer:            func(sdp string) { /* send re-offer */ },
//			Event:              func(ev sfu.ConnectionEvent) { /* send notify */ },
//			DataChannelMessage: func(label string, data []byte, text bool) { /* re-answer, candidate, disconnect */ },
//		},
//	})
//	offer := conn.Offer() // send offer{sdp, connection_id, mid, data_channels}
//	err = conn.SetAnswer(answerSDP)  // answer and every re-answer
//	err = conn.AddICECandidate(cand) // trickled candidates
//	err = conn.SendText(sfu.LabelNotify, notifyJSON)
//	<-conn.Done()                    // or conn.Close() on disconnect
//
//	// From the relay:
//	ch, _ := s.Channel("room")
//	w, _ := ch.AddRemoteTrack(info, requester) // w.WriteRTP(pkt) per packet; w.Close()
//	stop, _ := ch.Observe(sfu.Observer{TrackAdded: ..., MessageReceived: ...})
//
//	// Node controls:
//	s.Counts(); s.DisconnectAll(); s.CloseChannel("room")
//
// pion's logs go to Config.Logger with a "pion" attribute naming the scope.
// Config.Net runs ICE, the UDP mux included, on another network than the
// host's: tests use pion's vnet (TestVirtualNetwork). Benchmarks and their
// figures are in README.md.
//
// # Files
//
//   - config.go: Config, NetworkConfig, Reuse, LocalConfig and their checks.
//   - sfu.go: the SFU: New, the pion API and UDP mux built by the first Join,
//     Channel, CloseChannel, DisconnectAll, Counts, Close.
//   - mediaengine.go: the codecs, RTP header extensions, interceptors and
//     SRTP protection profiles (AES-128-GCM preferred) every connection
//     negotiates.
//   - codec.go: codec choice: connect's codec_type and bit_rate, what a
//     subscriber is offered and what it cannot decode.
//   - nackbuffer.go: the shared packet buffer of a source stream and a
//     simulcast subscriber's sequencer.
//   - rtx.go: answering NACKs (RTX or plain), reading subscribers' RTCP
//     (keyframe requests, NACKs, receiver reports), the RTX gate
//     interceptor.
//   - stats.go: ConnectionStats, TrackStats, Connection.Stats, SFU.Stats
//     and the counters behind them.
//   - channel.go: Channel: its connections, sources and observers; events,
//     message delivery, AddRemoteTrack, InjectMessage, Observe.
//   - connection.go: Connection, JoinRequest, ConnectionHooks, Role; Join,
//     the accessors and Close.
//   - negotiation.go: the connection's offers, re-offers and their answer
//     timeout, SetAnswer, AddICECandidate.
//   - upstream.go: the tracks a connection publishes: its recvonly m-lines
//     and the pump into the channel.
//   - downstream.go: the tracks a connection receives: sendonly m-lines,
//     the reuse of inactive ones, RTCP (keyframe requests) from subscribers.
//   - datachannel.go: DataChannelSpec and the labels; opening the data
//     channels, Send, SendText, CloseDataChannels, queueing messages.
//   - dcqueue.go: MessageConfig and each connection's outbox: the bounded
//     queue of its messages and the goroutine that sends them, minding
//     BufferedAmount.
//   - drops.go: Drops and SFU.Drops, the drop counters by reason.
//   - fanout.go: source and downTrack, the allocation-free per-packet
//     fan-out and keyframe request coalescing.
//   - simulcast.go: simulcast's API: the rids, offer.encodings, the switch
//     event, SetSimulcastRid and SimulcastRid, the offer's rid lines.
//   - layer_source.go: a simulcast track's layers: which are active, which
//     the subscribers want (OnDemand), and the write path that picks each
//     subscriber's layer and fans a packet out.
//   - layer_forward.go: a subscriber's layer and the switch to another,
//     with its rewrite of sequence numbers, timestamps and picture ids;
//     the VP8, VP9 and AV1 temporal layer filter (dropTemporal).
//   - layer_ranges.go: the offsets of a layer's earlier sequence numbers
//     and the last frames' decisions, for packets out of order (snRanges,
//     frameLog).
//   - congestion.go: downlink congestion control: sharing each
//     connection's estimate among its tracks, the ladder of steps of each
//     simulcast track (the lowest layer's temporal layers, then the
//     layers) and the step it fits, REMB.
//   - ccclock.go: the congestion clock, one goroutine per SFU that runs
//     every connection's sharing of its estimate and its padding probes
//     (one timer for the node instead of a ticker per connection).
//   - lazyrecv.go: pion's NACK generator and receiver reports started
//     only for a connection that receives media (their tickers, 10 Hz and
//     1 Hz, are not run for subscribers).
//   - twcc.go: the interceptor that stamps transport-wide sequence numbers
//     and abs-send-time on what a connection sends, the ring of what was
//     sent, the reading of transport-cc feedback.
//   - twcc_feedback.go: the allocation-free transport-cc feedback parser.
//   - bwe.go: the send-side bandwidth estimator (delay and loss based).
//   - pacer.go: the pacing of keyframe bursts, and why only those.
//   - probe.go: probing with padding on the RTX stream when the tracks
//     want more than the estimate.
//   - layer_keyframe.go: what the layer switch reads in a video payload:
//     keyframe starts (VP8, VP9, H.264, H.265, AV1), VP8 and VP9 picture
//     ids, temporal layer indices (VP8, VP9, AV1) and layer sync bits.
//   - source.go: what the relay sees: TrackInfo, TrackWriter, TrackTap,
//     Observer, Message, ConnectionEvent, KeyframeRequester.
//   - fanout_pool.go: spreading a track's fan-out over worker goroutines
//     above Config.SpreadAbove subscribers.
//   - mux.go: the UDP mux socket: its buffer sizes, its batched sends
//     (a fan-out holds it while it writes to each subscriber), MuxStats.
//   - direct.go: the direct send path: the DTLS keys seen through pion's
//     SettingEngine hooks, the SRTP context, the writer beneath every
//     down track's sends, the selected ICE pair followed.
//   - directrecv.go: the direct receive path: the mux socket as pion's
//     mux reads it, the registry of direct connections by remote
//     address, the SRTCP handling, the hook that takes publishers' SRTP.
//   - recvswitch.go: the switch of publishers' streams to the direct
//     receive path: the interceptor, the rollover counter handed over,
//     the ring each switched stream's pump reads.
//   - sr.go: the sender report interceptor that replaces pion's, counting
//     what the direct path and pion's send, and the clock, one goroutine
//     per SFU, that sends every connection's reports.
//   - queue.go: eventQueue, the per-connection and per-observer callback
//     goroutine (on internal/mailbox).
//
// In the tests, client_test.go holds the pion test client and the shared
// helpers, bench_test.go the benchmarks and vnet_test.go the run on pion's
// virtual network.
package sfu
