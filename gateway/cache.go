package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/egw-project/egw/api"
	"github.com/egw-project/egw/internal/secret"
)

// SnapshotCache keeps the last applied snapshot on disk so that a gateway restarted while
// the cloud is unreachable comes up with its last known DNS, policy and NAT tables.
type SnapshotCache struct {
	Path string
}

// NewSnapshotCache returns the cache file in stateDir.
func NewSnapshotCache(stateDir string) *SnapshotCache {
	return &SnapshotCache{Path: filepath.Join(stateDir, "snapshot.json")}
}

// Save writes s atomically (temp file, fsync, rename). The file is 0600: it describes the
// site's services and who may reach them.
func (c *SnapshotCache) Save(s *api.Snapshot) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(c.Path), 0o700); err != nil {
		return err
	}
	return secret.Write(c.Path, b)
}

// Load returns the cached snapshot, or (nil, nil) when there is none.
func (c *SnapshotCache) Load() (*api.Snapshot, error) {
	b, err := os.ReadFile(c.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var s api.Snapshot
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("snapshot cache %s: %v", c.Path, err)
	}
	return &s, nil
}
