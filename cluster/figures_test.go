package cluster

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestFigures measures the figures of the README. It runs only with
// SHOAL_FIGURES=1 (about three minutes):
//
//	SHOAL_FIGURES=1 go test -run TestFigures -v -timeout 20m ./cluster/
func TestFigures(t *testing.T) {
	if os.Getenv("SHOAL_FIGURES") == "" {
		t.Skip("set SHOAL_FIGURES=1 to measure")
	}
	runs := 10
	if s := os.Getenv("SHOAL_FIGURES_RUNS"); s != "" {
		runs, _ = strconv.Atoi(s)
	}
	for _, preset := range []struct {
		name   string
		timing Timing
	}{{"fast", FastTiming()}, {"production", ProductionTiming()}} {
		if p := os.Getenv("SHOAL_FIGURES_PRESET"); p != "" && p != preset.name {
			continue
		}
		t.Run(preset.name, func(t *testing.T) {
			c := newTestCluster(t)
			var ns []*tnode
			for i := range 3 {
				ns = append(ns, c.addWith("f"+strconv.Itoa(i+1), false, func(cfg *Config) { cfg.Timing = preset.timing }))
			}
			if _, err := ns[0].InitCluster(ctxT(t), c.names(ns...)); err != nil {
				t.Fatal(err)
			}
			for _, n := range ns {
				c.waitMajority(n, true, 30*time.Second)
			}
			var detect, minority, heal []time.Duration
			for r := range runs {
				iso := ns[r%3]
				var rest []*tnode
				for _, n := range ns {
					if n != iso {
						rest = append(rest, n)
					}
				}
				allConnected := func() bool {
					for _, a := range ns {
						if !a.Snapshot().InMajority {
							return false
						}
						for _, b := range ns {
							if !connected(a, b.self) {
								return false
							}
						}
					}
					return true
				}
				if !waitPrecise(allConnected, time.Minute) {
					t.Fatal("cluster did not settle")
				}
				start := time.Now()
				c.net.Partition(c.ips(iso), c.ips(rest...))
				var dDetect, dMinority time.Duration
				if !waitPrecise(func() bool {
					if dDetect == 0 && !connected(rest[0], iso.self) && !connected(rest[1], iso.self) {
						dDetect = time.Since(start)
					}
					if dMinority == 0 && !iso.Snapshot().InMajority {
						dMinority = time.Since(start)
					}
					return dDetect > 0 && dMinority > 0
				}, time.Minute) {
					t.Fatal("partition not detected")
				}
				if !rest[0].Snapshot().InMajority || !rest[1].Snapshot().InMajority {
					t.Fatal("majority side lost the majority")
				}
				start = time.Now()
				c.net.Heal()
				if !waitPrecise(func() bool { return iso.Snapshot().InMajority }, 2*time.Minute) {
					t.Fatal("no heal")
				}
				detect = append(detect, dDetect)
				minority = append(minority, dMinority)
				heal = append(heal, time.Since(start))
			}
			t.Logf("FIGURE %s preset, %d runs (p50 / max): failure detected %v / %v; minority stops serving %v / %v; heal back to serving %v / %v",
				preset.name, runs, pct(detect, 50), slices.Max(detect), pct(minority, 50), slices.Max(minority), pct(heal, 50), slices.Max(heal))

			if preset.name != "fast" {
				return
			}
			// Claim latency, from a follower and from the leader.
			ctx := ctxT(t)
			for _, n := range ns {
				role := "follower"
				if n.rft().State() == raft.Leader {
					role = "leader"
				}
				var lat []time.Duration
				for i := range 500 {
					ch := fmt.Sprintf("lat-%s-%d", n.self, i)
					s := time.Now()
					if _, err := n.ClaimChannel(ctx, ch); err != nil {
						t.Fatal(err)
					}
					lat = append(lat, time.Since(s))
					n.ReleaseChannel(ctx, ch)
				}
				t.Logf("FIGURE claim latency on %s (%s), 500 new channels: p50 %v, p99 %v, max %v", n.self, role, pct(lat, 50), pct(lat, 99), slices.Max(lat))
			}
			// Load propagation.
			var prop []time.Duration
			for i := range 20 {
				total := 1000 + i
				s := time.Now()
				ns[0].PublishLoad(total, map[string]int{"room": total})
				if !waitPrecise(func() bool {
					for _, n := range ns[1:] {
						v := n.Snapshot()
						if v.Nodes[v.NodeIndex(ns[0].self)].Connections != total {
							return false
						}
					}
					return true
				}, 10*time.Second) {
					t.Fatal("load not propagated")
				}
				prop = append(prop, time.Since(s))
				time.Sleep(50 * time.Millisecond)
			}
			t.Logf("FIGURE load change visible on all nodes, 20 runs: p50 %v, max %v", pct(prop, 50), slices.Max(prop))
		})
	}
}

// waitPrecise polls cond every millisecond.
func waitPrecise(cond func() bool, timeout time.Duration) bool {
	end := time.Now().Add(timeout)
	for time.Now().Before(end) {
		if cond() {
			return true
		}
		time.Sleep(time.Millisecond)
	}
	return false
}

func pct(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	if i > 0 {
		i--
	}
	return s[i].Round(time.Millisecond / 10)
}

// BenchmarkClaimFollower measures a claim of a new channel forwarded by a
// follower to the leader, and its release.
func BenchmarkClaimFollower(b *testing.B) {
	benchClaim(b, false)
}

// BenchmarkClaimLeader measures a claim committed on the leader itself.
func BenchmarkClaimLeader(b *testing.B) { benchClaim(b, true) }

func benchClaim(b *testing.B, onLeader bool) {
	c := &tcluster{net: NewFaultNet()}
	ns := benchCluster(b, c)
	_, id := ns[0].rft().LeaderWithID()
	var n *tnode
	for _, x := range ns {
		if (x.self == string(id)) == onLeader {
			n = x
		}
	}
	ctx := b.Context()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		ch := "b" + strconv.Itoa(i)
		if _, err := n.ClaimChannel(ctx, ch); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		n.ReleaseChannel(ctx, ch)
		b.StartTimer()
	}
}

// BenchmarkSnapshot measures taking the placement view.
func BenchmarkSnapshot(b *testing.B) {
	n, err := New(Config{NodeName: "solo@10.0.0.1"})
	if err != nil {
		b.Fatal(err)
	}
	defer n.Close()
	n.Start(b.Context())
	b.ReportAllocs()
	for b.Loop() {
		v := n.Snapshot()
		if !v.InMajority {
			b.Fatal("not serving")
		}
	}
}
