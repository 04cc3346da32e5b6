package api

import (
	"fmt"

	yamlv3 "go.yaml.in/yaml/v3"
)

// MaxDepth is how deeply objects and lists may nest in an input, counting a top-level list
// and the object itself (the deepest field of any kind, status.conditions[i], sits at 5).
// Decode checks it before any other work, in one pass over the text, so a deeply nested
// input costs time and memory linear in its size (docs/ARCHITECTURE.md, "Input limits").
const MaxDepth = 10

// depthMessage is the error for an input nested deeper than MaxDepth.
var depthMessage = fmt.Sprintf("objects and lists nest deeper than %d levels (no object needs more than 5)", MaxDepth)

// jsonTooDeep returns the offset of the first '{' or '[' of data that opens level
// MaxDepth+1, or -1. Brackets inside strings do not count. data need not be valid JSON.
func jsonTooDeep(data []byte) int {
	depth := 0
	inString, escaped := false, false
	for i, c := range data {
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			if depth++; depth > MaxDepth {
				return i
			}
		case '}', ']':
			if depth > 0 {
				depth--
			}
		}
	}
	return -1
}

// yamlTooDeep returns the first node of n that sits below level MaxDepth (through
// aliases, which nest their anchor's content where they stand), or nil. An anchor's
// content is walked once per depth it is used at, so the work stays bounded by the size
// of the tree times MaxDepth however often it is aliased.
func yamlTooDeep(n *yamlv3.Node) *yamlv3.Node {
	type key struct {
		n     *yamlv3.Node
		depth int
	}
	seen := map[key]bool{}
	var walk func(n *yamlv3.Node, depth int) *yamlv3.Node
	walk = func(n *yamlv3.Node, depth int) *yamlv3.Node {
		if n == nil {
			return nil
		}
		if n.Kind == yamlv3.AliasNode {
			if seen[key{n.Alias, depth}] {
				return nil // this anchor at this depth was checked and found fine
			}
			seen[key{n.Alias, depth}] = true
			if bad := walk(n.Alias, depth); bad != nil {
				return n // report where the alias stands
			}
			return nil
		}
		if n.Kind == yamlv3.MappingNode || n.Kind == yamlv3.SequenceNode {
			if depth++; depth > MaxDepth {
				return n
			}
		}
		for _, c := range n.Content {
			if bad := walk(c, depth); bad != nil {
				return bad
			}
		}
		return nil
	}
	return walk(n, 0)
}
