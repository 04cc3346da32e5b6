package main

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/egw-project/egw/api"
	"github.com/egw-project/egw/controlplane"
	"github.com/egw-project/egw/gateway"
)

func TestReloadConfig(t *testing.T) {
	dir := t.TempDir()
	cur := &Config{Config: gateway.Config{Name: "hub", Site: "central", VPCIDR: "192.168.9.0/24", OverlayCIDR: controlplane.DefaultOverlayCIDR},
		Endpoint: "198.51.100.7:51820", OverlayPrefixLen: 22, SyncPort: 7443}
	cpcfg, err := cur.controlplaneConfig()
	if err != nil {
		t.Fatal(err)
	}
	store, err := controlplane.Open(dir, cpcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	cp, err := controlplane.NewServer(store, controlplane.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := cp.EnsureHub(cur.VPCIDR, "", cur.Endpoint); err != nil {
		t.Fatal(err)
	}
	tokFile := filepath.Join(dir, "token")
	os.WriteFile(tokFile, []byte("new-token-0123456789"), 0o600)
	old := "old-token-0123456789"
	var token atomic.Pointer[string]
	token.Store(&old)
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))

	next := *cur
	next.Endpoint = "198.51.100.8:51820"
	next.APITokenFile = tokFile
	next.OverlayPrefixLen = 24
	reloadConfig(cur, func() (*Config, error) { n := next; return &n, nil }, cp, &token, nil, log)
	g, err := store.Get("EGateway", "hub")
	if err != nil {
		t.Fatal(err)
	}
	if g.(*api.EGateway).Endpoint != "198.51.100.8:51820" || cur.Endpoint != "198.51.100.8:51820" {
		t.Fatalf("endpoint not reloaded: %+v", g)
	}
	if *token.Load() != "new-token-0123456789" {
		t.Fatal("token not reloaded")
	}
	if !strings.Contains(logs.String(), "take effect only after a restart") || !strings.Contains(logs.String(), "overlayPrefixLen") {
		t.Fatalf("logs:\n%s", logs)
	}
	// A configuration that does not load changes nothing.
	reloadConfig(cur, func() (*Config, error) { return nil, errors.New("broken yaml") }, cp, &token, nil, log)
	if !strings.Contains(logs.String(), "configuration not reloaded") || *token.Load() != "new-token-0123456789" {
		t.Fatalf("logs:\n%s", logs)
	}
}
