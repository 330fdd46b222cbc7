// Package wire is the signaling protocol on the WebSocket, both directions,
// as Shoal implements it: the JSON messages a client sends (connect,
// answer, re-answer, candidate, pong, disconnect) and the server sends
// (offer, re-offer, redirect, ping, notify, push, switched, close), the
// message types, the roles, the WebSocket close codes, and the decoder that
// parses and validates what a client sends. The server (package signaling)
// and the Go client (package signaling/client) both use it. The protocol is
// Sora-compatible: the Sora SDKs talk to a Shoal node unchanged. The
// protocol as a whole, with the order of messages and the close reasons, is
// described in docs/signaling.md.
//
// A client's message is untrusted input: DecodeClientMessage bounds its
// size, checks every field the server uses (channel_id, role,
// data_channels, metadata, ...) and answers anything else with a
// *ProtocolError carrying the close code and reason to send. It is fuzzed
// (FuzzDecodeClientMessage, with its corpus in testdata/fuzz).
//
// # Files
//
//   - doc.go — this overview.
//   - wire.go — message types, close codes, limits, Role, EventType,
//     ProtocolError.
//   - client.go — the messages a client sends: Connect (with MediaOptions
//     and DataChannelSpec), Answer, Candidate, Pong, Disconnect.
//   - server.go — the messages the server sends: Offer, ReOffer, Redirect,
//     Ping, Notify, Push, Switched, Close.
//   - decode.go — DecodeClientMessage and the validation of connect.
package wire
