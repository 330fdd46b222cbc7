package multicluster

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Status is a gateway's state in the gateway table.
type Status uint8

const (
	// Inactive: the address is no longer a gateway of its cluster (it left
	// the gateway set, or its node is gone).
	Inactive Status = 0
	// Active: the address is a gateway of its cluster.
	Active Status = 1
)

func (s Status) String() string {
	if s == Active {
		return "active"
	}
	return "inactive"
}

// Gateway is one entry of the gateway table. Its writer is the gateway
// itself while it runs; when its node is gone from its cluster, one
// gateway of the same cluster (the first of the set) writes it Inactive at
// Version+1. A gateway that comes back writes above that again.
type Gateway struct {
	// Addr is the gateway's gossip address, HOST:PORT: the table's key.
	Addr string `json:"addr"`
	// ClusterID is the cluster the gateway belongs to.
	ClusterID string `json:"cluster"`
	// Node is the gateway's node_name.
	Node string `json:"node"`
	// Relay is the address of the gateway's inter-cluster relay,
	// HOST:PORT, where gateways of other clusters bridge channels.
	Relay string `json:"relay,omitempty"`
	// Status says whether Addr is a gateway now.
	Status Status `json:"status"`
	// Version orders the entries written for Addr: the writer's counter.
	// Entries are never ordered by wall clocks.
	Version uint64 `json:"v"`
	// Channels are the channels with clients in the gateway's cluster
	// that this gateway bridges (sorted).
	Channels []string `json:"channels,omitempty"`
}

// Configuration is the multi-cluster configuration an operator sets: the
// clusters that share channels. Its order is (Version, Writer, content):
// SetConfiguration writes one version above the newest it knows (a
// Lamport clock), so a later change made anywhere wins, and two made at
// once end the same everywhere.
type Configuration struct {
	// Clusters are the joined cluster ids, sorted, without repeats.
	Clusters []string `json:"clusters"`
	// Comment is the operator's note.
	Comment string `json:"comment,omitempty"`
	// Version is the Lamport version of the configuration.
	Version uint64 `json:"v"`
	// Writer is the node that set it.
	Writer string `json:"writer"`
	// Stamp is the writer's clock when it was set, for people only: it
	// never orders anything.
	Stamp time.Time `json:"stamp"`
}

// Has reports whether cluster id is joined.
func (c *Configuration) Has(id string) bool {
	if c == nil {
		return false
	}
	_, ok := slices.BinarySearch(c.Clusters, id)
	return ok
}

// Data is the multi-cluster state that gossip spreads: the configuration
// (nil: none set yet) and the gateway table. A Data is not safe for
// concurrent use; the Agent guards its own.
type Data struct {
	Config   *Configuration     `json:"config,omitempty"`
	Gateways map[string]Gateway `json:"gateways,omitempty"`
}

// Order returns the key that orders g among the entries written for its
// address: higher is newer. It is a string compared byte by byte, so that
// a gossip channel (a Redis script) compares entries exactly as Go does:
// the zero-padded version, then inactive before active (at an equal
// version, a gateway marked inactive by its cluster wins over the gateway's
// own entry, which then writes above it), then a digest of the content, so
// that two different entries at one version order the same everywhere.
func (g Gateway) Order() string {
	st := "1"
	if g.Status == Active {
		st = "0"
	}
	return fmt.Sprintf("%020d|%s|%s", g.Version, st, digest(g))
}

// Order returns the key that orders configurations (see Gateway.Order).
func (c Configuration) Order() string {
	c.Stamp = c.Stamp.UTC()
	return fmt.Sprintf("%020d|%s|%s", c.Version, c.Writer, digest(c))
}

// digest hashes v's JSON form, which is what travels: an entry and its
// decoded copy have the same digest.
func digest(v any) string {
	b, _ := json.Marshal(v) // plain structs of strings and numbers: no error
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

// Clone returns a deep copy of d.
func (d Data) Clone() Data {
	out := Data{Gateways: make(map[string]Gateway, len(d.Gateways))}
	if d.Config != nil {
		c := *d.Config
		c.Clusters = slices.Clone(c.Clusters)
		out.Config = &c
	}
	for k, g := range d.Gateways {
		g.Channels = slices.Clone(g.Channels)
		out.Gateways[k] = g
	}
	return out
}

// Empty reports whether d holds nothing.
func (d Data) Empty() bool { return d.Config == nil && len(d.Gateways) == 0 }

// Merge applies in to d, keeping for each entry the newer one, and returns
// the delta: the entries of in that were newer than d's (and are now d's).
// in is not kept: what d stores is copied.
func (d *Data) Merge(in Data) Data {
	var delta Data
	if in.Config != nil && (d.Config == nil || in.Config.Order() > d.Config.Order()) {
		c := *in.Config
		c.Clusters = slices.Clone(c.Clusters)
		d.Config = &c
		cc := c
		delta.Config = &cc
	}
	for _, k := range slices.Sorted(maps.Keys(in.Gateways)) {
		g := in.Gateways[k]
		if g.Addr != k {
			continue // a malformed entry; Decode refuses these
		}
		if cur, ok := d.Gateways[k]; ok && g.Order() <= cur.Order() {
			continue
		}
		g.Channels = slices.Clone(g.Channels)
		if d.Gateways == nil {
			d.Gateways = map[string]Gateway{}
		}
		d.Gateways[k] = g
		if delta.Gateways == nil {
			delta.Gateways = map[string]Gateway{}
		}
		delta.Gateways[k] = g
	}
	return delta
}

// NewerThan returns the entries of d that are newer than other's, or
// that other lacks: what other needs to catch up with d.
func (d Data) NewerThan(other Data) Data {
	tmp := other.Clone()
	return tmp.Merge(d)
}

// ActiveGateways returns the active gateways of cluster id, sorted by
// address.
func (d Data) ActiveGateways(id string) []Gateway {
	var out []Gateway
	for _, k := range slices.Sorted(maps.Keys(d.Gateways)) {
		if g := d.Gateways[k]; g.Status == Active && g.ClusterID == id {
			out = append(out, g)
		}
	}
	return out
}

// String is a short summary for logs.
func (d Data) String() string {
	var b strings.Builder
	if d.Config != nil {
		fmt.Fprintf(&b, "config v%d %v; ", d.Config.Version, d.Config.Clusters)
	}
	fmt.Fprintf(&b, "%d gateways", len(d.Gateways))
	return b.String()
}
