package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	yamlv3 "go.yaml.in/yaml/v3"
	"sigs.k8s.io/yaml"
)

// MaxInputSize bounds what ReadPath reads from one file or from stdin.
const MaxInputSize = 16 << 20

// DecodeError is a problem with an input file: a syntax error, or an object that cannot be
// one of the seven kinds as written. Line and Column are 1-based (Column counts bytes; a
// tab is one); they are 0 when unknown (YAML syntax errors carry a line only).
type DecodeError struct {
	Source  string
	Line    int
	Column  int
	Object  string // "EService/foo", or just the kind, or "" for syntax errors
	Field   string // JSON path of the field at fault, e.g. "metadata.name"
	Message string
}

// Error formats the error as "source:line:col: Object: field: message".
func (e *DecodeError) Error() string {
	var b strings.Builder
	b.WriteString(e.Source)
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line))
		if e.Column > 0 {
			b.WriteString(":" + strconv.Itoa(e.Column))
		}
	}
	b.WriteString(": ")
	if e.Object != "" {
		b.WriteString(e.Object + ": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Message)
	return b.String()
}

// Decode decodes every object in data, which is JSON if its first non-space byte is '{' or
// '[' and YAML otherwise. JSON may hold one object, an array of objects, or several of
// either one after another (as the seed's samples are written); YAML may hold several
// documents separated by "---", each an object or a list of objects. source names data in
// errors. Unknown and duplicate fields, a missing or unknown kind and an apiVersion other
// than "v1" are errors. Decoded objects are normalized (see Normalize) but not validated
// (see Validate). Any error yields no objects; the error is a *DecodeError.
func Decode(source string, data []byte) ([]Object, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // UTF-8 byte order mark
	i := skipSpace(data, 0)
	if i < len(data) && (data[i] == '{' || data[i] == '[') {
		return decodeJSON(source, data)
	}
	return decodeYAML(source, data)
}

// ReadPath decodes the objects at path: "-" reads stdin (named "<stdin>" in errors), a file
// is decoded, and a directory has each of its *.json, *.yaml and *.yml files decoded in
// name order (not recursively). All or nothing: on any error no objects are returned.
// Finding no object at all is an error.
func ReadPath(path string, stdin io.Reader) ([]Object, error) {
	if path == "-" {
		if stdin == nil {
			return nil, errors.New("<stdin>: no standard input")
		}
		data, err := readLimited(stdin, "<stdin>")
		if err != nil {
			return nil, err
		}
		return nonEmpty("<stdin>", data)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		data, err := readFile(path)
		if err != nil {
			return nil, err
		}
		return nonEmpty(path, data)
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, err
	}
	var all []Object
	for _, e := range entries { // ReadDir sorts by name
		switch strings.ToLower(filepath.Ext(e.Name())) {
		case ".json", ".yaml", ".yml":
		default:
			continue
		}
		if e.IsDir() {
			continue
		}
		p := filepath.Join(path, e.Name())
		data, err := readFile(p)
		if err != nil {
			return nil, err
		}
		objs, err := Decode(p, data)
		if err != nil {
			return nil, err
		}
		all = append(all, objs...)
	}
	if len(all) == 0 {
		return nil, fmt.Errorf("%s: no objects found in *.json, *.yaml or *.yml files", path)
	}
	return all, nil
}

func nonEmpty(source string, data []byte) ([]Object, error) {
	objs, err := Decode(source, data)
	if err != nil {
		return nil, err
	}
	if len(objs) == 0 {
		return nil, fmt.Errorf("%s: no objects found", source)
	}
	return objs, nil
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readLimited(f, path)
}

func readLimited(r io.Reader, source string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxInputSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	if len(data) > MaxInputSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", source, MaxInputSize)
	}
	return data, nil
}

// ---- JSON ----

func decodeJSON(source string, data []byte) ([]Object, error) {
	if off := jsonTooDeep(data); off >= 0 {
		line, col := lineCol(data, off)
		return nil, &DecodeError{Source: source, Line: line, Column: col, Message: depthMessage}
	}
	var out []Object
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		start := skipSpace(data, int(dec.InputOffset()))
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, jsonSyntaxError(source, data, err)
		}
		loc := func(_ int, off int) locFunc {
			return func(t *jnode, path []string) (int, int) {
				return lineCol(data, start+off+t.find(path))
			}
		}
		objs, err := decodeValue(source, raw, len(out), loc)
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
}

