package shoal_test

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// The dependency fences (in the manner of tailscale's tstest/deptest): each
// rule names packages, what they may not depend on, and why. A transitive
// rule looks at every package a program importing the package builds (the
// Deps of `go list -json`, as `go list -deps` prints them), so an import
// through a helper package breaks it as surely as a direct one; test-only
// imports are not part of that set. A direct rule looks at the package's
// own imports, its tests' included.

const module = "github.com/shoal-sfu/shoal"

var (
	pion   = []string{"github.com/pion"}
	hashi  = []string{"github.com/hashicorp/serf", "github.com/hashicorp/memberlist", "github.com/hashicorp/raft", "github.com/hashicorp/raft-wal"}
	server = []string{module + "/sfu", module + "/relay", module + "/cluster"}
	prom   = []string{"github.com/prometheus"}
)

// depRule forbids dependencies of the packages in pkgs (module-relative
// directories; "" is the root package, "dir/..." a directory and every
// package below it).
type depRule struct {
	pkgs []string
	// deny lists import-path prefixes (a prefix matches itself and the
	// paths below it) that no dependency may have.
	deny []string
	// stdOnly allows only the standard library and the packages the rule
	// itself covers.
	stdOnly bool
	// except lists packages (patterns as in pkgs) that pkgs matched but
	// the rule leaves out.
	except []string
	reason string
}

var depRules = []depRule{
	{
		pkgs: []string{"affinity/..."}, stdOnly: true,
		reason: "placement is a pure function of a snapshot; a program takes it without a media or membership stack",
	},
	{
		pkgs: []string{"signaling", "signaling/wire"}, deny: slices.Concat(server, pion, hashi),
		reason: "signaling reaches the media and the membership only through its Media and Cluster interfaces, " +
			"so it can front another SFU or membership and builds without pion, serf or raft",
	},
	{
		pkgs: []string{"signaling/client"}, deny: slices.Concat(server, hashi),
		reason: "the Go client is a WebRTC peer and needs pion's peer connection, but a client program must not " +
			"build the server's media core, relay or membership",
	},
	{
		pkgs: []string{"sfu/..."}, deny: slices.Concat(hashi, []string{module + "/cluster", module + "/relay", module + "/signaling"}),
		reason: "the media core knows nothing of the cluster: it runs as a single SFU, and the relay feeds it " +
			"through sfu's own track types",
	},
	{
		pkgs: []string{"cluster/..."}, deny: slices.Concat(pion, []string{module + "/sfu", module + "/relay", module + "/signaling"}),
		reason: "the membership carries no media; it runs, and is tested, without a WebRTC stack",
	},
	{
		pkgs: []string{"relay/..."}, deny: slices.Concat(hashi, []string{module + "/cluster", module + "/signaling"}),
		reason: "the relay is told its peers and channels by its caller (shoal.Node), not by the membership",
	},
	{
		pkgs: []string{"affinity/...", "signaling/...", "sfu/...", "relay/...", "cluster/..."}, deny: prom,
		reason: "metrics are made at the edge (the root package's metrics.go) from the packages' plain snapshots; " +
			"the packages keep no registry and a program that does not export metrics does not build Prometheus",
	},
	{
		pkgs: []string{"..."}, except: []string{"internal/testutil/..."}, deny: []string{module + "/internal/testutil", "go.uber.org/goleak"},
		reason: "test helpers (goroutine-leak checks, browsers) stay out of programs",
	},
}

// importRule says which packages alone may import a third-party module
// themselves; others reach it only through them.
type importRule struct {
	deps    []string // import-path prefixes
	allowed []string // module-relative directories and what is below them
	reason  string
}

var importRules = []importRule{
	{
		deps: hashi, allowed: []string{"cluster"},
		reason: "serf and raft are the default membership's implementation; no other package sees their types",
	},
	{
		deps: pion, allowed: []string{"sfu", "relay", "internal/slogpion", "signaling/client", "internal/testutil/pionapi", "examples/load", "internal/multiclustertest"},
		reason: "pion's types cross no other package's API (the root converts ICE candidates through JSON for this), " +
			"so a pion upgrade touches these packages (and the tests' pion peers) alone",
	},
}

