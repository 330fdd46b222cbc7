// Package faultpair holds the key the test fault networks (cluster.FaultNet
// and relay.FaultNet) use for a blocked pair of addresses: the same pair
// gives the same key whichever address comes first, and an IPv4-mapped
// IPv6 address counts as its IPv4 address.
//
// The file faultpair.go holds the whole package.
package faultpair
