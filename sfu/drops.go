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
}

type dropCounters struct {
	messageQueueFull, messageNotOpen, messageSendFailed, slowConsumersClosed atomic.Uint64
	mediaAfterClose, mediaInvalid, sendBufferFull                            atomic.Uint64
}

// Drops returns what the SFU has dropped, by reason.
func (s *SFU) Drops() Drops {
	d := &s.drops
	return Drops{
		MessageQueueFull: d.messageQueueFull.Load(), MessageNotOpen: d.messageNotOpen.Load(),
		MessageSendFailed: d.messageSendFailed.Load(), SlowConsumersClosed: d.slowConsumersClosed.Load(),
		MediaAfterClose: d.mediaAfterClose.Load(),
		MediaInvalid:    d.mediaInvalid.Load(), SendBufferFull: d.sendBufferFull.Load(),
	}
}
