package multicluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/shoal-sfu/shoal/cluster"
)

// Limits of what a gossip message may hold; a message beyond them is
// refused whole.
const (
	MaxMessageSize   = 1 << 20 // bytes
	MaxGatewayTable  = 4096    // entries
	MaxClusters      = 256     // clusters in a configuration
	MaxChannelsPerGW = 10000   // channels one gateway bridges
	maxChannelIDLen  = 255
	maxNodeNameLen   = 255
	maxCommentLen    = 1024
)

// Message is one gossip message between gateways, and what a gossip
// channel stores: the sender's service and cluster, and data. Every
// message carries both ids; one of another service is ignored.
type Message struct {
	Service string `json:"svc"`
	Cluster string `json:"cluster"`
	From    string `json:"from"` // sender's node_name
	// Kind is KindPush (a change, pushed at once) or KindSync (a
	// background exchange: the receiver answers with what it has newer).
	Kind string `json:"kind"`
	Data Data   `json:"data"`
}

// Message kinds.
const (
	KindPush = "push"
	KindSync = "sync"
)

// Encode returns m's wire form.
func (m Message) Encode() ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxMessageSize {
		return nil, fmt.Errorf("multicluster: message of %d bytes exceeds %d", len(b), MaxMessageSize)
	}
	return b, nil
}

// ErrMalformed is wrapped by every error of Decode.
var ErrMalformed = errors.New("multicluster: malformed gossip message")

// Decode parses and checks a message from the network or a gossip
// channel: every id, address and count is checked, so what it returns can
// be merged as it is.
func Decode(b []byte) (Message, error) {
	var m Message
	if len(b) > MaxMessageSize {
		return m, fmt.Errorf("%w: %d bytes exceeds %d", ErrMalformed, len(b), MaxMessageSize)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return Message{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if dec.More() {
		return Message{}, fmt.Errorf("%w: trailing data", ErrMalformed)
	}
	if err := m.check(); err != nil {
		return Message{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return m, nil
}

func (m *Message) check() error {
	if err := cluster.CheckServiceID(m.Service); err != nil {
		return err
	}
	if err := cluster.CheckClusterID(m.Cluster); err != nil {
		return err
	}
	if m.From == "" || len(m.From) > maxNodeNameLen {
		return fmt.Errorf("sender %q: want 1 to %d bytes", m.From, maxNodeNameLen)
	}
	if m.Kind != KindPush && m.Kind != KindSync {
		return fmt.Errorf("kind %q: want %q or %q", m.Kind, KindPush, KindSync)
	}
	return m.Data.Check()
}

// Check checks every entry of d (what Decode does for a message's data).
func (d Data) Check() error {
	if c := d.Config; c != nil {
		if len(c.Clusters) > MaxClusters {
			return fmt.Errorf("configuration: %d clusters, at most %d", len(c.Clusters), MaxClusters)
		}
		if err := checkClusters(c.Clusters); err != nil {
			return fmt.Errorf("configuration: %w", err)
		}
		if len(c.Comment) > maxCommentLen {
			return fmt.Errorf("configuration: comment of %d bytes, at most %d", len(c.Comment), maxCommentLen)
		}
		if c.Writer == "" || len(c.Writer) > maxNodeNameLen {
			return fmt.Errorf("configuration: writer %q: want 1 to %d bytes", c.Writer, maxNodeNameLen)
		}
	}
	if len(d.Gateways) > MaxGatewayTable {
		return fmt.Errorf("%d gateways, at most %d", len(d.Gateways), MaxGatewayTable)
	}
	for k, g := range d.Gateways {
		if err := g.check(); err != nil {
			return err
		}
		if g.Addr != k {
			return fmt.Errorf("gateway %q filed under %q", g.Addr, k)
		}
	}
	return nil
}

// checkClusters: valid ids, sorted, no repeats.
func checkClusters(ids []string) error {
	for i, id := range ids {
		if err := cluster.CheckClusterID(id); err != nil {
			return err
		}
		if i > 0 && ids[i-1] >= id {
			return fmt.Errorf("cluster ids %q: not sorted or repeated", ids)
		}
	}
	return nil
}

func (g Gateway) check() error {
	if _, err := netip.ParseAddrPort(g.Addr); err != nil {
		return fmt.Errorf("gateway address %q: %v", g.Addr, err)
	}
	if err := cluster.CheckClusterID(g.ClusterID); err != nil {
		return fmt.Errorf("gateway %s: %w", g.Addr, err)
	}
	if g.Node == "" || len(g.Node) > maxNodeNameLen {
		return fmt.Errorf("gateway %s: node %q: want 1 to %d bytes", g.Addr, g.Node, maxNodeNameLen)
	}
	if g.Relay != "" {
		if _, err := netip.ParseAddrPort(g.Relay); err != nil {
			return fmt.Errorf("gateway %s: relay address %q: %v", g.Addr, g.Relay, err)
		}
	}
	if g.Status != Active && g.Status != Inactive {
		return fmt.Errorf("gateway %s: status %d is neither active (1) nor inactive (0)", g.Addr, g.Status)
	}
	if len(g.Channels) > MaxChannelsPerGW {
		return fmt.Errorf("gateway %s: %d channels, at most %d", g.Addr, len(g.Channels), MaxChannelsPerGW)
	}
	for i, ch := range g.Channels {
		if ch == "" || len(ch) > maxChannelIDLen {
			return fmt.Errorf("gateway %s: channel id %q: want 1 to %d bytes", g.Addr, ch, maxChannelIDLen)
		}
		if i > 0 && g.Channels[i-1] >= ch {
			return fmt.Errorf("gateway %s: channels not sorted or repeated", g.Addr)
		}
	}
	return nil
}

// NewConfiguration builds the configuration an operator sets on a node
// named writer at stamp (for people to read), one version above known (the
// newest this node has; nil for none). The cluster ids are checked, sorted
// and made unique.
func NewConfiguration(clusters []string, comment, writer string, known *Configuration, stamp time.Time) (*Configuration, error) {
	ids := slices.Clone(clusters)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	if len(ids) == 0 {
		return nil, errors.New("multicluster: the configuration names no cluster")
	}
	if len(ids) > MaxClusters {
		return nil, fmt.Errorf("multicluster: %d clusters, at most %d", len(ids), MaxClusters)
	}
	for _, id := range ids {
		if err := cluster.CheckClusterID(id); err != nil {
			return nil, err
		}
	}
	if len(comment) > maxCommentLen {
		return nil, fmt.Errorf("multicluster: comment of %d bytes, at most %d", len(comment), maxCommentLen)
	}
	c := Configuration{Clusters: ids, Comment: comment, Writer: writer, Version: 1, Stamp: stamp.UTC()}
	if known != nil {
		c.Version = known.Version + 1
	}
	return &c, nil
}
