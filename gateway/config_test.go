package gateway

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckDeviceFree(t *testing.T) {
	dir := t.TempDir()
	if err := CheckDeviceFree("egw-unused0", dir); err != nil {
		t.Errorf("free name: %v", err)
	}
	// A device of this namespace.
	if err := CheckDeviceFree("lo", dir); err == nil || !strings.Contains(err.Error(), "give this gateway its own tun.name") {
		t.Errorf("lo: %v", err)
	}
	// A live UAPI socket (a device in another namespace).
	l, err := net.Listen("unix", filepath.Join(dir, "egw-x.sock"))
	if err != nil {
		t.Fatal(err)
	}
	err = CheckDeviceFree("egw-x", dir)
	if err == nil || !strings.Contains(err.Error(), "already running on this host") || !strings.Contains(err.Error(), "tun.name") {
		t.Errorf("live socket: %v", err)
	}
	l.Close()
	// A stale socket file is no conflict.
	os.WriteFile(filepath.Join(dir, "egw-y.sock"), nil, 0o600)
	if err := CheckDeviceFree("egw-y", dir); err != nil {
		t.Errorf("stale socket: %v", err)
	}
}
