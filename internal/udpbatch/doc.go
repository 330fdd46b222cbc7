// Package udpbatch sends and receives UDP datagrams in batches: what a
// media server's single port needs, where one packet goes to many
// destinations and every system call costs microseconds.
//
// Conn wraps the SFU's UDP mux socket: while a fan-out holds it (Hold,
// Release) the datagrams written to it, each to its own destination, go
// out together, up to BatchLen per sendmmsg; its reads are single
// datagrams. IO is one goroutine's batch reader or writer for one peer
// (the relay's links): sendmmsg and recvmmsg, with GSO and GRO where the
// kernel has them. On Linux the sendmmsg and recvmmsg calls and Conn's
// reads are made raw (the runtime is not told of them): each is
// non-blocking (MSG_DONTWAIT), and the runtime's poller waits when the
// socket is not ready. Through the runtime's system call path a long
// batch could have its processor handed to another thread, and each read
// woke the runtime's monitor thread.
//
// Files:
//   - conn.go: Conn, its counters, the net.PacketConn methods.
//   - conn_linux.go: Conn's batches (sendmmsg) and raw reads on Linux.
//   - conn_other.go: elsewhere, the socket's own sends and reads.
//   - io.go: IO, and the one-datagram-per-call fallback.
//   - io_linux.go: IO on Linux (sendmmsg/recvmmsg, GSO, GRO) and mmsg,
//     the raw system call both types use.
//   - io_other.go: IO elsewhere.
package udpbatch
