package api

import (
	"strings"
	"testing"
	"time"

	yamlv3 "go.yaml.in/yaml/v3"
)

func TestNodeConfigYAML(t *testing.T) {
	c := DefaultNodeConfig()
	c.Name, c.Site, c.Cloud.Endpoint, c.Cloud.PublicKey = "edge-a", "site-a", "203.0.113.1:51820", "KEY"
	y, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	s := string(y)
	for _, want := range []string{"# /etc/egw/edgegateway.yaml for EGateway edge-a (site site-a)", "keepalive: 25s", "ttl: 5s", "leaseIdle: 5m0s", "listen: []"} {
		if !strings.Contains(s, want) {
			t.Errorf("no %q in\n%s", want, s)
		}
	}
	if strings.Index(s, "name: edge-a") > strings.Index(s, "cloud:") || strings.Index(s, "cloud:") > strings.Index(s, "nat:") {
		t.Errorf("keys out of the schema's order:\n%s", s)
	}
	if strings.Contains(s, "cloud.publicKey or cloud.endpoint is empty") {
		t.Error("warning about a key that is set")
	}
	// Every key of the schema is in the file, under the name the daemons read.
	var m map[string]any
	if err := yamlv3.Unmarshal(y, &m); err != nil {
		t.Fatal(err)
	}
	for key := range ConfigMap(c) {
		var at any = m
		for _, part := range strings.Split(key, ".") {
			at = at.(map[string]any)[part]
		}
		if at == nil {
			t.Errorf("key %s missing from the YAML", key)
		}
	}
}

func TestConfigMapAndRestartKeys(t *testing.T) {
	d := ConfigMap(DefaultNodeConfig())
	if d["tun.name"] != "vp0" || d["cloud.keepalive"] != 25*time.Second || d["nat.rejectDenied"] != true {
		t.Errorf("defaults: %v", d)
	}
	a, b := DefaultNodeConfig(), DefaultNodeConfig()
	b.DNS.Upstreams = nil // nil and empty lists are the same setting
	if k := RestartKeys(a, b); len(k) != 0 {
		t.Errorf("no change: %v", k)
	}
	b.Cloud.Endpoint, b.Cloud.Keepalive, b.Cloud.PublicKey = "x:1", time.Second, "K" // live
	b.TUN.MTU, b.DNS.Upstreams = 1400, []string{"10.0.0.53"}
	if k := strings.Join(RestartKeys(a, b), ","); k != "dns.upstreams,tun.mtu" {
		t.Errorf("restart keys %q", k)
	}
	// A squashed embedded struct's keys join its parent's.
	type outer struct {
		NodeConfig `mapstructure:",squash"`
		Extra      int `mapstructure:"extra"`
	}
	o := ConfigMap(outer{NodeConfig: DefaultNodeConfig(), Extra: 3})
	if o["extra"] != 3 || o["tun.mtu"] != 1420 {
		t.Errorf("squash: %v", o)
	}
}
