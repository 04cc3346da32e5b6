package gateway

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/egw-project/egw/internal/secret"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// LoadOrCreateKey reads the WireGuard private key at path, or generates one and writes it
// with mode 0600 when the file does not exist (internal/secret). created reports whether it
// was generated. An existing key file readable by group or others is refused: a leaked key
// is a leaked site.
func LoadOrCreateKey(path string) (key wgtypes.Key, created bool, err error) {
	line, err := secret.ReadLine(path, "private key file")
	switch {
	case err == nil:
		key, err = wgtypes.ParseKey(line)
		if err != nil {
			return key, false, fmt.Errorf("private key file %s: not a WireGuard key", path)
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
	if err := secret.Write(path, []byte(key.String()+"\n")); err != nil {
		return key, false, err
	}
	return key, true, nil
}
