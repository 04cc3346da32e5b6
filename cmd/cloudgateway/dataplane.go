package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/egw-project/egw/controlplane"
	"github.com/egw-project/egw/gateway"
)

// dataplane runs the cloud gateway's node (TUN, WireGuard, hub relay, DNS) until ctx ends:
// it registers the hub's public key, follows the hub's own snapshot in-process (no sync
// round trip), serves the edges' sync API on the hub's overlay IP once vp0 carries it,
// reports its status and feeds WireGuard peer statistics into /v1/status.
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
	if err := cp.EnsureHub(cfg.VPCIDR, key.PublicKey().String(), cfg.Endpoint); err != nil {
		return fmt.Errorf("registering the hub's public key: %w", err)
	}
	log.Info("hub node starting", "publicKey", key.PublicKey().String(), "overlayIP", pc.OverlayIPA, "listenPort", cfg.ListenPort, "tunDriver", pc.TUN.Driver)
	node, err := gateway.NewNode(pc, gateway.NodeOptions{Hub: true, Key: key, NoCache: true}, log)
	if err != nil {
		return err
	}
	defer func() {
		if err := node.Close(); err != nil {
			log.Warn("hub node shutdown", "err", err)
		}
		log.Info("hub node stopped")
	}()
	report := func() { cp.Report(cfg.Name, node.Report()) }
	var rev int64
	if snap, ok := cp.Snapshot(cfg.Name); ok {
		if err := node.Apply(snap); err != nil {
			return err
		}
		rev = snap.Revision
	} else if err := node.Apply(node.Bootstrap()); err != nil {
		return err
	}
	if err := node.Start(); err != nil {
		return err
	}
	report()
	if err := node.ServeMetrics(ctx, cfg.Metrics.Listen); err != nil {
		log.Warn("metrics not served", "err", err)
	}
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

	for {
		snap, err := cp.Watch(ctx, cfg.Name, rev)
		if err != nil {
			if cause := context.Cause(ctx); cause != nil && cause != context.Canceled {
				return cause
			}
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if err := node.Apply(snap); err != nil {
			log.Error("hub snapshot not applied; keeping the previous one", "revision", snap.Revision, "err", err)
		}
		rev = snap.Revision
		report()
	}
}
