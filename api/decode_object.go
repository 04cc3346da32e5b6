package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
)

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
