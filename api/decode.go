package api

// Decoding turns JSON or YAML text into objects in stages, one file each: this file
// (entry point and errors), decode_depth.go (the nesting limit, checked first),
// decode_json.go and decode_yaml.go (syntax, positions), decode_object.go (kind, unknown and
// duplicate fields, typed decoding) and decode_tree.go (the positioned JSON tree those use).
// Reading files and directories is the caller's (egwctl apply).

import (
	"bytes"
	"strconv"
	"strings"
)

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
