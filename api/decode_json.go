package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
)

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
