//go:build linux

package harness

// Running EGW itself on a Topology: the harness writes each daemon's configuration file
// (schema in docs/ARCHITECTURE.md), starts bin/cloudgateway in the cloud gateway's namespace,
// registers every edge with `egwctl gateway add` (which prints the edge's config), starts
// bin/edgegateway in each edge namespace, and waits for each edge's WireGuard handshake.
// Objects are applied with `egwctl apply -f`.
//
// Everything a daemon writes (state dir, keys, API socket, snapshot cache) lives under the
// Lab's LogDir. The TUN device of each gateway gets a name unique to the Lab (not "vp0"),
// because wireguard-go's UAPI socket /var/run/wireguard/<dev>.sock is shared by all
// namespaces.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/egw-project/egw/api"
)

// EGWOptions tune the daemons' configuration.
type EGWOptions struct {
	Bin          EGWBinaries
	TunDriver    string // "wgtun" (default) or "water"
	RejectDenied bool   // nat.rejectDenied
	PolicyAware  bool   // dns.policyAware
	MTU          int    // tun.mtu (default 1420)
	// ControlPlaneOnly runs the cloud gateway with dataplane: false (no TUN, no WireGuard).
	ControlPlaneOnly bool
	// ReadyTimeout bounds each wait for a daemon (default 60 s).
	ReadyTimeout time.Duration
	// ForceRelay sets paths.direct: false on every gateway: edge↔edge traffic always goes
	// through the hub's ciphertext relay. Unset, the key keeps its default (direct paths
	// are tried).
	ForceRelay bool
	// HubConfig holds more keys for the cloud gateway's file, merged into the harness's own
	// (nested maps key by key), e.g. {"paths": {"relayRate": 1e6}}.
	HubConfig map[string]any
}

// Node is one running gateway daemon.
type Node struct {
	Site      *Site
	Dir       string // its config + state directory
	Config    string // path of its YAML config
	StateDir  string
	Tun       string // TUN / WireGuard device name
	PublicKey string
	Proc      *Proc
	argv      []string
}

// EGW is a running EGW deployment on a Topology.
type EGW struct {
	Topo      *Topology
	Lab       *Lab
	Opts      EGWOptions
	APISocket string
	Cloud     *Node
	Nodes     map[string]*Node // by ESite name, cloud included
}

