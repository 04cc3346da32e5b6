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
	if err := checkRevoked(cfg.StateDir, key.PublicKey().String()); err != nil {
		return err
	}
	log.Info("starting edge gateway", "name", cfg.Name, "site", cfg.Site, "publicKey", key.PublicKey().String(),
		"overlayIP", cfg.OverlayIPA, "vpCIDR", cfg.VPCIDRP, "cloud", cfg.Cloud.Endpoint, "tunDriver", cfg.TUN.Driver)
	node, err := Launch(ctx, cfg, NodeOptions{Key: key}, nil, log)
	if err != nil {
		return err
	}
	defer func() {
		if err := node.Close(); err != nil {
			log.Warn("shutdown", "err", err)
		}
		log.Info("edge gateway stopped")
	}()
	since := node.Applied().Revision

	syncCtx, stopSync := context.WithCancel(ctx)
	syncDone := make(chan struct{})
	// Stop the sync loop before the node is closed, so no snapshot is applied to a device
	// that is being torn down (defers run last-in first-out).
	defer func() { stopSync(); <-syncDone }()
	sc := NewSyncClient(netip.AddrPortFrom(cfg.CloudOverlay, uint16(cfg.Cloud.SyncPort)), cfg.OverlayIPA, log)
	sc.Apply = node.Apply
	sc.Report = func() any { return node.Report() }
	sc.Latency = node.observeSync
	sc.Hubs = node.SyncHubs
	sc.OnHub = node.PreferSyncHub
	revoked := make(chan *RevokedError, 1)
	sc.Revoked = func(e *RevokedError) { revoked <- e }
	cur := &edgeKey{key: key}
	sc.Rotate = func(nonce string) {
		if err := cur.rotate(syncCtx, sc, node, cfg.PrivateKeyFile, nonce); err != nil {
			log.Error("key rotation failed; keeping the current key", "err", err)
		}
	}
	go func() { defer close(syncDone); sc.Run(syncCtx, since) }()

	for {
		select {
		case <-ctx.Done():
			return nil
		case e := <-revoked:
			// The one line about it is the error the daemon exits with.
			if err := markRevoked(cfg.StateDir, cur.get().PublicKey().String(), e); err != nil {
				log.Warn("recording the revocation", "err", err)
			}
			return e
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

// Launch starts a gateway's node, edge and hub alike: it builds the node, applies its
// first snapshot, starts DNS and the lease sweeper, and serves metrics. The first snapshot
// is initial when given (the hub's own, from its store: an error if it does not apply),
// else the on-disk cache (ignored with a warning if unreadable, of another gateway or
// refused), else the bootstrap snapshot. On error nothing is left running; otherwise the
// caller closes the node.
func Launch(ctx context.Context, cfg *Parsed, opts NodeOptions, initial *api.Snapshot, log *slog.Logger) (*Node, error) {
	node, err := NewNode(cfg, opts, log)
	if err != nil {
		return nil, err
	}
	if err := node.first(initial); err == nil {
		err = node.Start()
	}
	if err != nil {
		node.Close()
		return nil, err
	}
	if err := node.ServeMetrics(ctx, cfg.Metrics.Listen, opts.Metrics...); err != nil {
		log.Warn("metrics not served", "err", err)
	}
	return node, nil
}

// first applies the node's first snapshot: see Launch.
func (n *Node) first(initial *api.Snapshot) error {
	if initial != nil {
		return n.Apply(initial)
	}
	if n.cache != nil {
		cached, err := n.cache.Load()
		switch {
		case err != nil:
			n.log.Warn("ignoring unreadable snapshot cache", "err", err)
		case cached != nil && cached.Gateway != n.cfg.Name:
			n.log.Warn("ignoring snapshot cache of another gateway", "gateway", cached.Gateway)
		case cached != nil:
			if err := n.Apply(cached); err != nil {
				n.log.Warn("cached snapshot not applied", "revision", cached.Revision, "err", err)
			} else {
				n.log.Info("running from the cached snapshot until the cloud answers", "revision", cached.Revision)
				return nil
			}
		}
	}
	return n.Apply(n.Bootstrap())
}

// restartKeys names the configuration keys that differ between a and b and that only a
// restart applies: all but those api.NodeConfig tags reload:"live" (the cloud peer's
// endpoint, key and keepalive).
func restartKeys(a, b *Parsed) []string { return api.RestartKeys(a.Config, b.Config) }
