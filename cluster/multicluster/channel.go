package multicluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// GossipChannel is an external store that bootstraps the gossip: a node
// reads it at start to find the gateways of every cluster, and a gateway
// writes its changes to it and exchanges with it in the background. A
// channel keeps the entries of one service (given when it is made), so
// that several services can share one store. Implementations must be safe
// for concurrent use. redischannel is one.
type GossipChannel interface {
	// Name says which channel this is, in logs and errors.
	Name() string
	// Publish stores the entries of d that are newer than the channel's
	// (each compared by its Order; an older or equal one never overwrites
	// what the channel has, whoever writes it).
	Publish(ctx context.Context, d Data) error
	// Synchronize publishes d, then returns what the channel has that is
	// newer than d.
	Synchronize(ctx context.Context, d Data) (Data, error)
}

// SynchronizeAll synchronizes d with every channel, one after the other,
// and returns what they have newer than d, merged. A channel that fails is
// skipped: the error is returned only when every channel failed (joined),
// and failed lists those that did.
func SynchronizeAll(ctx context.Context, chans []GossipChannel, d Data) (newer Data, failed []error, err error) {
	if len(chans) == 0 {
		return Data{}, nil, nil
	}
	have := d.Clone()
	for _, c := range chans {
		got, err := c.Synchronize(ctx, have)
		if err != nil {
			failed = append(failed, fmt.Errorf("gossip channel %s: %w", c.Name(), err))
			continue
		}
		newer.Merge(have.Merge(got))
	}
	if len(failed) == len(chans) {
		return Data{}, failed, errors.Join(failed...)
	}
	return newer, failed, nil
}

// MemoryChannel is a GossipChannel in this process's memory, for tests and
// single-machine examples. Down makes it fail, as a store that is
// unreachable.
type MemoryChannel struct {
	name string
	mu   sync.Mutex
	data Data
	down bool
}

var _ GossipChannel = (*MemoryChannel)(nil)

// NewMemoryChannel returns an empty channel called name.
func NewMemoryChannel(name string) *MemoryChannel { return &MemoryChannel{name: name} }

// ErrChannelDown is the error of a MemoryChannel that is down.
var ErrChannelDown = errors.New("multicluster: gossip channel down")

// Name implements GossipChannel.
func (c *MemoryChannel) Name() string { return c.name }

// SetDown makes the channel fail (true) or work again (false).
func (c *MemoryChannel) SetDown(down bool) {
	c.mu.Lock()
	c.down = down
	c.mu.Unlock()
}

// Publish implements GossipChannel.
func (c *MemoryChannel) Publish(_ context.Context, d Data) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down {
		return ErrChannelDown
	}
	c.data.Merge(d)
	return nil
}

// Synchronize implements GossipChannel.
func (c *MemoryChannel) Synchronize(_ context.Context, d Data) (Data, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down {
		return Data{}, ErrChannelDown
	}
	c.data.Merge(d)
	return c.data.NewerThan(d), nil
}

// Read returns a copy of what the channel holds.
func (c *MemoryChannel) Read() Data {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.data.Clone()
}
