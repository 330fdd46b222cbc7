// Package client is a Go signaling client for Shoal nodes (and for any
// Sora-compatible signaling server). It behaves like Sora's published
// JavaScript SDK: it opens several signaling URLs at once and keeps the
// first that opens, sends connect, follows redirects (with a hop limit the
// SDK lacks), answers the server's offer and re-offers with a pion peer
// connection, trickles its candidates, answers ping with pong, and hands
// notify and push messages to the caller. The messages it sends and reads
// are the types of package signaling/wire, the ones the server uses; it
// does not import the server.
//
// # Usage
//
//	c, err := client.Connect(ctx, client.Config{
//		URLs:      []string{"ws://a:5000/signaling", "ws://b:5000/signaling"},
//		ChannelID: "room",
//		Role:      wire.RoleSendrecv,
//		Tracks:    []webrtc.TrackLocal{audioTrack, videoTrack},
//		OnNotify:  func(n client.Notify) { ... },
//		OnPush:    func(p client.Push) { ... }, // the admin API's PushChannel, PushConnection, ...
//	})
//	if err != nil { ... } // a *client.CloseError if the server refused
//	defer c.Close()
//	// c.PC is connected; c.ConnectionID, c.URL, c.Redirects
//
// Connect returns once the peer connection is connected. Close sends
// disconnect, waits for the server to close the socket, and closes the peer
// connection.
//
// # Files
//
//   - doc.go — this overview.
//   - client.go — Config, Connect (open the URLs, connect, follow
//     redirects), Conn (answer offers and re-offers, trickle candidates,
//     read the server's messages, Close), and LocalAPI for tests and demos.
package client
