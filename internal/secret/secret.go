// Package secret reads and writes EGW's secret files — WireGuard private keys, API bearer
// tokens, TLS keys, generated configurations naming the cloud's key — under one rule: a
// secret file is mode 0600 (or stricter), a file that group or others may access is refused
// on reading, and a write replaces the file atomically with mode 0600 from the first byte
// (WriteFile: the mode asked for, for a file beside a secret such as its certificate).
// Errors name the file and its mode, never its contents; callers must not log contents
// either. It imports nothing of the project, so every layer can use it.
package secret

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// MaxSize bounds what Read reads: a secret is a key or a token, not a document.
const MaxSize = 1 << 20

// Read returns the contents of the secret file at path. what names the file in errors
// ("private key file", "API token file"). It refuses a file group or others may access,
// one that is not a regular file, and one larger than MaxSize.
func Read(path, what string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s %s is not a regular file", what, path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%s %s has mode %04o: it must not be accessible to group or others (chmod 600)", what, path, perm)
	}
	if fi.Size() > MaxSize {
		return nil, fmt.Errorf("%s %s is larger than %d bytes", what, path, MaxSize)
	}
	b := make([]byte, fi.Size())
	n, err := f.ReadAt(b, 0)
	if err != nil && n != len(b) {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return b[:n], nil
}

// ReadLine reads a secret file holding one line (a token, a key) and returns it without
// surrounding white space; an empty file or one with several lines is an error.
func ReadLine(path, what string) (string, error) {
	b, err := Read(path, what)
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(b))
	if s == "" || strings.ContainsAny(s, "\r\n") {
		return "", fmt.Errorf("%s %s: want one non-empty line", what, path)
	}
	return s, nil
}

// Write replaces the file at path with data, mode 0600: it writes a temporary file in the
// same directory (0600 from its creation), fsyncs it, renames it over path and fsyncs the
// directory, so a crash leaves either the old or the new file. The directory must exist.
func Write(path string, data []byte) error { return WriteFile(path, data, 0o600) }

// WriteFile is Write with the mode perm, for a file that goes with a secret but need not
// be one (a certificate beside its key): the temporary file is 0600 until it gets perm,
// before data is written.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*") // CreateTemp uses 0600
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
