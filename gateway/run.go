package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"

	"github.com/egw-project/egw/api"
)

// RunEdge runs an edge gateway until ctx ends: key (generated on first start), device, the
// cached snapshot at once (or a bootstrap one), DNS, metrics, and the sync loop toward the
// cloud. Each value on hup reloads the configuration through reload: the cloud peer
// (endpoint, key, keepalive) changes live; a change to the gateway's addresses or device is
// logged as needing a restart. A reload error keeps the running configuration.
func RunEdge(ctx context.Context, cfg *Parsed, reload func() (*Parsed, error), hup <-chan os.Signal, log *slog.Logger) error {
	key, created, err := LoadOrCreateKey(cfg.PrivateKeyFile)
	if err != nil {
		return err
	}
	if created {
		fmt.Fprintf(os.Stdout, "generated WireGuard key %s; public key: %s\n", cfg.PrivateKeyFile, key.PublicKey())
	}
	log.Info("starting edge gateway", "name", cfg.Name, "site", cfg.Site, "publicKey", key.PublicKey().String(),
		"overlayIP", cfg.OverlayIPA, "vpCIDR", cfg.VPCIDRP, "cloud", cfg.Cloud.Endpoint, "tunDriver", cfg.TUN.Driver)
	node, err := NewNode(cfg, NodeOptions{Key: key}, log)
	if err != nil {
		return err
	}
	defer func() {
		if err := node.Close(); err != nil {
			log.Warn("shutdown", "err", err)
		}
		log.Info("edge gateway stopped")
	}()

	var since int64
	cached, err := node.cache.Load()
	switch {
	case err != nil:
		log.Warn("ignoring unreadable snapshot cache", "err", err)
	case cached != nil && cached.Gateway != cfg.Name:
		log.Warn("ignoring snapshot cache of another gateway", "gateway", cached.Gateway)
		cached = nil
	}
	if cached != nil {
		if err := node.Apply(cached); err != nil {
			log.Warn("cached snapshot not applied", "revision", cached.Revision, "err", err)
		} else {
			since = cached.Revision
			log.Info("running from the cached snapshot until the cloud answers", "revision", since)
		}
	}
	if node.Applied() == nil {
		if err := node.Apply(node.Bootstrap()); err != nil {
			return err
		}
	}
	if err := node.Start(); err != nil {
		return err
	}
	if err := node.ServeMetrics(ctx, cfg.Metrics.Listen); err != nil {
		log.Warn("metrics not served", "err", err)
	}

	syncCtx, stopSync := context.WithCancel(ctx)
	syncDone := make(chan struct{})
	// Stop the sync loop before the node is closed, so no snapshot is applied to a device
	// that is being torn down (defers run last-in first-out).
	defer func() { stopSync(); <-syncDone }()
	sc := NewSyncClient(netip.AddrPortFrom(cfg.CloudOverlay, uint16(cfg.Cloud.SyncPort)), cfg.OverlayIPA, log)
	sc.Apply = node.Apply
	sc.Report = func() any { return node.Report() }
	sc.Latency = node.observeSync
	go func() { defer close(syncDone); sc.Run(syncCtx, since) }()

	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			next, err := reload()
			if err != nil {
				log.Error("reload failed; keeping the running configuration", "err", err)
				continue
			}
			if restart := restartKeys(cfg, next); len(restart) > 0 {
				log.Warn("reload: these keys changed but take effect only after a restart", "keys", restart)
			}
			if err := node.SetCloud(next.Cloud); err != nil {
				log.Error("reload: cloud peer not updated", "err", err)
				continue
			}
			log.Info("reload: cloud peer applied (endpoint, publicKey, keepalive)", "endpoint", next.Cloud.Endpoint)
		}
	}
}

// restartKeys names the configuration keys that differ between a and b and that only a
// restart applies: all but those api.NodeConfig tags reload:"live" (the cloud peer's
// endpoint, key and keepalive).
func restartKeys(a, b *Parsed) []string { return api.RestartKeys(a.Config, b.Config) }
