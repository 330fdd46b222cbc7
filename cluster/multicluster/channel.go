package multicluster

import (
	"context"
	"errors"
	"fmt"
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
