//go:build linux

package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Module is the Go module path of EGW.
const Module = "github.com/egw-project/egw"

// Tools are the helper binaries the harness runs inside namespaces.
type Tools struct {
	Responder   string // netns-tests/responder
	EtcdMember  string // scripts/etcdmember: one etcd member (replica tests)
	WireGuardGo string // upstream wireguard-go, the reference tunnel
}

// ModuleRoot walks up from the working directory to EGW's go.mod.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module "+Module+"\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("harness: not inside the " + Module + " module")
		}
		dir = parent
	}
}

// BuildTools builds the responder and wireguard-go into outDir (from the module cache: the
// wireguard-go module root is package main). With reuse, binaries already in outDir are kept.
func BuildTools(ctx context.Context, outDir string, reuse bool) (Tools, error) {
	root, err := ModuleRoot()
	if err != nil {
		return Tools{}, err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return Tools{}, err
	}
	t := Tools{
		Responder:   filepath.Join(outDir, "responder"),
		WireGuardGo: filepath.Join(outDir, "wireguard-go"),
		EtcdMember:  filepath.Join(outDir, "etcdmember"),
	}
	for _, b := range []struct{ out, pkg string }{
		{t.Responder, Module + "/netns-tests/responder"},
		{t.WireGuardGo, "golang.zx2c4.com/wireguard"},
		{t.EtcdMember, Module + "/scripts/etcdmember"},
	} {
		if reuse {
			if fi, err := os.Stat(b.out); err == nil && fi.Mode().IsRegular() {
				continue
			}
		}
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", b.out, b.pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return Tools{}, fmt.Errorf("go build %s: %v: %s", b.pkg, err, strings.TrimSpace(string(out)))
		}
	}
	return t, nil
}

// EGWBinaries are the daemons and CLI under test, normally bin/ of the module root.
type EGWBinaries struct {
	Cloud, Edge, Ctl string
}

// FindEGW returns the EGW binaries in dir (default: $EGW_BIN or <module root>/bin) and an
// error naming the first one missing.
func FindEGW(dir string) (EGWBinaries, error) {
	if dir == "" {
		dir = os.Getenv("EGW_BIN")
	}
	if dir == "" {
		root, err := ModuleRoot()
		if err != nil {
			return EGWBinaries{}, err
		}
		dir = filepath.Join(root, "bin")
	}
	b := EGWBinaries{
		Cloud: filepath.Join(dir, "cloudgateway"),
		Edge:  filepath.Join(dir, "edgegateway"),
		Ctl:   filepath.Join(dir, "egwctl"),
	}
	for _, p := range []string{b.Cloud, b.Edge, b.Ctl} {
		fi, err := os.Stat(p)
		if err != nil {
			return b, fmt.Errorf("EGW binary missing: %s (run make build)", p)
		}
		if fi.Mode()&0o111 == 0 {
			return b, fmt.Errorf("EGW binary not executable: %s", p)
		}
	}
	return b, nil
}
