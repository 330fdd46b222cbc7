package sfu

import "sync/atomic"

// Drops counts what the SFU dropped on purpose or could not deliver, by
// reason, since it was made. Each is an atomic counter, added to only where
// something is dropped; reading them (SFU.Drops) takes no lock. A metrics
// exporter reads them periodically; the field names are stable.
type Drops struct {
	// MessageQueueFull: data-channel messages not queued for a receiver
	// whose queue (Config.DataChannelQueueLen) was full: a client that
	// reads slower than the channel's messages come.
	MessageQueueFull uint64
	// MessageNotOpen: data-channel messages for a receiver whose data
	// channel was not open (yet, or any more).
	MessageNotOpen uint64
	// MessageSendFailed: data-channel messages the receiver's data channel
	// refused (closing, or too large for it).
	MessageSendFailed uint64
	// SlowConsumersClosed: connections closed because their message queue
	// overflowed, with Config.Messages.CloseSlow.
	SlowConsumersClosed uint64
	// SendBufferFull: messages Connection.Send and SendText refused (the
	// signaling, notify and push channels) because the client had not
	// read four times Config.Messages.BufferedMax.
	SendBufferFull uint64
	// MediaAfterClose: RTP packets written to a track that had been
	// removed (a remote track's writer after Close).
	MediaAfterClose uint64
	// MediaInvalid: RTP packets written to a remote track that did not
	// parse, or without the layer they were written to.
	MediaInvalid uint64
	// MediaWriteFailed: RTP packets, forwarded or resent, that a
	// subscriber's sender refused (its connection closing or closed, its
	// transport not ready). The other subscribers are not affected.
	MediaWriteFailed uint64
	// PacerQueueFull: video packets dropped from a connection's full pacer
	// queue, the oldest first, or too large for it (also per connection
	// in ConnectionStats.PacerDropped). A NACK can still get them resent.
	PacerQueueFull uint64
	// FanOutQueueFull: packets a spread fan-out's worker lost for its
	// share of a track's subscribers because it was a full ring behind
	// (also MuxStats.FanOutDropped).
	FanOutQueueFull uint64
	// MuxSendFailed: datagrams the system refused in a batched send of
	// the UDP mux (also MuxStats.Failed).
	MuxSendFailed uint64
	// UpstreamQueueFull: RTP packets of a publisher's stream on the direct
	// receive path that its queue had no room for (its pump a queue
	// behind), or that came as the stream left it. A NACK can still get
	// them resent.
	UpstreamQueueFull uint64
	// MuxRecvInvalid: datagrams from the address of a connection on the
	// direct receive path that failed SRTP or SRTCP authentication or the
	// replay check, or did not parse (also MuxStats.RecvDropped).
	MuxRecvInvalid uint64
}

type dropCounters struct {
	messageQueueFull, messageNotOpen, messageSendFailed, slowConsumersClosed atomic.Uint64
	mediaAfterClose, mediaInvalid, sendBufferFull                            atomic.Uint64
	mediaWriteFailed, pacerQueueFull                                         atomic.Uint64
	upstreamQueueFull                                                        atomic.Uint64
}

// Drops returns what the SFU has dropped, by reason.
func (s *SFU) Drops() Drops {
	d := &s.drops
	out := Drops{
		MessageQueueFull: d.messageQueueFull.Load(), MessageNotOpen: d.messageNotOpen.Load(),
		MessageSendFailed: d.messageSendFailed.Load(), SlowConsumersClosed: d.slowConsumersClosed.Load(),
		MediaAfterClose: d.mediaAfterClose.Load(),
		MediaInvalid:    d.mediaInvalid.Load(), SendBufferFull: d.sendBufferFull.Load(),
		MediaWriteFailed: d.mediaWriteFailed.Load(), PacerQueueFull: d.pacerQueueFull.Load(),
		FanOutQueueFull: s.send.fanOutDropped.Load(), UpstreamQueueFull: d.upstreamQueueFull.Load(),
	}
	if bc := s.send.batch.Load(); bc != nil {
		out.MuxSendFailed = bc.Stats().Failed
	}
	if r := s.muxRecv; r != nil {
		out.MuxRecvInvalid = r.dropped.Load()
	}
	return out
}
