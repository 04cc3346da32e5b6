package api

import (
	"runtime"
	"strings"
	"testing"
)

// deepBlockYAML nests n block mappings, each a key "a" one space deeper than the last.
func deepBlockYAML(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteString(strings.Repeat(" ", i+4) + "a:\n")
	}
	b.WriteString(strings.Repeat(" ", n+4) + "b: 1\n")
	return b.String()
}

func deepJSON(n int) string {
	return `{"kind":"ESite","metadata":{"name":"a","labels":` + strings.Repeat("[", n) + strings.Repeat("]", n) + `}}`
}

func deepYAMLFlow(n int) string {
	return "kind: ESite\nmetadata:\n  name: a\n  labels: " + strings.Repeat("[", n) + strings.Repeat("]", n) + "\n"
}

func TestNestingLimit(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		line     int
		col      int
	}{
		// Level 11 is the 9th '[' (object 1, metadata 2, labels' first '[' 3, at column 49).
		{"json", deepJSON(9990), 1, 49 + 8},
		{"json one level too deep", deepJSON(9), 1, 49 + 8},
		{"json list of objects", `[` + deepJSON(9), 1, 50 + 7},
		{"yaml flow", deepYAMLFlow(9990), 4, 11 + 8},
		{"yaml block", "kind: ESite\nmetadata:\n  labels:\n" + deepBlockYAML(12), 4 + 8, 13},
		{"yaml alias", "kind: ESite\nx: &a [[[[[[1]]]]]]\ny: [[[[[*a]]]]]\n", 3, 9},
		{"yaml self alias", "kind: ESite\nx: &a [*a]\n", 2, 8},
	} {
		_, err := Decode("in", []byte(tc.in))
		de, ok := err.(*DecodeError)
		if !ok || de.Message != depthMessage {
			t.Errorf("%s: got %v, want the nesting error", tc.name, err)
			continue
		}
		if de.Line != tc.line || de.Column != tc.col {
			t.Errorf("%s: at %d:%d, want %d:%d", tc.name, de.Line, de.Column, tc.line, tc.col)
		}
	}
	// Brackets in strings do not count; MaxDepth itself is fine.
	in := `{"kind":"ESite","metadata":{"name":"a","labels":{"x":"[[[[[[[[[[[[[[[\"{{{{{{{{{{{{"}}}`
	if _, err := Decode("in", []byte(in)); err != nil {
		t.Errorf("brackets inside a string: %v", err)
	}
	if _, err := Decode("in", []byte(deepJSON(8))); err == nil || strings.Contains(err.Error(), "nest deeper") {
		t.Errorf("depth %d: got %v, want a type error, not the nesting error", MaxDepth, err)
	}
}

// allocated is what Decode allocates for in, in bytes.
func allocated(in string) uint64 {
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	Decode("in", []byte(in))
	runtime.ReadMemStats(&m1)
	return m1.TotalAlloc - m0.TotalAlloc
}

// A deeply nested input costs memory linear in its size: ten times the nesting, at most
// about ten times the memory (it was quadratic: 1 GB for 20 KB nested 9,990 deep).
func TestNestingCostLinear(t *testing.T) {
	for _, f := range []struct {
		name string
		gen  func(int) string
	}{{"json", deepJSON}, {"yaml", deepYAMLFlow}} {
		small, large := allocated(f.gen(9990)), allocated(f.gen(99900))
		t.Logf("%s: %d bytes for 20 KB, %d bytes for 200 KB", f.name, small, large)
		if large > 20*small+1<<20 {
			t.Errorf("%s: ten times the nesting costs %d bytes against %d: not linear", f.name, large, small)
		}
		if small > 64<<20 {
			t.Errorf("%s: a 20 KB input costs %d bytes", f.name, small)
		}
	}
}

func BenchmarkDecodeDeep(b *testing.B) {
	in := []byte(deepJSON(9990))
	b.ReportAllocs()
	for b.Loop() {
		Decode("in", in)
	}
}
