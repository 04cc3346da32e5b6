//go:build netns && linux

package netnstests

import (
	"context"
	"net/netip"
	"os"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/egw-project/egw/netns-tests/harness"
)

// TestBootstrap runs the cloud gateway's control plane alone in its namespace and walks the
// bootstrap (docs/ARCHITECTURE.md, "Control plane and edge sync"): the cloud registers its own site and hub, `egwctl gateway add`
// registers an edge and prints its config (cloud endpoint, cloud public key, an overlay
// prefix of its own), and the registration survives a cloud restart. It needs
// bin/cloudgateway and bin/egwctl only; TestEGW checks the data plane (hub peers, traffic).
func TestBootstrap(t *testing.T) {
	harness.SkipUnlessRoot(t)
	bins, err := harness.FindEGW("")
	for _, p := range []string{bins.Cloud, bins.Ctl} {
		if _, serr := os.Stat(p); serr != nil {
			t.Skip(err)
		}
	}
	ctx := context.Background()
	lab := harness.NewT(t)
	topo, err := harness.Build(lab, harness.DefaultSpec())
	if err != nil {
		t.Fatal(err)
	}
	egw, err := harness.StartCloud(ctx, topo, harness.EGWOptions{Bin: bins, ControlPlaneOnly: true, RejectDenied: true, PolicyAware: true})
	if err != nil {
		t.Fatal(err)
	}
	out, err := egw.Ctl(ctx, "get", "esites")
	if err != nil || !strings.Contains(out, "cloud") {
		t.Errorf("get esites: %q, %v; want the cloud's own site", out, err)
	}

	siteA := topo.Site("site-a")
	edge, err := egw.RegisterEdge(ctx, siteA)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(edge.Config)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Name          string `yaml:"name"`
		Site          string `yaml:"site"`
		VPCIDR        string `yaml:"vpCIDR"`
		OverlayPrefix string `yaml:"overlayPrefix"`
		OverlayIP     string `yaml:"overlayIP"`
		Cloud         struct {
			Endpoint  string `yaml:"endpoint"`
			PublicKey string `yaml:"publicKey"`
			OverlayIP string `yaml:"overlayIP"`
		} `yaml:"cloud"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("edge config: %v\n%s", err, b)
	}
	if cfg.Name != "edge-a" || cfg.Site != "site-a" || cfg.VPCIDR != "192.168.0.0/24" {
		t.Errorf("edge config name/site/vpCIDR = %s/%s/%s", cfg.Name, cfg.Site, cfg.VPCIDR)
	}
	if cfg.Cloud.Endpoint != "203.0.113.1:51820" {
		t.Errorf("cloud endpoint %q; want 203.0.113.1:51820", cfg.Cloud.Endpoint)
	}
	// With dataplane: false the cloud runs no WireGuard device, and (currently, 2026-11-21)
	// publishes no hub key; it must never publish a wrong one.
	if cfg.Cloud.PublicKey != egw.Cloud.PublicKey && cfg.Cloud.PublicKey != "" {
		t.Errorf("cloud public key %q; want the cloud's %q", cfg.Cloud.PublicKey, egw.Cloud.PublicKey)
	}
	overlay := netip.MustParsePrefix("100.64.0.0/10")
	hub := netip.MustParsePrefix("100.64.0.0/22")
	pfx, err := netip.ParsePrefix(cfg.OverlayPrefix)
	if err != nil || !overlay.Contains(pfx.Addr()) || pfx.Overlaps(hub) {
		t.Errorf("edge overlay prefix %q (%v); want a prefix of %s other than the hub's %s", cfg.OverlayPrefix, err, overlay, hub)
	}
	if ip, err := netip.ParseAddr(cfg.OverlayIP); err != nil || ip != pfx.Addr().Next() && ip != pfx.Addr() {
		t.Errorf("edge overlay IP %q; want the first address of %s", cfg.OverlayIP, pfx)
	}
	if cfg.Cloud.OverlayIP != "100.64.0.1" {
		t.Errorf("cloud overlay IP %q; want 100.64.0.1", cfg.Cloud.OverlayIP)
	}

	// A restart keeps the registration.
	if err := egw.StopNode(egw.Cloud); err != nil {
		t.Errorf("cloud exit: %v", err)
	}
	if err := egw.StartNode(ctx, egw.Cloud); err != nil {
		t.Fatal(err)
	}
	out, err = egw.Ctl(ctx, "get", "egateways", "edge-a", "-o", "json")
	if err != nil || !strings.Contains(out, edge.PublicKey) {
		t.Errorf("after restart, get egateways edge-a: %q, %v", out, err)
	}
}
