package controlplane

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestEnrollIdentityFiles(t *testing.T) {
	dir := t.TempDir()
	_, hash, err := EnrollIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	for f, want := range map[string]os.FileMode{EnrollKeyFile: 0o600, EnrollCertFile: 0o644} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Mode().Perm() != want {
			t.Fatalf("%s: mode %v, %v; want %04o", f, fi.Mode(), err, want)
		}
	}
	// The second call loads the same identity.
	if _, again, err := EnrollIdentity(dir); err != nil || again != hash {
		t.Fatalf("reload: hash changed or %v", err)
	}
	// A key file group or others may read is refused, not replaced.
	key := filepath.Join(dir, EnrollKeyFile)
	if err := os.Chmod(key, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, _, err := EnrollIdentity(dir); err == nil || !strings.Contains(err.Error(), "mode 0640") {
		t.Fatalf("a 0640 key: %v", err)
	}
}
