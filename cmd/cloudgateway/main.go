// Command cloudgateway runs EGW's cloud gateway: the control plane (store, REST API,
// IPAM, compiler, edge sync server) and, with dataplane: true, the hub node that relays
// between edge gateways.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/egw-project/egw/controlplane"
	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := newCommand(os.Stderr).ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "cloudgateway:", err)
		os.Exit(1)
	}
}

// newCommand is the cloudgateway command; logs go to logw.
func newCommand(logw io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cloudgateway",
		Short: "EGW cloud gateway: control plane, admin API, edge sync and hub relay",
		Long: `cloudgateway runs the EGW control plane (object store, REST API on a unix socket,
IPAM, per-gateway snapshots, edge sync) and, unless --dataplane=false, the hub node.
Configuration: ` + DefaultConfigFile + ` (or --config), EGW_* environment variables, flags.`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, file, err := loadConfig(cmd.Flags())
			if err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(logw, nil))
			reload := func() (*Config, error) {
				c, _, err := loadConfig(cmd.Flags())
				return c, err
			}
			return run(cmd.Context(), cfg, file, reload, log)
		},
	}
	f := cmd.Flags()
	f.String("config", "", "configuration file (default "+DefaultConfigFile+" if it exists)")
	f.String("state-dir", "/var/lib/egw", "state directory (store egw.db, keys)")
	f.String("api-socket", controlplane.DefaultAPISocket, "unix socket of the admin API")
	f.Bool("dataplane", true, "run the hub node (TUN, WireGuard); false: control plane only, no root needed")
	return cmd
}

// run serves until ctx ends, then shuts down cleanly. On SIGHUP it re-reads the
// configuration with reload (see reloadConfig).
func run(ctx context.Context, cfg *Config, file string, reload func() (*Config, error), log *slog.Logger) error {
	cpcfg, err := cfg.controlplaneConfig()
	if err != nil {
		return err
	}
	if file != "" {
		log.Info("configuration", "file", file)
	}
	store, err := controlplane.Open(cfg.StateDir, cpcfg)
	if err != nil {
		return err
	}
	defer store.Close()
	cp, err := controlplane.NewServer(store, controlplane.Options{Logger: log})
	if err != nil {
		return err
	}
	if err := cp.EnsureHub(cfg.VPCIDR, "", cfg.Endpoint); err != nil {
		return fmt.Errorf("registering the cloud's own site and gateway: %w", err)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 4)
	var servers []*http.Server

	ul, err := controlplane.ListenUnix(cfg.APISocket)
	if err != nil {
		return err
	}
	api := &http.Server{Handler: cp.Handler(), ReadHeaderTimeout: 10 * time.Second}
	servers = append(servers, api)
	go func() { errc <- serve(api, ul) }()
	log.Info("admin API listening", "socket", cfg.APISocket)

	var token atomic.Pointer[string]
	if cfg.APIListen != "" {
		if cfg.APITokenFile == "" {
			return errors.New("apiListen is set but apiTokenFile is not: the TCP API needs a bearer token")
		}
		tok, err := controlplane.ReadTokenFile(cfg.APITokenFile)
		if err != nil {
			return err
		}
		token.Store(&tok)
		tl, err := net.Listen("tcp", cfg.APIListen)
		if err != nil {
			return fmt.Errorf("apiListen: %w", err)
		}
		tcp := &http.Server{Handler: controlplane.BearerAuth(cp.Handler(), func() string { return *token.Load() }), ReadHeaderTimeout: 10 * time.Second}
		servers = append(servers, tcp)
		go func() { errc <- serve(tcp, tl) }()
		log.Info("admin API listening", "tcp", tl.Addr().String())
	}

	dpDone := make(chan struct{})
	if cfg.Dataplane {
		go func() {
			defer close(dpDone)
			if err := dataplane(ctx, cfg, cp, log); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("data plane: %w", err)
			}
		}()
	} else {
		close(dpDone)
		log.Info("control plane only (dataplane: false): no TUN, no WireGuard, no edge sync")
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var runErr error
loop:
	for {
		select {
		case <-hup:
			reloadConfig(cfg, reload, cp, &token, log)
		case <-ctx.Done():
			log.Info("shutting down")
			break loop
		case runErr = <-errc:
			log.Error("stopping", "err", runErr)
			break loop
		}
	}
	cancel()
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	for _, s := range servers {
		s.Shutdown(sctx)
	}
	// The data plane removes its device (TUN, addresses, routes) before we exit.
	select {
	case <-dpDone:
	case <-sctx.Done():
		log.Warn("data plane did not stop in time")
	}
	return runErr
}

// reloadConfig applies what can change while running: the hub's endpoint (written into
// edge snapshots and configurations) and the TCP API's token. Other changed keys are
// logged as needing a restart. A configuration that does not load changes nothing.
func reloadConfig(cur *Config, reload func() (*Config, error), cp *controlplane.Server, token *atomic.Pointer[string], log *slog.Logger) {
	next, err := reload()
	if err != nil {
		log.Error("SIGHUP: configuration not reloaded", "err", err)
		return
	}
	if next.Endpoint != cur.Endpoint && next.Endpoint != "" {
		if err := cp.EnsureHub(cur.VPCIDR, "", next.Endpoint); err != nil {
			log.Error("SIGHUP: endpoint not updated", "err", err)
		} else {
			log.Info("SIGHUP: endpoint updated", "endpoint", next.Endpoint)
			cur.Endpoint = next.Endpoint
		}
	}
	if token.Load() != nil && next.APITokenFile != "" {
		if tok, err := controlplane.ReadTokenFile(next.APITokenFile); err != nil {
			log.Error("SIGHUP: API token not reloaded", "err", err)
		} else {
			token.Store(&tok)
			log.Info("SIGHUP: API token reloaded")
		}
	}
	var restart []string
	for key, changed := range map[string]bool{
		"name": next.Name != cur.Name, "site": next.Site != cur.Site, "stateDir": next.StateDir != cur.StateDir,
		"overlayCIDR": next.OverlayCIDR != cur.OverlayCIDR, "overlayPrefixLen": next.OverlayPrefixLen != cur.OverlayPrefixLen,
		"apiSocket": next.APISocket != cur.APISocket, "apiListen": next.APIListen != cur.APIListen,
		"syncPort": next.SyncPort != cur.SyncPort, "dataplane": next.Dataplane != cur.Dataplane, "dns.zone": next.DNS.Zone != cur.DNS.Zone,
	} {
		if changed {
			restart = append(restart, key)
		}
	}
	if len(restart) > 0 {
		slices.Sort(restart)
		log.Warn("SIGHUP: these keys changed but take effect only after a restart", "keys", restart)
	}
}

func serve(s *http.Server, l net.Listener) error {
	if err := s.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// serveSync serves the edge sync API (cp.SyncHandler) on addr (the hub's overlay IP and
// sync port) until ctx ends. The data plane calls it once the overlay IP is up.
func serveSync(ctx context.Context, cp *controlplane.Server, addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("sync server: %w", err)
	}
	s := &http.Server{Handler: cp.SyncHandler(), ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s.Shutdown(sctx)
	}()
	return serve(s, l)
}
