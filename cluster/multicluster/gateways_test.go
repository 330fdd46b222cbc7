package multicluster

import (
	"fmt"
	"reflect"
	"testing"
)

func TestChooseGateways(t *testing.T) {
	c := func(name, zone string, active bool) Candidate {
		return Candidate{Name: name, Zone: zone, Active: active}
	}
	for _, tc := range []struct {
		name  string
		nodes []Candidate
		max   int
		want  []string
	}{
		{"fewer than max: all active", []Candidate{c("b", "", true), c("a", "", true), c("x", "", false)}, 10, []string{"a", "b"}},
		{"none", nil, 10, nil},
		{"cut at max by name", []Candidate{c("c", "", true), c("a", "", true), c("b", "", true)}, 2, []string{"a", "b"}},
		{"balanced over zones", []Candidate{
			c("a1", "z1", true), c("a2", "z1", true), c("a3", "z1", true),
			c("b1", "z2", true), c("c1", "z3", true), c("c2", "z3", true)}, 4,
			[]string{"a1", "a2", "b1", "c1"}},
		{"inactive skipped in a zone", []Candidate{
			c("a1", "z1", false), c("a2", "z1", true), c("b1", "z2", true), c("b2", "z2", true)}, 2,
			[]string{"a2", "b1"}},
		{"default max 10", func() []Candidate {
			var out []Candidate
			for i := range 15 {
				out = append(out, c(fmt.Sprintf("n%02d", i), "", true))
			}
			return out
		}(), 0, []string{"n00", "n01", "n02", "n03", "n04", "n05", "n06", "n07", "n08", "n09"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ChooseGateways(tc.nodes, tc.max)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("ChooseGateways = %v, want %v", got, tc.want)
			}
			// The input order does not matter.
			rev := make([]Candidate, len(tc.nodes))
			for i, n := range tc.nodes {
				rev[len(rev)-1-i] = n
			}
			if again := ChooseGateways(rev, tc.max); !reflect.DeepEqual(again, got) {
				t.Fatalf("reversed input gives %v, want %v", again, got)
			}
		})
	}
}

func TestBridge(t *testing.T) {
	gws := []string{"a@10.0.0.1", "b@10.0.0.2", "c@10.0.0.3"}
	count := map[string]int{}
	moved := 0
	for i := range 300 {
		ch := fmt.Sprintf("room%d", i)
		b := Bridge(ch, gws)
		count[b]++
		if Bridge(ch, []string{gws[2], gws[0], gws[1]}) != b {
			t.Fatalf("order of gateways changes the bridge of %s", ch)
		}
		// Without c, only c's channels move.
		after := Bridge(ch, gws[:2])
		if b != gws[2] && after != b {
			t.Fatalf("%s moved from %s to %s when c left", ch, b, after)
		}
		if b == gws[2] {
			moved++
		}
	}
	for _, g := range gws {
		if count[g] < 60 {
			t.Errorf("gateway %s bridges %d of 300 channels: not spread (%v)", g, count[g], count)
		}
	}
	if Bridge("x", nil) != "" {
		t.Error("Bridge of no gateway is not empty")
	}
}
