package main

import (
	"testing"

	"github.com/egw-project/egw/controlplane"
	"github.com/egw-project/egw/gateway"
)

// The edge (gateway) and the cloud (controlplane) name the sync headers of the lifecycle
// each in their own package; they must agree.
func TestLifecycleHeadersAgree(t *testing.T) {
	if controlplane.HeaderRevoked != gateway.HeaderRevoked || controlplane.HeaderRotate != gateway.HeaderRotate {
		t.Fatalf("revoked %q/%q, rotate %q/%q", controlplane.HeaderRevoked, gateway.HeaderRevoked, controlplane.HeaderRotate, gateway.HeaderRotate)
	}
}
