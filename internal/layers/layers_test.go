package layers

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// imports maps every package of the repository (relative to Module) to the module
// packages its non-test files import.
func imports(t *testing.T) map[string][]string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	fset := token.NewFileSet()
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != root && (strings.HasPrefix(n, ".") || n == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		pkg := filepath.ToSlash(rel)
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if dep, ok := strings.CutPrefix(p, Module+"/"); ok && !slices.Contains(out[pkg], dep) {
				out[pkg] = append(out[pkg], dep)
			}
		}
		if _, ok := out[pkg]; !ok {
			out[pkg] = nil
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// violations lists every import of graph against Rank and Only.
func violations(graph map[string][]string) []string {
	var bad []string
	for pkg, deps := range graph {
		rank, ok := RankOf(pkg)
		if !ok {
			bad = append(bad, pkg+": not in layers.Rank (place it in the dependency direction)")
			continue
		}
		if rank >= Tools {
			continue
		}
		for _, dep := range deps {
			if only, ok := Only[pkg]; ok && !slices.Contains(only, dep) {
				bad = append(bad, pkg+" imports "+dep+": it may import only "+strings.Join(only, ", "))
				continue
			}
			if dr, ok := RankOf(dep); !ok || dr >= rank {
				bad = append(bad, pkg+" imports "+dep+" against the direction "+
					"cmd → gateway, controlplane → overlay, dnsd → nat → policy, vpresence → api")
			}
		}
	}
	slices.Sort(bad)
	return bad
}

func TestImportDirection(t *testing.T) {
	graph := imports(t)
	if len(graph["nat"]) == 0 || len(graph["gateway"]) == 0 {
		t.Fatalf("the walk found no imports of nat or gateway: %v", graph)
	}
	for _, v := range violations(graph) {
		t.Error(v)
	}
}

// The check itself: each kind of wrong import is caught.
func TestViolationsCaught(t *testing.T) {
	for _, tc := range []struct {
		graph map[string][]string
		want  string
	}{
		{map[string][]string{"api": {"nat"}}, "api imports nat against"},
		{map[string][]string{"nat": {"overlay"}}, "nat imports overlay against"},
		{map[string][]string{"gateway": {"controlplane"}}, "gateway imports controlplane against"},
		{map[string][]string{"policy": {"vpresence"}}, "policy imports vpresence against"},
		{map[string][]string{"cmd/egwctl": {"controlplane"}}, "it may import only"},
		{map[string][]string{"newpkg": nil}, "not in layers.Rank"},
		{map[string][]string{"policy": {"nat/packet"}}, "policy imports nat/packet against"},
	} {
		got := violations(tc.graph)
		if len(got) != 1 || !strings.Contains(got[0], tc.want) {
			t.Errorf("%v: got %q, want %q", tc.graph, got, tc.want)
		}
	}
	if got := violations(map[string][]string{"gateway": {"nat", "api", "internal/secret"}, "cmd/edgegateway": {"gateway"},
		"nat": {"nat/packet"}, "overlay": {"nat/packet"}, "nat/packet": {"internal/ip4"}}); len(got) != 0 {
		t.Errorf("allowed imports flagged: %q", got)
	}
}
