package multicluster

import (
	"reflect"
	"testing"
	"time"
)

func gw(addr, cid string, st Status, v uint64, chans ...string) Gateway {
	return Gateway{Addr: addr, ClusterID: cid, Node: "n@" + addr[:len(addr)-5], Status: st, Version: v, Channels: chans}
}

func table(gs ...Gateway) map[string]Gateway {
	m := map[string]Gateway{}
	for _, g := range gs {
		m[g.Addr] = g
	}
	return m
}

func TestMerge(t *testing.T) {
	cfg1 := &Configuration{Clusters: []string{"a", "b"}, Version: 1, Writer: "x@10.0.0.1"}
	cfg2 := &Configuration{Clusters: []string{"a"}, Version: 2, Writer: "y@10.0.0.2"}
	cfg2b := &Configuration{Clusters: []string{"a", "c"}, Version: 2, Writer: "z@10.0.0.3"} // concurrent with cfg2, wins on writer
	a1 := gw("10.0.0.1:7000", "a", Active, 1)
	a2 := gw("10.0.0.1:7000", "a", Active, 2, "room")
	a2off := gw("10.0.0.1:7000", "a", Inactive, 2)
	b1 := gw("10.0.1.1:7000", "b", Active, 1)
	for _, tc := range []struct {
		name      string
		have, in  Data
		want, dlt Data
	}{
		{"into empty", Data{}, Data{Config: cfg1, Gateways: table(a1)},
			Data{Config: cfg1, Gateways: table(a1)}, Data{Config: cfg1, Gateways: table(a1)}},
		{"newer version wins", Data{Gateways: table(a1, b1)}, Data{Gateways: table(a2)},
			Data{Gateways: table(a2, b1)}, Data{Gateways: table(a2)}},
		{"older ignored", Data{Gateways: table(a2)}, Data{Gateways: table(a1)},
			Data{Gateways: table(a2)}, Data{}},
		{"same ignored", Data{Config: cfg1, Gateways: table(a1)}, Data{Config: cfg1, Gateways: table(a1)},
			Data{Config: cfg1, Gateways: table(a1)}, Data{}},
		{"inactive wins a tie", Data{Gateways: table(a2)}, Data{Gateways: table(a2off)},
			Data{Gateways: table(a2off)}, Data{Gateways: table(a2off)}},
		{"active loses a tie", Data{Gateways: table(a2off)}, Data{Gateways: table(a2)},
			Data{Gateways: table(a2off)}, Data{}},
		{"newer config", Data{Config: cfg1}, Data{Config: cfg2}, Data{Config: cfg2}, Data{Config: cfg2}},
		{"older config", Data{Config: cfg2}, Data{Config: cfg1}, Data{Config: cfg2}, Data{}},
		{"concurrent configs: writer orders", Data{Config: cfg2}, Data{Config: cfg2b}, Data{Config: cfg2b}, Data{Config: cfg2b}},
		{"concurrent configs, other way", Data{Config: cfg2b}, Data{Config: cfg2}, Data{Config: cfg2b}, Data{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.have.Clone()
			delta := d.Merge(tc.in)
			if !reflect.DeepEqual(norm(d), norm(tc.want)) {
				t.Errorf("merged = %+v, want %+v", d, tc.want)
			}
			if !reflect.DeepEqual(norm(delta), norm(tc.dlt)) {
				t.Errorf("delta = %+v, want %+v", delta, tc.dlt)
			}
		})
	}
}

// norm makes empty maps nil, for comparison.
func norm(d Data) Data {
	if len(d.Gateways) == 0 {
		d.Gateways = nil
	}
	return d
}

// TestMergeConverges: whatever order the entries arrive in, every copy
// ends the same (merge is commutative and idempotent).
func TestMergeConverges(t *testing.T) {
	ins := []Data{
		{Gateways: table(gw("10.0.0.1:7000", "a", Active, 1))},
		{Gateways: table(gw("10.0.0.1:7000", "a", Active, 3, "r1"))},
		{Gateways: table(gw("10.0.0.1:7000", "a", Inactive, 3))},
		{Config: &Configuration{Clusters: []string{"a"}, Version: 4, Writer: "w@h.example"}},
		{Config: &Configuration{Clusters: []string{"a", "b"}, Version: 4, Writer: "v@h.example", Stamp: time.Unix(5, 0)}},
		{Gateways: table(gw("10.0.1.1:7000", "b", Active, 9))},
	}
	var ref Data
	for _, in := range ins {
		ref.Merge(in)
	}
	perm := []int{5, 2, 4, 0, 3, 1}
	for range 20 {
		var d Data
		for _, i := range perm {
			d.Merge(ins[i])
			d.Merge(ins[i]) // twice: no change
		}
		if !reflect.DeepEqual(d, ref) {
			t.Fatalf("order %v gives %+v, want %+v", perm, d, ref)
		}
		perm = append(perm[1:], perm[0])
		perm[0], perm[3] = perm[3], perm[0]
	}
}

func TestNewerThan(t *testing.T) {
	old := Data{Gateways: table(gw("10.0.0.1:7000", "a", Active, 1), gw("10.0.1.1:7000", "b", Active, 5))}
	cur := Data{Gateways: table(gw("10.0.0.1:7000", "a", Active, 2), gw("10.0.1.1:7000", "b", Active, 4))}
	got := cur.NewerThan(old)
	if len(got.Gateways) != 1 || got.Gateways["10.0.0.1:7000"].Version != 2 {
		t.Fatalf("NewerThan = %+v, want the a entry at v2 alone", got)
	}
	if len(old.Gateways) != 2 || old.Gateways["10.0.0.1:7000"].Version != 1 {
		t.Fatalf("NewerThan changed its argument: %+v", old)
	}
}

func TestNewConfiguration(t *testing.T) {
	c, err := NewConfiguration([]string{"b", "a", "b"}, "hi", "x@10.0.0.1", &Configuration{Version: 7}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.Clusters, []string{"a", "b"}) || c.Version != 8 || !c.Has("a") || c.Has("c") {
		t.Fatalf("got %+v", c)
	}
	for _, bad := range [][]string{nil, {"a,b"}, {""}} {
		if _, err := NewConfiguration(bad, "", "x@10.0.0.1", nil, time.Now()); err == nil {
			t.Errorf("clusters %q accepted", bad)
		}
	}
}
