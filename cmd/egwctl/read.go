package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/egw-project/egw/api"
)

// maxInputSize bounds what readPath reads from one file or from stdin.
const maxInputSize = 16 << 20

// readPath decodes the objects at path: "-" reads stdin (named "<stdin>" in errors), a file
// is decoded, and a directory has each of its *.json, *.yaml and *.yml files decoded in
// name order (not recursively). All or nothing: on any error no objects are returned.
// Finding no object at all is an error.
func readPath(path string, stdin io.Reader) ([]api.Object, error) {
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
	var all []api.Object
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
		objs, err := api.Decode(p, data)
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

func nonEmpty(source string, data []byte) ([]api.Object, error) {
	objs, err := api.Decode(source, data)
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
	data, err := io.ReadAll(io.LimitReader(r, maxInputSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	if len(data) > maxInputSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", source, maxInputSize)
	}
	return data, nil
}