// StartEGW starts the cloud gateway and every edge of topo and waits until each edge has a
// WireGuard handshake with the cloud.
func StartEGW(ctx context.Context, topo *Topology, opts EGWOptions) (*EGW, error) {
	e, err := StartCloud(ctx, topo, opts)
	if err != nil {
		return nil, err
	}
	for _, s := range topo.SiteList() {
		if s.Cloud {
			continue
		}
		n, err := e.RegisterEdge(ctx, s)
		if err != nil {
			return nil, err
		}
		if err := e.StartNode(ctx, n); err != nil {
			return nil, err
		}
	}
	for _, s := range topo.SiteList() {
		if s.Cloud {
			continue
		}
		if err := e.WaitHandshake(ctx, e.Nodes[s.Site]); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// StartCloud starts only the cloud gateway of topo and waits for its API.
func StartCloud(ctx context.Context, topo *Topology, opts EGWOptions) (*EGW, error) {
	if opts.TunDriver == "" {
		opts.TunDriver = "wgtun"
	}
	if opts.MTU == 0 {
		opts.MTU = 1420
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = 60 * time.Second
	}
	l := topo.Lab
	e := &EGW{Topo: topo, Lab: l, Opts: opts, Nodes: map[string]*Node{},
		APISocket: filepath.Join(l.LogDir, "api.sock")}
	for _, s := range topo.SiteList() {
		if s.Cloud {
			return e, e.startCloud(ctx, s)
		}
	}
	return nil, errors.New("harness: topology has no cloud site")
}

func (e *EGW) newNode(s *Site) (*Node, error) {
	dir := filepath.Join(e.Lab.LogDir, "egw-"+s.Gateway)
	n := &Node{Site: s, Dir: dir, Config: filepath.Join(dir, daemonName(s)+".yaml"),
		StateDir: filepath.Join(dir, "state"), Tun: e.Lab.DevName("vp", s.Key)}
	if err := os.MkdirAll(n.StateDir, 0o700); err != nil {
		return nil, err
	}
	return n, nil
}

func daemonName(s *Site) string {
	if s.Cloud {
		return "cloudgateway"
	}
	return "edgegateway"
}

// nodeConfig holds the keys every node has; the harness sets them in both daemons' files.
func (e *EGW) nodeConfig(n *Node) map[string]any {
	s := n.Site
	cfg := map[string]any{
		"name":           s.Gateway,
		"site":           s.Site,
		"stateDir":       n.StateDir,
		"privateKeyFile": filepath.Join(n.StateDir, "private.key"),
		"listenPort":     s.ListenPort,
		"vpCIDR":         s.VPCIDR.String(),
		"tun":            map[string]any{"name": n.Tun, "mtu": e.Opts.MTU, "driver": e.Opts.TunDriver},
		"dns": map[string]any{"enabled": true, "listen": []string{}, "upstreams": []string{},
			"siteNetworks": []string{s.LAN.Masked().String()}, "policyAware": e.Opts.PolicyAware,
			"ttl": "5s", "zone": "egw.local."},
		"metrics": map[string]any{"listen": "127.0.0.1:9469"},
		"nat":     map[string]any{"rejectDenied": e.Opts.RejectDenied, "leaseIdle": "5m", "leaseQuiet": "2m"},
	}
	if e.Opts.ForceRelay {
		cfg["paths"] = map[string]any{"direct": false}
	}
	return cfg
}

// mergeConfig sets every key of extra in cfg, merging nested maps key by key.
func mergeConfig(cfg, extra map[string]any) {
	for k, v := range extra {
		sub, isMap := v.(map[string]any)
		have, haveMap := cfg[k].(map[string]any)
		if isMap && haveMap {
			mergeConfig(have, sub)
			continue
		}
		cfg[k] = v
	}
}

func writeYAML(path string, v any) error {
	b, err := yaml.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

// writeKey writes a fresh WireGuard private key (0600) and returns the public key.
func writeKey(path string) (string, error) {
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(path, []byte(k.String()+"\n"), 0o600); err != nil {
		return "", err
	}
	return k.PublicKey().String(), nil
}

func (e *EGW) startCloud(ctx context.Context, s *Site) error {
	n, err := e.newNode(s)
	if err != nil {
		return err
	}
	if n.PublicKey, err = writeKey(filepath.Join(n.StateDir, "private.key")); err != nil {
		return err
	}
	cfg := e.nodeConfig(n)
	cfg["endpoint"] = fmt.Sprintf("%s:%d", s.Underlay.Addr(), s.ListenPort)
	cfg["overlayCIDR"] = "100.64.0.0/10"
	cfg["overlayPrefixLen"] = 22
	cfg["apiSocket"] = e.APISocket
	cfg["apiListen"] = ""
	cfg["apiTokenFile"] = ""
	cfg["syncPort"] = 7443
	cfg["dataplane"] = !e.Opts.ControlPlaneOnly
	mergeConfig(cfg, e.Opts.HubConfig)
	if err := writeYAML(n.Config, cfg); err != nil {
		return err
	}
	n.argv = []string{e.Opts.Bin.Cloud, "--config", n.Config}
	e.Cloud = n
	e.Nodes[s.Site] = n
	return e.StartNode(ctx, n)
}

// StartNode (re)starts a node's daemon with its existing configuration and waits until it
// is serving: the cloud's API answers, or an edge's WireGuard device is up.
func (e *EGW) StartNode(ctx context.Context, n *Node) error {
	if n.Proc != nil {
		if done, _ := n.Proc.Exited(); !done {
			return fmt.Errorf("harness: %s is already running", n.Site.Gateway)
		}
	}
	p, err := e.Lab.Start(n.Site.GWNS, n.Site.Gateway, nil, n.argv...)
	if err != nil {
		return err
	}
	n.Proc = p
	check := func() error {
		if done, werr := p.Exited(); done {
			_, stderr := p.Logs()
			return fmt.Errorf("%s exited (%v): %s", n.Site.Gateway, werr, tail(stderr, 2000))
		}
		return nil
	}
	if n.Site.Cloud {
		return Poll(ctx, e.Opts.ReadyTimeout, 50*time.Millisecond, "cloud API", func() error {
			if err := check(); err != nil {
				return Permanent(err)
			}
			_, err := e.Ctl(ctx, "get", "esites")
			return err
		})
	}
	return Poll(ctx, e.Opts.ReadyTimeout, 50*time.Millisecond, n.Site.Gateway+" UAPI socket", func() error {
		if err := check(); err != nil {
			return Permanent(err)
		}
		_, err := os.Stat(filepath.Join(UAPIDir, n.Tun+".sock"))
		return err
	})
}

// StopNode stops a node's daemon with SIGTERM (SIGKILL after 10 s).
func (e *EGW) StopNode(n *Node) error {
	if n.Proc == nil {
		return nil
	}
	_ = n.Proc.Stop(10 * time.Second)
	_, err := n.Proc.Exited()
	var ee interface{ ExitCode() int }
	if errors.As(err, &ee) && ee.ExitCode() == -1 {
		return nil // ended by the signal
	}
	return err
}

// Reload sends SIGHUP to a node's daemon.
func (e *EGW) Reload(n *Node) error { return n.Proc.Signal(syscall.SIGHUP) }

// RegisterEdge registers s's gateway with `egwctl site add` and `egwctl gateway add` and
// writes the edge config that prints, with the harness's paths, device name, DNS and NAT
// settings patched in. StartNode then starts it.
func (e *EGW) RegisterEdge(ctx context.Context, s *Site) (*Node, error) {
	n, err := e.newNode(s)
	if err != nil {
		return nil, err
	}
	if n.PublicKey, err = writeKey(filepath.Join(n.StateDir, "private.key")); err != nil {
		return nil, err
	}
	if _, err := e.Ctl(ctx, "site", "add", s.Site); err != nil && !strings.Contains(err.Error(), "exists") {
		return nil, err
	}
	generated := filepath.Join(n.Dir, "generated.yaml")
	if _, err := e.Ctl(ctx, "gateway", "add", s.Gateway, "--site", s.Site, "--vp-cidr", s.VPCIDR.String(),
		"--public-key", n.PublicKey, "--ip", s.Underlay.Addr().String(), "--output-file", generated); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(generated)
	if err != nil {
		return nil, err
	}
	cfg := map[string]any{}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		return nil, fmt.Errorf("edge config from egwctl gateway add: %w", err)
	}
	for k, v := range e.nodeConfig(n) {
		cfg[k] = v // the harness's paths, device, DNS and NAT settings win
	}
	if err := writeYAML(n.Config, cfg); err != nil {
		return nil, err
	}
	n.argv = []string{e.Opts.Bin.Edge, "--config", n.Config}
	e.Nodes[s.Site] = n
	return n, nil
}

// WaitHandshake polls `wg show <tun> latest-handshakes` in the node's namespace until every
// peer listed has a handshake.
func (e *EGW) WaitHandshake(ctx context.Context, n *Node) error {
	return Poll(ctx, e.Opts.ReadyTimeout, 100*time.Millisecond, n.Site.Gateway+" WireGuard handshake", func() error {
		out, err := e.Lab.Run(ctx, n.Site.GWNS, "wg", "show", n.Tun, "latest-handshakes")
		if err != nil {
			return err
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		for _, line := range lines {
			f := strings.Fields(line)
			if len(f) != 2 || f[1] == "0" {
				return fmt.Errorf("no handshake yet: %q", out)
			}
		}
		return nil
	})
}

// Ctl runs egwctl against the cloud's API socket (from the cloud gateway's namespace) and
// returns its stdout.
func (e *EGW) Ctl(ctx context.Context, args ...string) (string, error) {
	argv := append([]string{e.Opts.Bin.Ctl, "--socket", e.APISocket, "--timeout", "10s"}, args...)
	return e.Lab.Run(ctx, e.Cloud.Site.GWNS, argv...)
}

// Apply writes doc (YAML or JSON, one or many objects) to a file and applies it.
func (e *EGW) Apply(ctx context.Context, name, doc string) error {
	path := filepath.Join(e.Lab.LogDir, "apply-"+name+".yaml")
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		return err
	}
	_, err := e.Ctl(ctx, "apply", "-f", path)
	return err
}

var (
	digStatus = regexp.MustCompile(`status: ([A-Z]+)`)
	digA      = regexp.MustCompile(`(?m)^\S+\s+\d+\s+IN\s+A\s+(\S+)$`)
)

// Dig asks server for name's A records from inside ns (dig, one try, 1 s) and returns the
// response code ("NOERROR", "NXDOMAIN", …) and the addresses.
func (l *Lab) Dig(ctx context.Context, ns string, server netip.Addr, name string) (string, []netip.Addr, error) {
	out, err := l.Run(ctx, ns, "dig", "+tries=1", "+time=1", "+noall", "+comments", "+answer", "@"+server.String(), name, "A")
	m := digStatus.FindStringSubmatch(out)
	if m == nil {
		if err == nil {
			err = fmt.Errorf("dig %s @%s: no status in %q", name, server, out)
		}
		return "", nil, err
	}
	var addrs []netip.Addr
	for _, a := range digA.FindAllStringSubmatch(out, -1) {
		if ip, err := netip.ParseAddr(a[1]); err == nil {
			addrs = append(addrs, ip)
		}
	}
	return m[1], addrs, nil
}

// Resolve polls the DNS of site (its first VP address) from inside ns until name has
// exactly one A record inside the site's VP CIDR, and returns it.
func (e *EGW) Resolve(ctx context.Context, ns string, site *Site, name string, timeout time.Duration) (netip.Addr, error) {
	server := site.VPCIDR.Masked().Addr().Next()
	var vip netip.Addr
	err := Poll(ctx, timeout, 200*time.Millisecond, name+" at "+server.String(), func() error {
		status, addrs, err := e.Lab.Dig(ctx, ns, server, name)
		if err != nil {
			return err
		}
		if status != "NOERROR" || len(addrs) != 1 {
			return fmt.Errorf("%s %v", status, addrs)
		}
		if !site.VPCIDR.Contains(addrs[0]) {
			return Permanent(fmt.Errorf("%s = %s, outside %s's VP CIDR %s", name, addrs[0], site.Site, site.VPCIDR))
		}
		vip = addrs[0]
		return nil
	})
	return vip, err
}

// GatewayStatus is the part of `egwctl status -o json` the harness reads.
type GatewayStatus struct {
	Name            string            `json:"name"`
	Connected       bool              `json:"connected"`
	AppliedRevision int64             `json:"appliedRevision"`
	LatestRevision  int64             `json:"latestRevision"`
	Drops           map[string]uint64 `json:"drops"`
	Paths           []api.PathStatus  `json:"paths"`
}

// Status returns every gateway's status as the cloud reports it.
func (e *EGW) Status(ctx context.Context) ([]GatewayStatus, error) {
	out, err := e.Ctl(ctx, "status", "-o", "json")
	if err != nil {
		return nil, err
	}
	var st struct {
		Gateways []GatewayStatus `json:"gateways"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return nil, fmt.Errorf("egwctl status -o json: %w", err)
	}
	return st.Gateways, nil
}

// WaitSynced polls the cloud's status until every gateway is connected and has applied
// the latest revision, and returns how long that took.
func (e *EGW) WaitSynced(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	err := Poll(ctx, timeout, 200*time.Millisecond, "every gateway at the latest revision", func() error {
		st, err := e.Status(ctx)
		if err != nil {
			return err
		}
		for _, g := range st {
			if !g.Connected || g.AppliedRevision != g.LatestRevision {
				return fmt.Errorf("%s: connected=%v applied %d of %d", g.Name, g.Connected, g.AppliedRevision, g.LatestRevision)
			}
		}
		return nil
	})
	return time.Since(start), err
}

// Drops sums a node's drop counters from its Prometheus metrics (every sample whose name
// ends in "drops_total"), read from inside its namespace.
func (e *EGW) Drops(ctx context.Context, n *Node, metricsAddr string) (float64, error) {
	if metricsAddr == "" {
		metricsAddr = "127.0.0.1:9469"
	}
	resp, err := e.Lab.HTTPClient(n.Site.GWNS, 5*time.Second).Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return 0, err
	}
	var sum float64
	found := false
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest, _ := strings.Cut(line, " ")
		if i := strings.IndexByte(name, '{'); i >= 0 {
			name = name[:i]
			if j := strings.LastIndexByte(line, '}'); j >= 0 {
				rest = strings.TrimSpace(line[j+1:])
			}
		}
		if !strings.HasSuffix(name, "drops_total") {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return 0, fmt.Errorf("metrics line %q: %w", line, err)
		}
		sum += v
		found = true
	}
	if !found {
		return 0, fmt.Errorf("no *drops_total metric at %s in %s", metricsAddr, n.Site.Gateway)
	}
	return sum, nil
}