func jsonSyntaxError(source string, data []byte, err error) error {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		off := int(se.Offset) - 1 // Offset counts the bytes read including the bad one
		if off < 0 {
			off = 0
		}
		if off > len(data) {
			off = len(data)
		}
		line, col := lineCol(data, off)
		return &DecodeError{Source: source, Line: line, Column: col, Message: se.Error()}
	case errors.Is(err, io.ErrUnexpectedEOF):
		line, col := lineCol(data, len(data))
		return &DecodeError{Source: source, Line: line, Column: col, Message: "unexpected end of input (unclosed object or array?)"}
	}
	return &DecodeError{Source: source, Message: err.Error()}
}

// lineCol converts a byte offset into a 1-based line and column.
func lineCol(data []byte, off int) (int, int) {
	if off > len(data) {
		off = len(data)
	}
	if off < 0 {
		off = 0
	}
	line := 1 + bytes.Count(data[:off], []byte{'\n'})
	col := off - (bytes.LastIndexByte(data[:off], '\n') + 1) + 1
	return line, col
}

func skipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\r', '\n':
			i++
		default:
			return i
		}
	}
	return i
}

// skipSep skips white space and the ',' and ':' that separate JSON tokens.
func skipSep(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\r', '\n', ',', ':':
			i++
		default:
			return i
		}
	}
	return i
}

// ---- YAML ----

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

// ---- objects ----

// locFunc gives the line and column of the field at path of an object whose JSON tree is t.
type locFunc func(t *jnode, path []string) (line, col int)

// decodeValue decodes one top-level value: an object or an array of objects. loc(index,
// off) gives the locator for the element at index (-1: the value itself) starting at byte
// off of raw. count is the number of objects decoded before this value.
func decodeValue(source string, raw []byte, count int, loc func(index, off int) locFunc) ([]Object, error) {
	i := skipSpace(raw, 0)
	if i >= len(raw) {
		return nil, nil
	}
	switch raw[i] {
	case '{':
		o, err := decodeObject(source, raw[i:], count, loc(-1, i))
		if err != nil {
			return nil, err
		}
		return []Object{o}, nil
	case '[':
		dec := json.NewDecoder(bytes.NewReader(raw))
		if _, err := dec.Token(); err != nil {
			return nil, jsonSyntaxError(source, raw, err)
		}
		var out []Object
		for idx := 0; dec.More(); idx++ {
			off := skipSep(raw, int(dec.InputOffset()))
			var el json.RawMessage
			if err := dec.Decode(&el); err != nil {
				return nil, jsonSyntaxError(source, raw, err)
			}
			l := loc(idx, off)
			if len(el) == 0 || el[0] != '{' {
				line, col := l(nil, nil)
				return nil, &DecodeError{Source: source, Line: line, Column: col,
					Message: fmt.Sprintf("list element %d: expected an object, got %s", idx, jsonKind(el))}
			}
			o, err := decodeObject(source, el, count+len(out), l)
			if err != nil {
				return nil, err
			}
			out = append(out, o)
		}
		return out, nil
	}
	line, col := loc(-1, i)(nil, nil)
	return nil, &DecodeError{Source: source, Line: line, Column: col,
		Message: fmt.Sprintf("expected an object or a list of objects, got %s", jsonKind(raw[i:]))}
}

