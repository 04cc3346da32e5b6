package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/egw-project/egw/api"
	"github.com/egw-project/egw/controlplane"
	"github.com/egw-project/egw/gateway"
)

// dataplane runs the cloud gateway's node (TUN, WireGuard, hub relay, DNS) until ctx ends:
// it registers the hub's public key, follows the hub's own snapshot in-process (no sync
// round trip), serves the edges' sync API on the hub's overlay IP once vp0 carries it,
// reports its status, feeds WireGuard peer statistics into /v1/status and the edges'
// public endpoints (as its sessions see them) into their linked peers' candidates.
var dataplane = func(ctx context.Context, cfg *Config, cp *controlplane.Server, log *slog.Logger) error {
	cpc := cp.Config()
	gc := cfg.Config
	gc.OverlayCIDR = cpc.OverlayCIDR.String()
	gc.OverlayPrefix = cpc.HubPrefix().String()
	gc.OverlayIP = cpc.HubOverlayIP().String()
	gc.Cloud = gateway.CloudConfig{OverlayIP: cpc.HubOverlayIP().String(), SyncPort: cfg.SyncPort}
	pc, err := gateway.Parse(gc, false)
	if err != nil {
		return fmt.Errorf("config:\n%w", err)
	}
	key, created, err := gateway.LoadOrCreateKey(pc.PrivateKeyFile)
	if err != nil {
		return err
	}
	if created {
		log.Info("generated WireGuard key", "file", pc.PrivateKeyFile)
	}
	hubName, site := cfg.hubName(), cfg.hubName() == cfg.Name
	if site {
		if err := cp.EnsureHub(cfg.VPCIDR, key.PublicKey().String(), cfg.Endpoint); err != nil {
			return fmt.Errorf("registering the hub's public key: %w", err)
		}
	}
	hub, err := cp.RegisterHub(hubName, key.PublicKey().String(), cfg.Endpoint)
	if err != nil {
		return fmt.Errorf("registering this replica as a hub: %w", err)
	}
	// own turns the site gateway's snapshot into this node's: the same for the site
	// gateway's replica, a hub-only one for the others.
	own := func(s *api.Snapshot) *api.Snapshot { return s }
	if !site {
		gc.Name, gc.OverlayIP = hubName, hub.OverlayIP.String()
		if pc, err = gateway.Parse(gc, false); err != nil {
			return fmt.Errorf("config:\n%w", err)
		}
		own = func(s *api.Snapshot) *api.Snapshot { return hubSnapshot(s, hubName, hub.OverlayIP) }
	}
	log.Info("hub node starting", "hub", hubName, "siteGateway", site, "publicKey", key.PublicKey().String(), "overlayIP", pc.OverlayIPA, "listenPort", cfg.ListenPort, "tunDriver", pc.TUN.Driver)
	var initial *api.Snapshot // the hub's own snapshot, else Launch applies the bootstrap one
	if s, ok := cp.Snapshot(cfg.Name); ok {
		initial = own(s)
	}
	node, err := gateway.Launch(ctx, pc, gateway.NodeOptions{Hub: true, Key: key, NoCache: true, Metrics: cp.Collectors()}, initial, log)
	if err != nil {
		return err
	}
	defer func() {
		if err := node.Close(); err != nil {
			log.Warn("hub node shutdown", "err", err)
		}
		log.Info("hub node stopped")
	}()
	report := func() { cp.Report(hubName, node.Report()) }
	rev := node.Applied().Revision
	report()
	cp.SetPeerStats(func() map[string]controlplane.PeerStats {
		out := map[string]controlplane.PeerStats{}
		stats, err := node.Overlay().PeerStats()
		snap := node.Applied()
		if err != nil || snap == nil {
			return out
		}
		names := map[string]string{}
		for _, p := range snap.Peers {
			names[p.PublicKey] = p.Name
		}
		for _, s := range stats {
			name, ok := names[s.PublicKey.String()]
			if !ok {
				continue
			}
			// WireGuard re-handshakes every 2 minutes while traffic flows and edges send a
			// keepalive every 25 s, so a handshake older than 3 minutes means the edge is gone.
			out[name] = controlplane.PeerStats{
				Connected:     !s.LastHandshake.IsZero() && time.Since(s.LastHandshake) < 3*time.Minute,
				LastHandshake: s.LastHandshake, RxBytes: s.RxBytes, TxBytes: s.TxBytes,
			}
		}
		return out
	})
	syncAddr := netip.AddrPortFrom(pc.OverlayIPA, uint16(cfg.SyncPort)).String()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		if err := serveSync(ctx, cp, syncAddr); err != nil {
			cancel(err)
		}
	}()
	log.Info("edge sync API listening", "addr", syncAddr)
	go func() {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				report()
			}
		}
	}()
	go feedObserved(ctx, cp, node.Overlay().ObservedEndpoints, time.Second)

	f := &follower{
		watch: func(ctx context.Context, since int64) (*api.Snapshot, error) {
			s, err := cp.Watch(ctx, cfg.Name, since)
			if err != nil {
				return nil, err
			}
			return own(s), nil
		},
		latest: func() (*api.Snapshot, bool) {
			s, ok := cp.Snapshot(cfg.Name)
			if !ok {
				return nil, false
			}
			return own(s), true
		},
		apply:  node.Apply,
		report: report,
		log:    log,
	}
	err = f.run(ctx, rev)
	if cause := context.Cause(ctx); cause != nil && cause != context.Canceled {
		return cause
	}
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// follower applies the hub's own snapshots to its node as they change (controlplane
// Server.Watch, in-process).
type follower struct {
	// watch returns the hub's snapshot once its revision differs from since.
	watch func(ctx context.Context, since int64) (*api.Snapshot, error)
	// latest returns the hub's current snapshot.
	latest func() (*api.Snapshot, bool)
	apply  func(*api.Snapshot) error
	report func()
	log    *slog.Logger
	// backoff is how long to wait before retrying after the n-th failure in a row
	// (default retryBackoff; tests shorten it).
	backoff func(n int) time.Duration
}

