package controlplane

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"time"
)

// Store backends.
const (
	BackendBolt = "bbolt"
	BackendEtcd = "etcd"
)

// StoreConfig chooses the store's backend: the store section of cloudgateway.yaml.
type StoreConfig struct {
	// Backend is BackendBolt (default: <stateDir>/egw.db) or BackendEtcd.
	Backend string
	Etcd    EtcdConfig
}

// EtcdConfig is store.etcd.
type EtcdConfig struct {
	// Endpoints are client URLs of etcd members: http://host:port or https://host:port.
	Endpoints []string
	// Prefix is put before every key (default DefaultEtcdPrefix); it must start and end
	// with "/". Cloud gateways sharing a prefix are replicas of one control plane.
	Prefix string
	// TLS: CA verifies the members (system roots if empty); Cert and Key are a client
	// certificate (both or neither).
	TLS struct{ CA, Cert, Key string }
	// DialTimeout bounds connecting to etcd (default DefaultEtcdDialTimeout).
	DialTimeout time.Duration
}

// WithDefaults returns c with unset fields set to their defaults.
func (c StoreConfig) WithDefaults() StoreConfig {
	if c.Backend == "" {
		c.Backend = BackendBolt
	}
	if c.Etcd.Prefix == "" {
		c.Etcd.Prefix = DefaultEtcdPrefix
	}
	if c.Etcd.DialTimeout == 0 {
		c.Etcd.DialTimeout = DefaultEtcdDialTimeout
	}
	return c
}

// Validate checks c (after WithDefaults). It names the key at fault.
func (c StoreConfig) Validate() error {
	switch c.Backend {
	case BackendBolt:
		return nil
	case BackendEtcd:
	default:
		return fmt.Errorf("store.backend %q: want %s or %s", c.Backend, BackendBolt, BackendEtcd)
	}
	e := c.Etcd
	if len(e.Endpoints) == 0 {
		return fmt.Errorf("store.etcd.endpoints: empty; store.backend etcd needs at least one member's client URL (e.g. http://127.0.0.1:2379), in the file or as --etcd-endpoints")
	}
	https := 0
	for _, ep := range e.Endpoints {
		u, err := url.Parse(ep)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			return fmt.Errorf("store.etcd.endpoints: %q: want a client URL http://host:port or https://host:port", ep)
		}
		if _, port, err := net.SplitHostPort(u.Host); err != nil || port == "" {
			return fmt.Errorf("store.etcd.endpoints: %q: the URL has no port (etcd's client port is 2379)", ep)
		}
		if u.Scheme == "https" {
			https++
		}
	}
	if https != 0 && https != len(e.Endpoints) {
		return fmt.Errorf("store.etcd.endpoints: mixes http:// and https:// URLs; use one scheme")
	}
	if !strings.HasPrefix(e.Prefix, "/") || !strings.HasSuffix(e.Prefix, "/") || strings.Contains(e.Prefix, "//") {
		return fmt.Errorf("store.etcd.prefix %q: want a key prefix that starts and ends with \"/\" (default %s)", e.Prefix, DefaultEtcdPrefix)
	}
	if (e.TLS.Cert == "") != (e.TLS.Key == "") {
		return fmt.Errorf("store.etcd.tls.cert and store.etcd.tls.key go together: set both (a client certificate) or neither")
	}
	if https == 0 && (e.TLS.CA != "" || e.TLS.Cert != "") {
		return fmt.Errorf("store.etcd.tls is set but store.etcd.endpoints are http:// URLs: use https:// to reach etcd over TLS")
	}
	if e.DialTimeout < 100*time.Millisecond || e.DialTimeout > 5*time.Minute {
		return fmt.Errorf("store.etcd.dialTimeout %s: want 100ms to 5m", e.DialTimeout)
	}
	return nil
}

// tlsConfig returns the TLS configuration of the etcd client, nil for http:// endpoints.
func (e EtcdConfig) tlsConfig() (*tls.Config, error) {
	if len(e.Endpoints) == 0 || !strings.HasPrefix(e.Endpoints[0], "https://") {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if e.TLS.CA != "" {
		pem, err := os.ReadFile(e.TLS.CA)
		if err != nil {
			return nil, fmt.Errorf("store.etcd.tls.ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("store.etcd.tls.ca %s: no PEM certificate in it", e.TLS.CA)
		}
		c.RootCAs = pool
	}
	if e.TLS.Cert != "" {
		cert, err := tls.LoadX509KeyPair(e.TLS.Cert, e.TLS.Key)
		if err != nil {
			return nil, fmt.Errorf("store.etcd.tls.cert/key: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// OpenBackend opens the backend c names (c valid, after WithDefaults): the bbolt file in
// stateDir, or etcd.
func OpenBackend(c StoreConfig, stateDir string, log *slog.Logger) (Backend, error) {
	if c.Backend != BackendEtcd {
		return OpenBolt(stateDir)
	}
	tc, err := c.Etcd.tlsConfig()
	if err != nil {
		return nil, err
	}
	return OpenEtcd(EtcdOptions{Endpoints: c.Etcd.Endpoints, Prefix: c.Etcd.Prefix, TLS: tc,
		DialTimeout: c.Etcd.DialTimeout, Logger: log})
}