func jsonKind(raw []byte) string {
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		return "a list"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// decodeObject decodes one JSON object as one of the seven kinds.
func decodeObject(source string, raw []byte, index int, loc locFunc) (Object, error) {
	tree, dupPath, err := parseTree(raw)
	if err != nil { // raw came out of a json.Decoder: cannot happen
		return nil, &DecodeError{Source: source, Message: err.Error()}
	}
	fail := func(obj string, path []string, format string, args ...any) error {
		line, col := loc(tree, path)
		return &DecodeError{Source: source, Line: line, Column: col, Object: obj,
			Field: joinPath(path), Message: fmt.Sprintf(format, args...)}
	}
	objName := fmt.Sprintf("object #%d", index+1)

	kindNode := tree.fields["kind"]
	var kind string
	if kindNode == nil {
		return nil, fail(objName, nil, "no kind (want one of %s)", strings.Join(Kinds, ", "))
	}
	if json.Unmarshal(kindNode.raw(raw), &kind) != nil {
		return nil, fail(objName, []string{"kind"}, "must be a string")
	}
	if !slices.Contains(Kinds, kind) {
		if k, err := ParseKind(kind); err == nil {
			return nil, fail(objName, []string{"kind"}, "unknown kind %q (did you mean %q?)", kind, k)
		}
		return nil, fail(objName, []string{"kind"}, "unknown kind %q (want one of %s)", kind, strings.Join(Kinds, ", "))
	}
	objName = kind
	if name := nameHint(tree, raw, kind); name != "" {
		objName = kind + "/" + name
	}
	if dupPath != nil {
		return nil, fail(objName, dupPath, "duplicate field")
	}
	if n := tree.fields["apiVersion"]; n != nil {
		var v string
		if json.Unmarshal(n.raw(raw), &v) != nil || (v != "" && v != "v1") {
			return nil, fail(objName, []string{"apiVersion"}, "must be \"v1\", got %s", n.raw(raw))
		}
	}
	o, _ := New(kind)
	if path, known := unknownField(tree, reflect.TypeOf(o).Elem(), nil); path != nil {
		msg := "unknown field"
		if s := suggest(path[len(path)-1], known); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		}
		return nil, fail(objName, path, "%s", msg)
	}
	if err := json.Unmarshal(raw, o); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			path := strings.Split(te.Field, ".")
			if te.Field == "" {
				path = nil
			}
			return nil, fail(objName, path, "cannot use %s as %s", te.Value, typeName(te.Type))
		}
		msg := strings.TrimPrefix(err.Error(), "json: ")
		if strings.Contains(msg, ",string") {
			return nil, fail(objName, []string{"metadata", "resourceVersion"}, "must be a decimal number in a string")
		}
		return nil, fail(objName, nil, "%s", msg)
	}
	if s, ok := o.(*EServer); ok && s.EServerName != "" && s.Metadata.Name != "" && s.EServerName != s.Metadata.Name {
		return nil, fail(objName, []string{"eServerName"}, "is %q but metadata.name is %q; set one or make them equal", s.EServerName, s.Metadata.Name)
	}
	Normalize(o)
	return o, nil
}

// nameHint finds an object's name for error messages before it is decoded.
func nameHint(t *jnode, raw []byte, kind string) string {
	var s string
	if m := t.fields["metadata"]; m != nil {
		if n := m.fields["name"]; n != nil && json.Unmarshal(n.raw(raw), &s) == nil && s != "" {
			return s
		}
	}
	for _, f := range []string{"eServerName", "eServiceName"} {
		if f == "eServiceName" && kind != KindServiceExpose {
			continue
		}
		if n := t.fields[f]; n != nil && json.Unmarshal(n.raw(raw), &s) == nil && s != "" {
			return s
		}
	}
	return ""
}

func joinPath(path []string) string {
	var b strings.Builder
	for i, s := range path {
		if i > 0 && !strings.HasPrefix(s, "[") {
			b.WriteByte('.')
		}
		b.WriteString(s)
	}
	return b.String()
}

func typeName(t reflect.Type) string {
	if t == nil {
		return "this field"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return fmt.Sprintf("an integer (%s)", t.Kind())
	case reflect.Bool:
		return "a boolean"
	case reflect.Slice:
		return "a list of " + strings.TrimPrefix(strings.TrimPrefix(typeName(t.Elem()), "a "), "an ") + "s"
	case reflect.Map:
		return "an object of " + strings.TrimPrefix(typeName(t.Elem()), "a ") + "s"
	case reflect.Struct:
		return "an object"
	}
	return t.String()
}

// ---- JSON tree: positions, duplicate and unknown fields ----

// jnode is a parsed JSON value with byte offsets into the object's text.
type jnode struct {
	off, end int // value is raw[off:end]
	keyOff   map[string]int
	fields   map[string]*jnode // objects
	keys     []string          // objects, in order
	elems    []*jnode          // arrays
	isObj    bool
	isArr    bool
}

func (n *jnode) raw(raw []byte) []byte { return raw[n.off:n.end] }

