// Package etcdmember starts etcd members in-process (go.etcd.io/etcd/server/v3/embed) on
// loopback: for the control plane's tests, its crash-consistency harness and benchmarks,
// and scripts/etcd-local.sh, which runs one for trying several cloud gateways by hand.
package etcdmember

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
)

// Options describe one member.
type Options struct {
	// Name of the member (default "m0") and its data directory (required).
	Name string
	Dir  string
	// ClientURL and PeerURL are http://127.0.0.1:port URLs (default: free ports).
	ClientURL, PeerURL string
	// InitialCluster is name=peerURL,... (default: this member alone).
	InitialCluster string
	// Existing joins or restarts an existing cluster instead of forming a new one.
	Existing bool
	// LogLevel is etcd's log level (default "panic": quiet).
	LogLevel string
	// ReadyTimeout bounds the wait for the member to serve (default 30 s).
	ReadyTimeout time.Duration
	// TLSCert and TLSKey, if set, make the client URL (then https://) serve TLS.
	TLSCert, TLSKey string
}

// Member is a running etcd member.
type Member struct {
	Name, Dir, ClientURL, PeerURL string
	e                             *embed.Etcd
}

// FreeURLs returns n http://127.0.0.1:port URLs with ports free at the time of the call.
func FreeURLs(n int) ([]string, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var out []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		out = append(out, "http://"+l.Addr().String())
	}
	return out, nil
}

// Start starts a member and waits until it serves (a single member at once; a member of
// a larger cluster once the cluster has a leader).
func Start(o Options) (*Member, error) {
	if o.Dir == "" {
		return nil, errors.New("etcdmember: no data directory")
	}
	if o.Name == "" {
		o.Name = "m0"
	}
	if o.ClientURL == "" || o.PeerURL == "" {
		urls, err := FreeURLs(2)
		if err != nil {
			return nil, err
		}
		if o.ClientURL == "" {
			o.ClientURL = urls[0]
		}
		if o.PeerURL == "" {
			o.PeerURL = urls[1]
		}
	}
	if o.InitialCluster == "" {
		o.InitialCluster = o.Name + "=" + o.PeerURL
	}
	if o.LogLevel == "" {
		o.LogLevel = "panic"
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 30 * time.Second
	}
	cu, err := url.Parse(o.ClientURL)
	if err != nil {
		return nil, fmt.Errorf("etcdmember: client URL: %w", err)
	}
	pu, err := url.Parse(o.PeerURL)
	if err != nil {
		return nil, fmt.Errorf("etcdmember: peer URL: %w", err)
	}
	cfg := embed.NewConfig()
	cfg.Name = o.Name
	cfg.Dir = o.Dir
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = o.InitialCluster
	cfg.InitialClusterToken = "egw-" + strings.ReplaceAll(o.InitialCluster, "/", "")
	if o.Existing {
		cfg.ClusterState = embed.ClusterStateFlagExisting
	}
	if o.TLSCert != "" {
		cfg.ClientTLSInfo = transport.TLSInfo{CertFile: o.TLSCert, KeyFile: o.TLSKey}
	}
	cfg.LogLevel = o.LogLevel
	cfg.LogOutputs = []string{"stderr"}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcdmember: starting %s: %w", o.Name, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("etcdmember: %s: %w", o.Name, err)
	case <-time.After(o.ReadyTimeout):
		e.Server.Stop()
		e.Close()
		return nil, fmt.Errorf("etcdmember: %s not ready within %s", o.Name, o.ReadyTimeout)
	}
	return &Member{Name: o.Name, Dir: o.Dir, ClientURL: o.ClientURL, PeerURL: o.PeerURL, e: e}, nil
}

// Err reports a fatal error of the running member.
func (m *Member) Err() <-chan error { return m.e.Err() }

// Close stops the member.
func (m *Member) Close() { m.e.Close() }

// StartCluster starts n members named m0.. with data directories under dir, and returns
// once all serve.
func StartCluster(dir string, n int) ([]*Member, error) {
	urls, err := FreeURLs(2 * n)
	if err != nil {
		return nil, err
	}
	var parts []string
	for i := range n {
		parts = append(parts, fmt.Sprintf("m%d=%s", i, urls[2*i+1]))
	}
	initial := strings.Join(parts, ",")
	type res struct {
		i   int
		m   *Member
		err error
	}
	ch := make(chan res, n)
	for i := range n {
		go func() {
			m, err := Start(Options{Name: fmt.Sprintf("m%d", i), Dir: fmt.Sprintf("%s/m%d", dir, i),
				ClientURL: urls[2*i], PeerURL: urls[2*i+1], InitialCluster: initial})
			ch <- res{i, m, err}
		}()
	}
	ms := make([]*Member, n)
	var errs []error
	for range n {
		r := <-ch
		ms[r.i] = r.m
		errs = append(errs, r.err)
	}
	if err := errors.Join(errs...); err != nil {
		for _, m := range ms {
			if m != nil {
				m.Close()
			}
		}
		return nil, err
	}
	return ms, nil
}

// Restart starts a stopped member of a cluster again on its data directory.
func (m *Member) Restart(initialCluster string) (*Member, error) {
	return Start(Options{Name: m.Name, Dir: m.Dir, ClientURL: m.ClientURL, PeerURL: m.PeerURL,
		InitialCluster: initialCluster, Existing: true})
}
