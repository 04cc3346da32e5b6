package gateway

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// LoadOrCreateKey reads the WireGuard private key at path, or generates one and writes it
// with mode 0600 when the file does not exist. created reports whether it was generated.
// An existing key file readable by group or others is refused: a leaked key is a leaked site.
func LoadOrCreateKey(path string) (key wgtypes.Key, created bool, err error) {
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		st, serr := os.Stat(path)
		if serr != nil {
			return key, false, serr
		}
		if st.Mode().Perm()&0o077 != 0 {
			return key, false, fmt.Errorf("private key file %s has mode %04o; it must not be readable by group or others (chmod 600)", path, st.Mode().Perm())
		}
		key, err = wgtypes.ParseKey(strings.TrimSpace(string(b)))
		if err != nil {
			return key, false, fmt.Errorf("private key file %s: %v", path, err)
		}
		return key, false, nil
	case errors.Is(err, fs.ErrNotExist):
	default:
		return key, false, err
	}
	key, err = wgtypes.GeneratePrivateKey()
	if err != nil {
		return key, false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return key, false, err
	}
	if err := writeFileAtomic(path, []byte(key.String()+"\n"), 0o600); err != nil {
		return key, false, err
	}
	return key, true, nil
}

// writeFileAtomic writes data to a temporary file next to path, fsyncs it, renames it over
// path and fsyncs the directory, so a crash leaves either the old or the new file.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if err := f.Chmod(mode); err != nil {
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
