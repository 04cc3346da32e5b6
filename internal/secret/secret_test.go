package secret

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteThenRead(t *testing.T) {
	p := filepath.Join(t.TempDir(), "key")
	if err := Write(p, []byte("s3cret\n")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", fi.Mode(), err)
	}
	if s, err := ReadLine(p, "key file"); err != nil || s != "s3cret" {
		t.Fatalf("ReadLine = %q, %v", s, err)
	}
	// Write replaces an existing file, even a wide one, with a 0600 one.
	os.Chmod(p, 0o644)
	if err := Write(p, []byte("new")); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode after replace %v", fi.Mode())
	}
	entries, _ := os.ReadDir(filepath.Dir(p))
	if len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}
}

func TestWriteFileMode(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "enroll.crt")
	if err := WriteFile(p, []byte("cert"), 0o644); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v, %v", fi.Mode(), err)
	}
	if b, err := os.ReadFile(p); err != nil || string(b) != "cert" {
		t.Fatalf("contents %q, %v", b, err)
	}
	// It replaces a file of another mode, with the mode asked for, and leaves no
	// temporary file.
	if err := WriteFile(p, []byte("cert 2"), 0o600); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode after replace %v", fi.Mode())
	}
	if b, _ := os.ReadFile(p); string(b) != "cert 2" {
		t.Fatalf("contents after replace %q", b)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}
	// A missing directory is an error, and nothing is written.
	if err := WriteFile(filepath.Join(dir, "missing", "f"), []byte("x"), 0o644); err == nil {
		t.Error("write into a missing directory succeeded")
	}
}

func TestReadRefuses(t *testing.T) {
	dir := t.TempDir()
	wide := filepath.Join(dir, "wide")
	os.WriteFile(wide, []byte("s3cret-contents"), 0o640)
	_, err := Read(wide, "API token file")
	if err == nil || !strings.Contains(err.Error(), "mode 0640") || !strings.Contains(err.Error(), "API token file") {
		t.Errorf("group-readable: %v", err)
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("the error shows the contents: %v", err)
	}
	if _, err := Read(dir, "key"); err == nil {
		t.Error("a directory was read")
	}
	if _, err := Read(filepath.Join(dir, "missing"), "key"); err == nil {
		t.Error("a missing file was read")
	}
	two := filepath.Join(dir, "two")
	os.WriteFile(two, []byte("a\nb\n"), 0o600)
	if _, err := ReadLine(two, "token file"); err == nil {
		t.Error("two lines accepted")
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	if _, err := ReadLine(empty, "token file"); err == nil {
		t.Error("an empty file accepted")
	}
	big := filepath.Join(dir, "big")
	os.WriteFile(big, make([]byte, MaxSize+1), 0o600)
	if _, err := Read(big, "key"); err == nil {
		t.Error("an oversized file accepted")
	}
}
