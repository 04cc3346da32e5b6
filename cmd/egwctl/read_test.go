package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/egw-project/egw/api"
)

func TestReadPath(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("b.yaml", "kind: ESite\nmetadata: {name: b}\n")
	write("a.json", `{"kind":"ESite","metadata":{"name":"a"}}`)
	write("c.yml", "kind: ESite\nmetadata: {name: c}\n")
	write("d.txt", "not an object")
	write("README", "not an object")
	if err := os.Mkdir(filepath.Join(dir, "sub.json"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sub.json", "z.json"), []byte(`{"kind":"ESite","metadata":{"name":"z"}}`), 0o600); err != nil {
		t.Fatal(err)
	}

	keys := func(objs []api.Object) string {
		var s []string
		for _, o := range objs {
			s = append(s, api.Key(o))
		}
		return strings.Join(s, " ")
	}

	objs, err := readPath(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := keys(objs); got != "ESite/a ESite/b ESite/c" {
		t.Fatalf("dir: %s", got)
	}

	objs, err = readPath(filepath.Join(dir, "b.yaml"), nil)
	if err != nil || keys(objs) != "ESite/b" {
		t.Fatalf("file: %v %v", keys(objs), err)
	}

	objs, err = readPath("-", strings.NewReader(`[{"kind":"ESite","metadata":{"name":"s"}}]`))
	if err != nil || keys(objs) != "ESite/s" {
		t.Fatalf("stdin: %v %v", keys(objs), err)
	}

	_, err = readPath("-", strings.NewReader(`{"kind":"ESite",}`))
	if err == nil || !strings.HasPrefix(err.Error(), "<stdin>:1:17: ") {
		t.Fatalf("stdin error: %v", err)
	}

	// All or nothing: one bad file, no objects.
	write("e.json", `{"kind":"ESite","metadata":{"name":"e"},"oops":1}`)
	objs, err = readPath(dir, nil)
	if err == nil || objs != nil {
		t.Fatalf("bad file in dir: objs %v err %v", keys(objs), err)
	}
	want := filepath.Join(dir, "e.json") + ":1:41: ESite/e: oops: unknown field"
	if err.Error() != want {
		t.Fatalf("err = %v, want %s", err, want)
	}

	empty := t.TempDir()
	if _, err := readPath(empty, nil); err == nil {
		t.Fatal("empty directory: no error")
	}
	if _, err := readPath(filepath.Join(empty, "missing.json"), nil); err == nil {
		t.Fatal("missing file: no error")
	}
	if _, err := readPath("-", strings.NewReader("# only a comment\n")); err == nil {
		t.Fatal("no objects on stdin: no error")
	}
	if _, err := readPath("-", bytes.NewReader(make([]byte, maxInputSize+1))); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("oversized input: %v", err)
	}
}
