package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/egw-project/egw/controlplane"
)

// maxEnrollConns bounds the enrollment listener's open connections.
const maxEnrollConns = 64

// startEnroll opens the enrollment listener (HTTPS on enrollListen; docs/ARCHITECTURE.md,
// "Gateway lifecycle") and tells the control plane the address join tokens carry:
// enrollAddress, else the host of endpoint with enrollListen's port. It returns nil, nil,
// nil when enrollment is off (enrollListen empty) or no address is known (logged).
func startEnroll(cfg *Config, cp *controlplane.Server, log *slog.Logger) (*http.Server, net.Listener, error) {
	if cfg.EnrollListen == "" {
		log.Info("enrollment listener off (enrollListen is empty): register edges with --public-key")
		return nil, nil, nil
	}
	_, port, err := net.SplitHostPort(cfg.EnrollListen)
	if err != nil {
		return nil, nil, fmt.Errorf("enrollListen %q: %v", cfg.EnrollListen, err)
	}
	addr := cfg.EnrollAddress
	if addr == "" {
		host, _, err := net.SplitHostPort(cfg.Endpoint)
		if err != nil || host == "" {
			log.Warn("no enrollment address (set enrollAddress, or endpoint): join tokens cannot be made; register edges with --public-key")
			return nil, nil, nil
		}
		addr = net.JoinHostPort(host, port)
	}
	if _, p, err := net.SplitHostPort(addr); err != nil || p == "" {
		return nil, nil, fmt.Errorf("enrollAddress %q is not host:port", addr)
	} else if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
		return nil, nil, fmt.Errorf("enrollAddress %q has no port 1-65535", addr)
	}
	cert, hash, err := controlplane.EnrollIdentity(cfg.StateDir)
	if err != nil {
		return nil, nil, err
	}
	l, err := net.Listen("tcp", cfg.EnrollListen)
	if err != nil {
		return nil, nil, fmt.Errorf("enrollment listener: %w", err)
	}
	cp.SetEnrollment(controlplane.Enrollment{Address: addr, CertHash: hash})
	s := &http.Server{
		Handler:           cp.EnrollHandler(),
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}},
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       30 * time.Second,
		MaxHeaderBytes:    8 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	log.Info("enrollment listener", "listen", cfg.EnrollListen, "address", addr)
	return s, tls.NewListener(&limitListener{Listener: l, sem: make(chan struct{}, maxEnrollConns)}, s.TLSConfig), nil
}

// limitListener accepts at most cap(sem) connections at once; more wait in the kernel's
// backlog.
type limitListener struct {
	net.Listener
	sem chan struct{}
}

func (l *limitListener) Accept() (net.Conn, error) {
	l.sem <- struct{}{}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