type pkg struct {
	ImportPath   string
	Deps         []string
	Imports      []string
	TestImports  []string
	XTestImports []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// within reports whether path is prefix or lies below it.
func within(path, prefix string) bool {
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}

// matches reports whether the module-relative directory rel matches
// pattern: the same directory, or below it for "dir/..." ("..." alone is
// every package).
func matches(rel, pattern string) bool {
	if pattern == "..." {
		return true
	}
	if dir, ok := strings.CutSuffix(pattern, "/..."); ok {
		return within(rel, dir)
	}
	return rel == pattern
}

// isStdlib reports whether an import path belongs to the standard library:
// its first element has no dot.
func isStdlib(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}

func relPath(importPath string) string {
	return strings.TrimPrefix(strings.TrimPrefix(importPath, module), "/")
}

func (r depRule) applies(rel string) bool {
	match := func(p string) bool { return matches(rel, p) }
	return slices.ContainsFunc(r.pkgs, match) && !slices.ContainsFunc(r.except, match)
}

// violations returns one message per dependency or import that breaks a
// rule, and one per rule that matches no package (a rule left behind by a
// rename guards nothing).
func violations(pkgs []pkg) []string {
	var bad []string
	used := make([]bool, len(depRules))
	for _, p := range pkgs {
		rel := relPath(p.ImportPath)
		for i, r := range depRules {
			if !r.applies(rel) {
				continue
			}
			used[i] = true
			for _, dep := range p.Deps {
				switch {
				case r.stdOnly && !isStdlib(dep) && !(within(dep, module) && r.applies(relPath(dep))):
					bad = append(bad, fmt.Sprintf("%s depends on %s, but may use only the standard library: %s", p.ImportPath, dep, r.reason))
				case slices.ContainsFunc(r.deny, func(d string) bool { return within(dep, d) }):
					bad = append(bad, fmt.Sprintf("%s depends on %s: %s", p.ImportPath, dep, r.reason))
				}
			}
		}
		for _, imp := range slices.Concat(p.Imports, p.TestImports, p.XTestImports) {
			for _, r := range importRules {
				if slices.ContainsFunc(r.deps, func(d string) bool { return within(imp, d) }) &&
					!slices.ContainsFunc(r.allowed, func(dir string) bool { return within(rel, dir) }) {
					bad = append(bad, fmt.Sprintf("%s imports %s; only %v may: %s", p.ImportPath, imp, r.allowed, r.reason))
				}
			}
		}
	}
	for i, r := range depRules {
		if !used[i] {
			bad = append(bad, fmt.Sprintf("the rule for %v matches no package", r.pkgs))
		}
	}
	slices.Sort(bad)
	return slices.Compact(bad)
}

func TestDependencyFences(t *testing.T) {
	for _, msg := range violations(listPackages(t)) {
		t.Error(msg)
	}
}

// TestFenceCatches makes sure the checker is not vacuous: fabricated packages
// that break each rule, directly or through another package, are reported,
// naming the dependency.
func TestFenceCatches(t *testing.T) {
	all := []pkg{
		{ImportPath: module + "/affinity", Deps: []string{"sort", "github.com/google/uuid"}},
		{ImportPath: module + "/signaling", Deps: []string{module + "/internal/helper", "github.com/pion/webrtc/v4"}},
		{ImportPath: module + "/signaling/wire", Deps: []string{module + "/sfu"}},
		{ImportPath: module + "/signaling/client", Deps: []string{"github.com/pion/webrtc/v4", module + "/relay"}},
		{ImportPath: module + "/sfu", Deps: []string{"github.com/hashicorp/raft"}, TestImports: []string{"github.com/hashicorp/serf/serf"}},
		{ImportPath: module + "/cluster", Deps: []string{"github.com/pion/rtp"}},
		{ImportPath: module + "/relay", Deps: []string{module + "/cluster"}},
		{ImportPath: module + "/relay/sub", Deps: []string{"github.com/prometheus/client_golang/prometheus"}},
		{ImportPath: module + "/examples/x", Deps: []string{"go.uber.org/goleak"}},
		{ImportPath: module, Imports: []string{"github.com/pion/webrtc/v4"}},
	}
	got := violations(all)
	for _, want := range []string{
		"/affinity depends on github.com/google/uuid",
		"/signaling depends on github.com/pion/webrtc/v4",
		"/signaling/wire depends on " + module + "/sfu",
		"/signaling/client depends on " + module + "/relay",
		"/sfu depends on github.com/hashicorp/raft",
		"/sfu imports github.com/hashicorp/serf/serf",
		"/cluster depends on github.com/pion/rtp",
		"/relay depends on " + module + "/cluster",
		"/relay/sub depends on github.com/prometheus/client_golang/prometheus",
		"/examples/x depends on go.uber.org/goleak",
		module + " imports github.com/pion/webrtc/v4",
	} {
		if !slices.ContainsFunc(got, func(msg string) bool { return strings.Contains(msg, want) }) {
			t.Errorf("fence did not report %q; got:\n%s", want, strings.Join(got, "\n"))
		}
	}
	if slices.ContainsFunc(got, func(msg string) bool { return strings.Contains(msg, "client depends on github.com/pion") }) {
		t.Errorf("fence reported pion under signaling/client, which may use it: %q", got)
	}
	good := []pkg{
		{ImportPath: module + "/affinity", Deps: []string{"sort", "time", "vendor/golang.org/x/crypto/chacha20"}},
		{ImportPath: module + "/affinity/sub", Deps: []string{module + "/affinity", "math"}},
		{ImportPath: module + "/signaling", Deps: []string{module + "/affinity", "github.com/coder/websocket"}},
		{ImportPath: module + "/signaling/wire"},
		{ImportPath: module + "/signaling/client", Deps: []string{"github.com/pion/webrtc/v4", module + "/signaling"}},
		{ImportPath: module + "/cluster", Deps: []string{"github.com/hashicorp/serf/serf", module + "/affinity"},
			Imports: []string{"github.com/hashicorp/raft"}},
		{ImportPath: module + "/sfu", Deps: []string{"github.com/pion/webrtc/v4"}, Imports: []string{"github.com/pion/webrtc/v4"}},
		{ImportPath: module + "/relay", Deps: []string{module + "/sfu", "github.com/pion/srtp/v3"}},
		{ImportPath: module + "/internal/testutil", Deps: []string{"go.uber.org/goleak"}},
		{ImportPath: module, Deps: []string{"github.com/pion/webrtc/v4", "github.com/hashicorp/raft", "github.com/prometheus/client_golang/prometheus"}},
	}
	if got := violations(good); len(got) != 0 {
		t.Errorf("fence reported allowed dependencies: %q", got)
	}
	if got := violations(slices.DeleteFunc(slices.Clone(good), func(p pkg) bool { return strings.Contains(p.ImportPath, "/affinity") })); !slices.ContainsFunc(got,
		func(msg string) bool { return strings.Contains(msg, "[affinity/...] matches no package") }) {
		t.Errorf("a rule matching no package was not reported: %q", got)
	}
}
