package signaling

import (
	"context"

	"github.com/shoal-sfu/shoal/affinity"
)

// Cluster is what the signaling server needs from the cluster layer.
// *cluster.Node satisfies it; MemCluster is an in-memory twin for tests and
// single-process demos.
type Cluster interface {
	// Snapshot returns the current view, which placement reads, and which
	// the server also reads every 50 ms to close its connections while the
	// view says this node is out of the majority. It must be cheap and is
	// not modified by the server.
	Snapshot() affinity.View
	// ClaimChannel makes this node an owner of the channel's session before
	// it serves the channel's first local connection.
	ClaimChannel(ctx context.Context, channelID string) ([]string, error)
	// ReleaseChannel says that this node holds no connection of the channel
	// any more.
	ReleaseChannel(ctx context.Context, channelID string) error
	// PublishLoad sets this node's connection counts, total and per channel.
	// It is called with the server's lock held: it must not block, and it
	// must copy perChannel, which the server changes after it returns.
	PublishLoad(total int, perChannel map[string]int)
}
