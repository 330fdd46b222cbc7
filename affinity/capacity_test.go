package affinity

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestEffectiveCapacities(t *testing.T) {
	cluster := DefaultSettings()
	cases := []struct {
		name     string
		settings Settings
		nodes    []Node
		want     []int
		extra    int
	}{
		{"all up", cluster, []Node{nd("a", 100, 0), nd("b", 100, 0), nd("c", 100, 0)}, []int{100, 100, 100}, 0},
		{"three of 100, one fails: 150", cluster, []Node{nd("a", 100, 0), nd("b", 100, 0), nd("c", 100, 0, down)}, []int{150, 150, 0}, 50},
		{"three regular and a temporary, a regular fails: +34", cluster,
			[]Node{nd("a", 100, 0), nd("b", 100, 0), nd("c", 100, 0, down), nd("t", 100, 0, temporary)}, []int{134, 134, 0, 134}, 34},
		{"temporary failure moves nothing", cluster,
			[]Node{nd("a", 100, 0), nd("b", 100, 0), nd("c", 100, 0), nd("t", 100, 0, temporary, down)}, []int{100, 100, 100, 0}, 0},
		{"recovery: limits go back", cluster,
			[]Node{nd("a", 100, 140), nd("b", 100, 0), nd("c", 100, 0)}, []int{100, 100, 100}, 0},
		{"two failures at once: one ceil of the total", cluster,
			[]Node{nd("a", 100, 0), nd("b", 100, 0), nd("c", 100, 0), nd("d", 100, 0, down), nd("e", 100, 0, down)}, []int{167, 167, 167, 0, 0}, 67},
		{"regular and temporary fail together", cluster,
			[]Node{nd("a", 100, 0), nd("b", 100, 0), nd("c", 100, 0, down), nd("t", 100, 0, temporary, down)}, []int{150, 150, 0, 0}, 50},
		{"unequal capacities", cluster,
			[]Node{nd("a", 300, 0), nd("b", 100, 0), nd("c", 250, 0, down)}, []int{425, 225, 0}, 125},
		{"zero-capacity nodes take no share", cluster,
			[]Node{nd("a", 100, 0), nd("b", 0, 0), nd("c", -1, 0), nd("d", 100, 0), nd("e", 100, 0, down)}, []int{150, 0, 0, 150, 0}, 50},
		{"blocked nodes still take a share", cluster,
			[]Node{nd("a", 100, 0, mode(ModeBlockNewConnection)), nd("b", 100, 0), nd("c", 100, 0, down)}, []int{150, 150, 0}, 50},
		{"nobody left", cluster, []Node{nd("a", 100, 0, down), nd("b", 0, 0)}, []int{0, 0}, 0},
		{"no nodes", cluster, nil, []int{}, 0},
		{"no cluster: own capacity", Settings{}, []Node{nd("a", 100, 0, down), nd("b", 100, 0), nd("c", -3, 0)}, []int{100, 100, 0}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := &View{Settings: tc.settings, Nodes: tc.nodes, InMajority: true}
			if got := v.ExtraCapacity(); got != tc.extra {
				t.Errorf("ExtraCapacity() = %d, want %d", got, tc.extra)
			}
			got := EffectiveCapacities(v, nil)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("EffectiveCapacities = %v, want %v", got, tc.want)
			}
			for i := range tc.nodes {
				if c := v.EffectiveCapacity(i); c != tc.want[i] {
					t.Errorf("EffectiveCapacity(%d) = %d, want %d", i, c, tc.want[i])
				}
			}
		})
	}
}

func TestEffectiveCapacitiesReusesDst(t *testing.T) {
	v := &View{Settings: DefaultSettings(), Nodes: []Node{nd("a", 100, 0), nd("b", 100, 0, down)}}
	dst := make([]int, 5, 8)
	got := EffectiveCapacities(v, dst)
	if !slices.Equal(got, []int{200, 0}) || &got[0] != &dst[0] {
		t.Fatalf("got %v (reused: %v)", got, &got[0] == &dst[0])
	}
	if n := testing.AllocsPerRun(100, func() { dst = EffectiveCapacities(v, dst) }); n != 0 {
		t.Fatalf("EffectiveCapacities allocates %v times with room in dst", n)
	}
}

func TestValidate(t *testing.T) {
	good := &View{Settings: DefaultSettings(), Nodes: abc, InMajority: true,
		Sessions: map[string]Session{"ch": {Owners: owners(own(0, 1), own(2, 0))}, "empty": {}}}
	if err := good.Validate(); err != nil {
		t.Fatalf("valid view: %v", err)
	}
	bad := []struct {
		name string
		v    View
		msg  string
	}{
		{"no name", View{Nodes: []Node{nd("", 1, 0)}}, "no name"},
		{"unsorted", View{Nodes: []Node{nd("b", 1, 0), nd("a", 1, 0)}}, "not sorted"},
		{"duplicate", View{Nodes: []Node{nd("a", 1, 0), nd("a", 1, 0)}}, "duplicated"},
		{"mode", View{Nodes: []Node{nd("a", 1, 0, mode(Mode(3)))}}, "unknown mode Mode(3)"},
		{"negative connections", View{Nodes: []Node{nd("a", 1, -1)}}, "-1 connections"},
		{"owner out of range", View{Nodes: abc, Sessions: map[string]Session{"x": {Owners: owners(own(3, 0))}}}, "out of range"},
		{"owner negative count", View{Nodes: abc, Sessions: map[string]Session{"x": {Owners: owners(own(1, -2))}}}, "owner b has -2"},
		{"owner twice", View{Nodes: abc, Sessions: map[string]Session{"x": {Owners: owners(own(1, 0), own(1, 1))}}}, "listed twice"},
	}
	for _, tc := range bad {
		err := tc.v.Validate()
		if !errors.Is(err, ErrInvalidView) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: Validate() = %v, want it to mention %q", tc.name, err, tc.msg)
		}
	}
}

func TestModeStringParse(t *testing.T) {
	for _, m := range []Mode{ModeNormal, ModeBlockNewSession, ModeBlockNewConnection} {
		got, err := ParseMode(m.String())
		if err != nil || got != m {
			t.Errorf("ParseMode(%q) = %v, %v", m.String(), got, err)
		}
	}
	if _, err := ParseMode("closed"); err == nil {
		t.Error("ParseMode(closed) succeeded")
	}
}
