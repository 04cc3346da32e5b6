package main

import (
	"context"
	"errors"

	"github.com/egw-project/egw/controlplane"
)

// dataplane runs the cloud gateway's node (TUN, WireGuard, hub relay, DNS) until ctx ends.
// It is called when the configuration says dataplane: true, after the control plane is
// serving its API.
//
// DATA PLANE HOOK (for the gateway/overlay packages): replace this function. It should
//   - load or create the WireGuard key (cfg.PrivateKeyFile, 0600) and register the public
//     key with cp.EnsureHub(cfg.VPCIDR, publicKey, cfg.Endpoint);
//   - follow its own snapshot in-process: for rev := int64(0); ; { snap, err :=
//     cp.Watch(ctx, cfg.Name, rev); ...; rev = snap.Revision } and hand cp.Report the
//     applied revision;
//   - once its overlay IP (cp.Config().HubOverlayIP()) is up, serve the edge sync API with
//     serveSync(ctx, cp, addr) on HubOverlayIP:cfg.SyncPort;
//   - install cp.SetPeerStats to feed /v1/status.
var dataplane = func(ctx context.Context, cfg *Config, cp *controlplane.Server) error {
	return errors.New("data plane not built in: run with --dataplane=false (control plane only)")
}
