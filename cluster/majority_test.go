package cluster

import "testing"

func TestMajorityAlive(t *testing.T) {
	for _, tc := range []struct {
		name   string
		voters []string
		alive  []string
		want   bool
	}{
		{"no voters", nil, nil, false},
		{"no voters, someone alive", nil, []string{"a"}, false},
		{"1 of 1", []string{"a"}, []string{"a"}, true},
		{"0 of 1", []string{"a"}, nil, false},
		{"2 of 2", []string{"a", "b"}, []string{"a", "b"}, true},
		{"1 of 2: half is not a majority", []string{"a", "b"}, []string{"a"}, false},
		{"3 of 3", []string{"a", "b", "c"}, []string{"a", "b", "c"}, true},
		{"2 of 3", []string{"a", "b", "c"}, []string{"a", "c"}, true},
		{"1 of 3", []string{"a", "b", "c"}, []string{"b"}, false},
		{"3 of 4", []string{"a", "b", "c", "d"}, []string{"a", "b", "d"}, true},
		{"2 of 4", []string{"a", "b", "c", "d"}, []string{"a", "b"}, false},
		{"3 of 5", []string{"a", "b", "c", "d", "e"}, []string{"a", "c", "e"}, true},
		{"2 of 5", []string{"a", "b", "c", "d", "e"}, []string{"d", "e"}, false},
		{"unknown members do not count", []string{"a", "b", "c"}, []string{"a", "x", "y", "z"}, false},
		{"temporary nodes do not count", []string{"a", "b", "c"}, []string{"c", "tmp1@10.0.0.9", "tmp2@10.0.0.9"}, false},
		{"temporary nodes beside a majority", []string{"a", "b", "c"}, []string{"a", "b", "tmp1@10.0.0.9"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set := map[string]bool{}
			for _, a := range tc.alive {
				set[a] = true
			}
			if got := majorityAlive(tc.voters, func(n string) bool { return set[n] }); got != tc.want {
				t.Fatalf("majorityAlive(%v, alive %v) = %v, want %v", tc.voters, tc.alive, got, tc.want)
			}
		})
	}
}
