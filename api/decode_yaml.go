package api

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"

	yamlv3 "go.yaml.in/yaml/v3"
	"sigs.k8s.io/yaml"
)

var yamlLineRE = regexp.MustCompile(`line (\d+): `)

func decodeYAML(source string, data []byte) ([]Object, error) {
	var out []Object
	for _, doc := range splitYAML(data) {
		if len(bytes.TrimSpace(doc.text)) == 0 {
			continue
		}
		// The node tree gives positions for errors and is checked for depth before the
		// conversion to JSON does any work.
		var root *yamlv3.Node
		var n yamlv3.Node
		if yamlv3.Unmarshal(doc.text, &n) == nil {
			root = &n
			if n.Kind == yamlv3.DocumentNode && len(n.Content) == 1 {
				root = n.Content[0]
			}
			if bad := yamlTooDeep(root); bad != nil {
				return nil, &DecodeError{Source: source, Line: doc.line + bad.Line - 1, Column: bad.Column, Message: depthMessage}
			}
		}
		js, err := yaml.YAMLToJSONStrict(doc.text)
		if err != nil {
			return nil, yamlError(source, doc.line, err)
		}
		if bytes.Equal(js, []byte("null")) { // only comments
			continue
		}
		if root == nil && jsonTooDeep(js) >= 0 { // the node tree was not there to check
			return nil, &DecodeError{Source: source, Line: doc.line, Message: depthMessage}
		}
		loc := func(index int, _ int) locFunc {
			obj := root
			if index >= 0 {
				obj = yamlChild(root, "["+strconv.Itoa(index)+"]")
			}
			return func(_ *jnode, path []string) (int, int) {
				return yamlFind(obj, path, doc.line)
			}
		}
		objs, err := decodeValue(source, js, len(out), loc)
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	return out, nil
}

type yamlDoc struct {
	text []byte
	line int // line of data where text starts
}

// splitYAML splits a YAML stream at "---" lines. The "---" itself is blanked rather than
// removed so that line and column numbers within each document stay those of data.
func splitYAML(data []byte) []yamlDoc {
	var docs []yamlDoc
	cur := yamlDoc{line: 1}
	lines := bytes.SplitAfter(data, []byte{'\n'})
	for i, l := range lines {
		if bytes.HasPrefix(l, []byte("---")) && (len(l) == 3 || strings.ContainsRune(" \t\r\n", rune(l[3]))) {
			docs = append(docs, cur)
			cur = yamlDoc{line: i + 1}
			l = append([]byte("   "), l[3:]...)
		}
		cur.text = append(cur.text, l...)
	}
	return append(docs, cur)
}

func yamlError(source string, docLine int, err error) error {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "error converting YAML to JSON: ")
	msg = strings.TrimPrefix(msg, "yaml: ")
	if m := yamlLineRE.FindStringSubmatchIndex(msg); m != nil {
		n, _ := strconv.Atoi(msg[m[2]:m[3]])
		rest := strings.TrimSpace(msg[m[1]:])
		return &DecodeError{Source: source, Line: docLine + n - 1, Message: rest}
	}
	return &DecodeError{Source: source, Line: docLine, Message: strings.TrimSpace(msg)}
}

func yamlResolve(n *yamlv3.Node) *yamlv3.Node {
	for i := 0; n != nil && n.Kind == yamlv3.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

// yamlChild returns the value at one path segment ("key" or "[i]") of n, or nil.
func yamlChild(n *yamlv3.Node, seg string) *yamlv3.Node {
	k, _ := yamlKeyChild(n, seg)
	return k
}

// yamlKeyChild returns the value at seg and, for a mapping, its key node.
func yamlKeyChild(n *yamlv3.Node, seg string) (val, key *yamlv3.Node) {
	n = yamlResolve(n)
	if n == nil {
		return nil, nil
	}
	if strings.HasPrefix(seg, "[") {
		i, err := strconv.Atoi(strings.Trim(seg, "[]"))
		if n.Kind != yamlv3.SequenceNode || err != nil || i < 0 || i >= len(n.Content) {
			return nil, nil
		}
		return n.Content[i], n.Content[i]
	}
	if n.Kind != yamlv3.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == seg {
			return n.Content[i+1], n.Content[i]
		}
	}
	return nil, nil
}

// yamlFind returns the line and column of the key at path below n (or of the deepest
// node found on the way), in data's numbering.
func yamlFind(n *yamlv3.Node, path []string, docLine int) (int, int) {
	if n == nil {
		return docLine, 0
	}
	at := n
	for _, seg := range path {
		val, key := yamlKeyChild(at, seg)
		if val == nil {
			break
		}
		at = val
		if key != nil {
			n = key
		}
	}
	return docLine + n.Line - 1, n.Column
}
