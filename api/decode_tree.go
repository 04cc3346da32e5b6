package api

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
)

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