// find returns the offset of the key (or array element) at path, or of the deepest value
// found on the way.
func (n *jnode) find(path []string) int {
	if n == nil {
		return 0
	}
	off := n.off
	for _, seg := range path {
		if strings.HasPrefix(seg, "[") {
			i, err := strconv.Atoi(strings.Trim(seg, "[]"))
			if !n.isArr || err != nil || i < 0 || i >= len(n.elems) {
				return off
			}
			n = n.elems[i]
			off = n.off
			continue
		}
		c := n.fields[seg]
		if c == nil {
			return off
		}
		off = n.keyOff[seg]
		n = c
	}
	return off
}

// parseTree parses raw (valid JSON) into a jnode tree. dup is the path of the first
// duplicated key, if any.
func parseTree(raw []byte) (t *jnode, dup []string, err error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var walk func(path []string) (*jnode, error)
	walk = func(path []string) (*jnode, error) {
		n := &jnode{off: skipSep(raw, int(dec.InputOffset()))}
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		switch tok {
		case json.Delim('{'):
			n.isObj = true
			n.fields = map[string]*jnode{}
			n.keyOff = map[string]int{}
			for dec.More() {
				koff := skipSep(raw, int(dec.InputOffset()))
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				key, _ := kt.(string)
				kpath := append(slices.Clip(path), key)
				c, err := walk(kpath)
				if err != nil {
					return nil, err
				}
				if _, ok := n.fields[key]; ok {
					if dup == nil {
						dup = kpath
						n.keyOff[key] = koff // point errors at the duplicate
					}
					continue
				}
				n.fields[key], n.keyOff[key] = c, koff
				n.keys = append(n.keys, key)
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
		case json.Delim('['):
			n.isArr = true
			for i := 0; dec.More(); i++ {
				c, err := walk(append(slices.Clip(path), "["+strconv.Itoa(i)+"]"))
				if err != nil {
					return nil, err
				}
				n.elems = append(n.elems, c)
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
		}
		n.end = int(dec.InputOffset())
		return n, nil
	}
	t, err = walk(nil)
	return t, dup, err
}

// unknownField returns the path of the first field of n that type t does not have, with
// the field names t does have at that place.
func unknownField(n *jnode, t reflect.Type, path []string) ([]string, []string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		if !n.isObj {
			return nil, nil
		}
		fields := jsonFields(t)
		for _, k := range n.keys {
			p := append(slices.Clip(path), k)
			ft, ok := fields.types[k]
			if !ok {
				return p, fields.names
			}
			if up, known := unknownField(n.fields[k], ft, p); up != nil {
				return up, known
			}
		}
	case reflect.Map:
		if !n.isObj {
			return nil, nil
		}
		for _, k := range n.keys {
			if up, known := unknownField(n.fields[k], t.Elem(), append(slices.Clip(path), k)); up != nil {
				return up, known
			}
		}
	case reflect.Slice, reflect.Array:
		if !n.isArr {
			return nil, nil
		}
		for i, e := range n.elems {
			if up, known := unknownField(e, t.Elem(), append(slices.Clip(path), "["+strconv.Itoa(i)+"]")); up != nil {
				return up, known
			}
		}
	}
	return nil, nil
}

type fieldSet struct {
	types map[string]reflect.Type
	names []string // sorted
}

var fieldCache sync.Map // reflect.Type → fieldSet

// jsonFields lists the JSON field names of struct type t as encoding/json sees them
// (embedded structs without a name inlined).
func jsonFields(t reflect.Type) fieldSet {
	if v, ok := fieldCache.Load(t); ok {
		return v.(fieldSet)
	}
	fs := fieldSet{types: map[string]reflect.Type{}}
	var add func(t reflect.Type)
	add = func(t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, _, _ := strings.Cut(tag, ",")
			if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
				add(f.Type)
				continue
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			fs.types[name] = f.Type
		}
	}
	add(t)
	for k := range fs.types {
		fs.names = append(fs.names, k)
	}
	sort.Strings(fs.names)
	fieldCache.Store(t, fs)
	return fs
}

// suggest returns the known field closest to the unknown one, if it is close.
func suggest(unknown string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if strings.EqualFold(k, unknown) {
			return k
		}
		if d := editDistance(strings.ToLower(unknown), strings.ToLower(k)); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
