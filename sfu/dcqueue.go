package sfu

// The messages a connection receives on its messaging ("#") data channels
// wait in a bounded queue of the connection, which one goroutine of the
// connection sends from, keeping each data channel's BufferedAmount under
// MessageConfig.BufferedMax. A client that reads slowly, or not at all,
// fills its queue: what comes next for it is dropped and counted
// (Drops.MessageQueueFull), or the connection is closed
// (MessageConfig.CloseSlow); nobody else waits for it, and the server holds
// at most QueueLen messages and BufferedMax bytes for it. Every receiver
// of a message shares one buffer of it: queueing allocates nothing.

import (
	"errors"
	"fmt"
	"sync"

	"github.com/pion/webrtc/v4"
)

// Defaults of MessageConfig.
const (
	DefaultMessageQueueLen    = 256
	DefaultMessageBufferedMax = 1 << 20
)

// ErrSlowConsumer: the connection was closed because it did not read its
// data channels' messages fast enough (MessageConfig.CloseSlow).
var ErrSlowConsumer = errors.New("sfu: client too slow to read its data channel messages")

// MessageConfig bounds what the SFU holds for a client that reads its
// messaging data channels slower than messages come. The zero value is
// usable.
type MessageConfig struct {
	// QueueLen is how many messages may wait for one receiving connection,
	// all its messaging data channels together. 0: DefaultMessageQueueLen.
	QueueLen int
	// BufferedMax is how many bytes a data channel may have buffered (its
	// BufferedAmount: sent to pion, not yet acknowledged by the client)
	// before the connection's queue waits for it to drain to half.
	// 0: DefaultMessageBufferedMax (1 MiB).
	BufferedMax int
	// CloseSlow closes a connection whose queue is full, with
	// ErrSlowConsumer, instead of dropping the messages that do not fit
	// (counted in Drops.MessageQueueFull).
	CloseSlow bool
}

func (m *MessageConfig) check() error {
	if m.QueueLen < 0 {
		return fmt.Errorf("sfu: Messages.QueueLen is %d; want 0 (default) or more", m.QueueLen)
	}
	if m.BufferedMax < 0 {
		return fmt.Errorf("sfu: Messages.BufferedMax is %d; want 0 (default) or more", m.BufferedMax)
	}
	if m.QueueLen == 0 {
		m.QueueLen = DefaultMessageQueueLen
	}
	if m.BufferedMax == 0 {
		m.BufferedMax = DefaultMessageBufferedMax
	}
	return nil
}

// dcSender is what the outbox needs of a data channel; *webrtc.DataChannel
// is one.
type dcSender interface {
	Send(data []byte) error
	BufferedAmount() uint64
	ReadyState() webrtc.DataChannelState
}

var _ dcSender = (*webrtc.DataChannel)(nil)

// outItem is one queued message: where it goes and its bytes, shared with
// the other receivers and never written.
type outItem struct {
	e    *dcEntry
	data []byte
}

// outbox is a connection's queue of messages: a ring of QueueLen items,
// filled under the channel's lock (so every receiver gets the messages in
// one order) and emptied by run, which sends with no lock held.
type outbox struct {
	c         *Connection
	drops     *dropCounters
	closeSlow bool
	high      uint64 // BufferedMax

	mu         sync.Mutex
	items      []outItem
	head, tail uint64
	slow       bool // the queue overflowed with closeSlow: closing
	kick       chan struct{}
}

func newOutbox(c *Connection, cfg MessageConfig, drops *dropCounters) *outbox {
	return &outbox{
		c: c, drops: drops, closeSlow: cfg.CloseSlow, high: uint64(cfg.BufferedMax),
		items: make([]outItem, cfg.QueueLen), kick: make(chan struct{}, 1),
	}
}

// push queues data for e without blocking. A data channel that is not open
// drops it; a full queue drops it or, with closeSlow, has the connection
// closed.
func (o *outbox) push(e *dcEntry, data []byte) {
	if e.out.ReadyState() != webrtc.DataChannelStateOpen {
		o.drops.messageNotOpen.Add(1)
		return
	}
	o.mu.Lock()
	if o.head-o.tail == uint64(len(o.items)) {
		first := o.closeSlow && !o.slow
		o.slow = o.slow || o.closeSlow
		o.mu.Unlock()
		o.drops.messageQueueFull.Add(1)
		if first {
			o.drops.slowConsumersClosed.Add(1)
			// Not here: this runs under the channel's lock, which closing
			// takes. The connection's event queue runs it.
			o.c.q.push(func() { o.c.closeWith(ErrSlowConsumer) })
		}
		return
	}
	o.items[o.head%uint64(len(o.items))] = outItem{e: e, data: data}
	o.head++
	o.mu.Unlock()
	select {
	case o.kick <- struct{}{}:
	default:
	}
}

// front returns the oldest item, which stays queued until pop.
func (o *outbox) front() (outItem, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.head == o.tail {
		return outItem{}, false
	}
	return o.items[o.tail%uint64(len(o.items))], true
}

func (o *outbox) pop() {
	o.mu.Lock()
	o.items[o.tail%uint64(len(o.items))] = outItem{} // the message may go
	o.tail++
	o.mu.Unlock()
}

// run sends the queued messages until done closes (the connection's end).
// Before each, it waits while the data channel has BufferedMax bytes or
// more buffered, until pion says it drained to half (OnBufferedAmountLow).
func (o *outbox) run(done <-chan struct{}) {
	for {
		select {
		case <-done:
			return
		case <-o.kick:
		}
		for {
			it, ok := o.front()
			if !ok {
				break
			}
			for it.e.out.BufferedAmount() >= o.high && it.e.out.ReadyState() == webrtc.DataChannelStateOpen {
				select {
				case <-done:
					return
				case <-it.e.low:
				}
			}
			if err := it.e.out.Send(it.data); err != nil {
				o.drops.messageSendFailed.Add(1)
			}
			o.pop()
		}
	}
}
