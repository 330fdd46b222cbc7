package multicluster

import (
	"cmp"
	"hash/fnv"
	"slices"
)

// DefaultMaxGateways is how many gateways a cluster designates when
// Config.MaxGateways is 0.
const DefaultMaxGateways = 10

// Candidate is a node that may be a gateway.
type Candidate struct {
	Name string // node_name
	Zone string // the node's zone ("" for none)
	// Active: connected, in the majority and not blocked. Only active
	// nodes are chosen.
	Active bool
}

// ChooseGateways returns the names of a cluster's gateways, sorted: every
// active candidate when there are at most max, else max of them taken in
// turn from each zone (zones in name order, nodes in name order within a
// zone), so that they spread evenly across zones. The same candidates
// give the same gateways on every node; a node that fails or joins
// changes the choice at the next view. max <= 0 means DefaultMaxGateways.
func ChooseGateways(nodes []Candidate, max int) []string {
	if max <= 0 {
		max = DefaultMaxGateways
	}
	byZone := map[string][]string{}
	var zones []string
	for _, c := range nodes {
		if !c.Active {
			continue
		}
		if _, ok := byZone[c.Zone]; !ok {
			zones = append(zones, c.Zone)
		}
		byZone[c.Zone] = append(byZone[c.Zone], c.Name)
	}
	slices.Sort(zones)
	for _, z := range zones {
		slices.Sort(byZone[z])
		byZone[z] = slices.Compact(byZone[z])
	}
	var out []string
	for round := 0; len(out) < max; round++ {
		took := false
		for _, z := range zones {
			if round < len(byZone[z]) && len(out) < max {
				out = append(out, byZone[z][round])
				took = true
			}
		}
		if !took {
			break
		}
	}
	slices.Sort(out)
	return out
}

// Bridge returns which of gateways (names, any order) bridges channel for
// its cluster: the one with the highest hash of (channel, name), so that
// channels spread over the gateways and a gateway lost moves only its own
// channels. "" when gateways is empty.
func Bridge(channel string, gateways []string) string {
	best, bestH := "", uint64(0)
	for _, g := range gateways {
		h := fnv.New64a()
		h.Write([]byte(channel))
		h.Write([]byte{0})
		h.Write([]byte(g))
		v := h.Sum64()
		if best == "" || v > bestH || v == bestH && cmp.Less(g, best) {
			best, bestH = g, v
		}
	}
	return best
}
