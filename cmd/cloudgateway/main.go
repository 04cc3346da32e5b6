// Command cloudgateway runs EGW's cloud gateway: the control plane (store, REST API,
// IPAM, compiler, edge sync server) and, with dataplane: true, the hub node that relays
// between edge gateways.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/egw-project/egw/api"
	"github.com/egw-project/egw/controlplane"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
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
			level, _ := cmd.Flags().GetString("log-level")
			var lv slog.Level
			if err := lv.UnmarshalText([]byte(level)); err != nil {
				return fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
			}
			log := slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: lv}))
			reload := func() (*Config, error) {
				c, _, err := loadConfig(cmd.Flags())
				return c, err
			}
			if rotate, _ := cmd.Flags().GetBool("new-store-id"); rotate {
				cfg.rotateStoreID = true
			}
			return run(cmd.Context(), cfg, file, reload, log)
		},
	}
	f := cmd.Flags()
	f.String("config", "", "configuration file (default "+DefaultConfigFile+" if it exists)")
	f.String("state-dir", "/var/lib/egw", "state directory (store egw.db, keys)")
	f.String("api-socket", controlplane.DefaultAPISocket, "unix socket of the admin API")
	f.String("log-level", "info", "debug, info, warn or error")
	f.Bool("dataplane", true, "run the hub node (TUN, WireGuard); false: control plane only, no root needed")
	f.String("store-backend", controlplane.BackendBolt, "store backend: bbolt (the file egw.db in the state directory) or etcd (shared by replicas)")
	f.String("etcd-endpoints", "", "etcd client URLs, comma-separated (store.etcd.endpoints), e.g. http://127.0.0.1:2379")
	f.Bool("new-store-id", false, "give the store a new ID before serving: once, after restoring "+controlplane.DBFile+
		" from a backup, so that edges which applied later revisions of the original follow its lower ones")
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
	sc, err := cfg.storeConfig()
	if err != nil {
		return err
	}
	backend, err := controlplane.OpenBackend(sc, cfg.StateDir, log)
	if err != nil {
		return err
	}
	store := controlplane.NewStore(backend, cpcfg)
	defer store.Close()
	if cfg.rotateStoreID {
		id, err := store.RotateID()
		if err != nil {
			return err
		}
		log.Warn("the store has a new ID (--new-store-id): every edge will take its snapshot even if it applied a higher revision", "storeID", id)
	}
	cp, err := controlplane.NewServer(store, controlplane.Options{Logger: log})
	if err != nil {
		return err
	}
	if sc.Backend == controlplane.BackendEtcd {
		log.Info("store", "etcd", strings.Join(sc.Etcd.Endpoints, ","), "prefix", sc.Etcd.Prefix, "storeID", cp.StoreID())
	} else {
		log.Info("store", "file", filepath.Join(cfg.StateDir, controlplane.DBFile), "storeID", cp.StoreID())
	}
	cp.Follow(ctx) // other replicas' writes (etcd)
	endpoint := cfg.Endpoint
	if cfg.hubName() != cfg.Name {
		endpoint = "" // another replica's: the site gateway's endpoint is its replica's
	}
	if err := cp.EnsureHub(cfg.VPCIDR, "", endpoint); err != nil {
		return fmt.Errorf("registering the cloud's own site and gateway: %w", err)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 8)
	var servers []*http.Server

	ul, err := controlplane.ListenUnix(cfg.APISocket)
	if err != nil {
		return err
	}
	unixAPI := controlplane.NewHTTPServer(cp.Handler(), controlplane.DefaultServeLimits)
	servers = append(servers, unixAPI)
	go func() { errc <- serve(unixAPI, ul) }()
	log.Info("admin API listening", "socket", cfg.APISocket)

	var token atomic.Pointer[string]
	var apiCert *controlplane.TLSCert
	if cfg.APIListen != "" {
		if cfg.APITokenFile == "" {
			return errors.New("apiListen is set but apiTokenFile is not: the TCP API needs a bearer token")
		}
		tok, err := controlplane.ReadTokenFile(cfg.APITokenFile)
		if err != nil {
			return err
		}
		token.Store(&tok)
		tl, cert, err := listenTCPAPI(cfg, log)
		if err != nil {
			return err
		}
		apiCert = cert
		tcp := controlplane.NewHTTPServer(controlplane.BearerAuth(cp.Handler(), func() string { return *token.Load() }), cfg.serveLimits())
		servers = append(servers, tcp)
		go func() { errc <- serve(tcp, tl) }()
	} else if cfg.APITLSCert != "" || cfg.APITLSKey != "" {
		log.Warn("apiTLSCert/apiTLSKey are set but apiListen is not: there is no TCP API to serve them on")
	}

	if es, el, err := startEnroll(cfg, cp, log); err != nil {
		return err
	} else if es != nil {
		servers = append(servers, es)
		go func() { errc <- serve(es, el) }()
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
		if err := serveMetrics(ctx, cfg.Metrics.Listen, cp, log); err != nil {
			log.Warn("metrics not served", "err", err)
		}
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var runErr error
loop:
	for {
		select {
		case <-hup:
			reloadConfig(cfg, reload, cp, &token, apiCert, log)
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
// edge snapshots and configurations), the TCP API's token and its TLS certificate (cert,
// nil without TLS; re-read from the same files, so a renewed certificate is served
// without a restart). Other changed keys are logged as needing a restart. A configuration
// that does not load changes nothing.
func reloadConfig(cur *Config, reload func() (*Config, error), cp *controlplane.Server, token *atomic.Pointer[string], cert *controlplane.TLSCert, log *slog.Logger) {
	next, err := reload()
	if err != nil {
		log.Error("SIGHUP: configuration not reloaded", "err", err)
		return
	}
	if next.Endpoint != cur.Endpoint && next.Endpoint != "" && cur.hubName() == cur.Name {
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
	if cert != nil {
		if err := cert.Reload(); err != nil {
			log.Error("SIGHUP: API TLS certificate not reloaded; serving the previous one", "err", err)
		} else {
			log.Info("SIGHUP: API TLS certificate reloaded", "notAfter", cert.Leaf().NotAfter)
		}
	}
	// cur.Endpoint already follows next where that worked; other live keys were applied above.
	restart := api.RestartKeys(cur, next)
	if len(restart) > 0 {
		log.Warn("SIGHUP: these keys changed but take effect only after a restart", "keys", restart)
	}
}

// listenTCPAPI listens on apiListen for the admin API: with TLS (TLS 1.2 or later) when
// apiTLSCert and apiTLSKey are set, else in clear text with a warning — the bearer token
// and every object then cross the network readable by anyone on the path. Clear text
// stays allowed (a loopback bind, e.g. behind an SSH tunnel or a TLS-terminating proxy on
// the same host, is a fair use); only the log level differs.
func listenTCPAPI(cfg *Config, log *slog.Logger) (net.Listener, *controlplane.TLSCert, error) {
	if (cfg.APITLSCert == "") != (cfg.APITLSKey == "") {
		return nil, nil, errors.New("apiTLSCert and apiTLSKey go together: set both (TLS) or neither")
	}
	var cert *controlplane.TLSCert
	if cfg.APITLSCert != "" {
		var err error
		if cert, err = controlplane.LoadTLSCert(cfg.APITLSCert, cfg.APITLSKey); err != nil {
			return nil, nil, err
		}
	}
	tl, err := net.Listen("tcp", cfg.APIListen)
	if err != nil {
		return nil, nil, fmt.Errorf("apiListen: %w", err)
	}
	lim := cfg.serveLimits()
	var l net.Listener = controlplane.LimitListener(tl, lim.MaxConns, lim.MaxConnsPerAddr)
	addr := l.Addr().String()
	if cert != nil {
		log.Info("admin API listening", "tcp", addr, "tls", true, "certificate", cfg.APITLSCert, "notAfter", cert.Leaf().NotAfter)
		return tls.NewListener(l, cert.Config()), cert, nil
	}
	log.Info("admin API listening", "tcp", addr, "tls", false)
	level, msg := plaintextWarning(l.Addr())
	log.Log(context.Background(), level, msg, "tcp", addr)
	return l, nil, nil
}

// plaintextWarning is what to log about a TCP API without TLS listening on addr.
func plaintextWarning(addr net.Addr) (slog.Level, string) {
	const what = "the TCP admin API has no TLS (set apiTLSCert and apiTLSKey): the bearer token and every object travel in clear text"
	if ta, ok := addr.(*net.TCPAddr); ok && ta.IP.IsLoopback() {
		return slog.LevelInfo, what + "; acceptable only because it listens on loopback"
	}
	return slog.LevelWarn, what + " over the network, readable and replayable by anyone on the path"
}

// serveMetrics serves the control plane's Prometheus metrics on addr ("": none) until ctx
// ends: with --dataplane=false, where no hub node serves them beside its own.
func serveMetrics(ctx context.Context, addr string, cp *controlplane.Server, log *slog.Logger) error {
	if addr == "" {
		return nil
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(cp.Collectors()...)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	s := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	context.AfterFunc(ctx, func() { s.Close() })
	go serve(s, l)
	log.Info("serving metrics", "addr", l.Addr().String(), "path", "/metrics")
	return nil
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
