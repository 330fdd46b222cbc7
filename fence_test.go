package shoal_test

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/shoal-sfu/shoal"

// fence says which packages may import which third-party modules. A package
// matches a rule when its import path, relative to the module, equals the
// rule's directory or lies below it.
type fence struct {
	// deps are import-path prefixes of the fenced dependency.
	deps []string
	// allowed lists the module-relative directories that may import it.
	allowed []string
}

var fences = []fence{
	{
		deps:    []string{"github.com/hashicorp/serf", "github.com/hashicorp/memberlist", "github.com/hashicorp/raft"},
		allowed: []string{"cluster"},
	},
	{
		deps:    []string{"github.com/pion/"},
		allowed: []string{"sfu", "relay", "internal/slogpion", "signaling/client"},
	},
}

// stdlibOnly lists the directories whose packages import only the standard
// library and this module's own stdlib-only packages.
var stdlibOnly = []string{"affinity"}

type pkg struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
	Standard     bool
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

func under(rel, dir string) bool {
	return rel == dir || strings.HasPrefix(rel, dir+"/")
}

// isStdlib reports whether an import path belongs to the standard library:
// its first element has no dot (and it is not this module).
func isStdlib(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}

// violations returns one message per import that breaks a fence.
func violations(pkgs []pkg) []string {
	var bad []string
	for _, p := range pkgs {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		imports := map[string]bool{}
		for _, list := range [][]string{p.Imports, p.TestImports, p.XTestImports} {
			for _, imp := range list {
				imports[imp] = true
			}
		}
		for imp := range imports {
			for _, f := range fences {
				for _, dep := range f.deps {
					if !strings.HasPrefix(imp, dep) {
						continue
					}
					ok := false
					for _, dir := range f.allowed {
						ok = ok || under(rel, dir)
					}
					if !ok {
						bad = append(bad, fmt.Sprintf("%s imports %s; only %v may", p.ImportPath, imp, f.allowed))
					}
				}
			}
			for _, dir := range stdlibOnly {
				if under(rel, dir) && !isStdlib(imp) && !strings.HasPrefix(imp, module+"/"+dir) {
					bad = append(bad, fmt.Sprintf("%s imports %s; %s/ may import only the standard library", p.ImportPath, imp, dir))
				}
			}
		}
	}
	return bad
}

func TestDependencyFences(t *testing.T) {
	for _, msg := range violations(listPackages(t)) {
		t.Error(msg)
	}
}

// TestFenceCatches makes sure the checker is not vacuous: fabricated packages
// that break each fence are reported, naming the import.
func TestFenceCatches(t *testing.T) {
	bad := []pkg{
		{ImportPath: module + "/affinity", Imports: []string{"sort", "github.com/google/uuid"}},
		{ImportPath: module + "/signaling", Imports: []string{"github.com/pion/webrtc/v4"}},
		{ImportPath: module + "/sfu", TestImports: []string{"github.com/hashicorp/raft"}},
	}
	got := violations(bad)
	for _, want := range []string{"github.com/google/uuid", "github.com/pion/webrtc/v4", "github.com/hashicorp/raft"} {
		found := false
		for _, msg := range got {
			found = found || strings.Contains(msg, want)
		}
		if !found {
			t.Errorf("fence did not report an import of %s; got %q", want, got)
		}
	}
	good := []pkg{
		{ImportPath: module + "/affinity", Imports: []string{"sort", "time"}},
		{ImportPath: module + "/cluster", Imports: []string{"github.com/hashicorp/serf/serf", module + "/affinity"}},
		{ImportPath: module + "/sfu", Imports: []string{"github.com/pion/webrtc/v4"}},
	}
	if got := violations(good); len(got) != 0 {
		t.Errorf("fence reported allowed imports: %q", got)
	}
}