// Retry delays of a hub snapshot that did not apply: 1 s, 2 s, 4 s ... at most 30 s.
const (
	minRetry = time.Second
	maxRetry = 30 * time.Second
)

// retryBackoff is the delay after the n-th failure in a row (n ≥ 1).
func retryBackoff(n int) time.Duration {
	d := minRetry
	for i := 1; i < n && d < maxRetry; i++ {
		d *= 2
	}
	return min(d, maxRetry)
}

// run follows from revision rev (the one applied; 0 for none) until ctx ends or watch
// fails. rev only ever moves to a revision that applied. Watch returns at once while the
// current snapshot's revision differs from the one passed, so after a failure, watching
// since rev would hand the failed snapshot straight back (a spin). Instead run waits, for
// at most the backoff, for a snapshot other than the failed one — a newer one may fix
// what failed and is tried at once — and on timeout retries the latest. The backoff grows
// with each failure in a row (retryBackoff: 1 s ... 30 s) and every failure is logged.
func (f *follower) run(ctx context.Context, rev int64) error {
	backoff := f.backoff
	if backoff == nil {
		backoff = retryBackoff
	}
	var failed *api.Snapshot // the snapshot that last failed to apply; nil: none
	failures := 0
	for {
		var snap *api.Snapshot
		var err error
		if failed == nil {
			if snap, err = f.watch(ctx, rev); err != nil {
				return err
			}
		} else {
			wctx, cancel := context.WithTimeout(ctx, backoff(failures))
			snap, err = f.watch(wctx, failed.Revision)
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				snap = failed
				if cur, ok := f.latest(); ok {
					snap = cur
				}
			}
		}
		if err := f.apply(snap); err != nil {
			failures++
			failed = snap
			f.log.Error("hub snapshot not applied; keeping the previous one", "revision", snap.Revision,
				"applied", rev, "failures", failures, "retry_in", backoff(failures), "err", err)
			continue
		}
		if failures > 0 {
			f.log.Info("hub snapshot applied after failures", "revision", snap.Revision, "failures", failures)
		}
		failed, failures = nil, 0
		rev = snap.Revision
		f.report()
	}
}

// observedSink takes the endpoints the hub sees on its sessions (controlplane.Server).
type observedSink interface {
	SetObservedEndpoint(gateway string, ep netip.AddrPort)
}

// feedObserved passes every change of the hub's observed edge endpoints to sink, every
// interval, until ctx ends. An edge whose session went stale keeps its last endpoint (the
// best guess for a direct path).
func feedObserved(ctx context.Context, sink observedSink, observed func() map[string]netip.AddrPort, interval time.Duration) {
	last := map[string]netip.AddrPort{}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for name, ep := range observed() {
			if last[name] != ep {
				last[name] = ep
				sink.SetObservedEndpoint(name, ep)
			}
		}
	}
}

// hubSnapshot is the snapshot of a hub replica that does not run the cloud site's gateway:
// the site gateway's (every edge as a peer, the relay's links), under the replica's own
// name and overlay address, without the cloud site's services (no NAT into the cloud LAN
// here).
func hubSnapshot(s *api.Snapshot, name string, overlayIP netip.Addr) *api.Snapshot {
	c := *s
	c.Gateway, c.OverlayIP = name, overlayIP
	c.VIPs, c.Hosted = nil, nil
	return &c
}
