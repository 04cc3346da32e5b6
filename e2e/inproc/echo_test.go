package inproc

import (
	"errors"
	"testing"
)

// TestEchoToServiceSharingItsHost pings the VIP of a service whose host also runs another
// exposed service that the client's site may not reach (echo, exposed under a policy that
// names nobody). The reply must come back from the pinged VIP.
//
// Edge-b remembers which service each echo request went to (vpresence's echo table), so
// the reply is credited to the pinged service, not to another one on the same host whose
// policy would deny the client.
func TestEchoToServiceSharingItsHost(t *testing.T) {
	w := newWorld(t, worldOptions{})
	w.apply(t, `{"kind": "ServiceExpose", "apiVersion": "v1", "eServiceName": "echo", "dnsName": "echo.test.com",
		"eSites": ["site-a"], "ePolicys": ["nobody"]}`)
	w.applySnapshots(t, w.hub, w.edgeA, w.edgeB)
	vip := w.vip(t, "nginx")
	denied := drops(w.edgeB, "denied-client")
	err := ping(w.client1, vip, 7, answerTimeout)
	var wrong *wrongSource
	switch {
	case err == nil:
	case drops(w.edgeB, "denied-client") > denied:
		t.Fatalf("edge-b dropped the echo reply as denied-client (credited to the wrong hosted service): %v", err)
	case errors.As(err, &wrong):
		t.Fatalf("echo reply credited to the wrong service: %v", err)
	default:
		w.dumpStats(t)
		t.Fatalf("client1 pings nginx's VIP %s: %v", vip, err)
	}
}
