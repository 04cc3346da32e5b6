package main

// A path is what the measured traffic crosses. Each path builds its namespaces in a Lab of
// its own (removed before the next path starts) and says where the client runs and which
// address it dials. Beside the reference paths, EGW's paths (edge→cloud service,
// edge→hub→edge, same-site, and the TUN drivers side by side) are built on the same
// harness.Topology as the netns tests, see egw.go.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/egw-project/egw/netns-tests/harness"
)

// endpoints is a built path: where the client runs, where the servers run, and the
// address the client uses for each measurement. Through EGW each service is its own
// EService (one protocol and port) and so has its own VIP.
type endpoints struct {
	clientNS string
	serverNS string
	iperf    string        // host the iperf3 client dials (TCP port iperfPort)
	echo     string        // host the TCP request/response client dials (TCP port echoPort)
	udp      string        // host the 64-byte UDP datagrams go to (UDP port udpPort)
	ping     string        // host pinged
	note     string        // printed with every figure of the path (e.g. "ping answered by gateway")
	extra    []extraFigure // measured during setup (e.g. a daemon's RSS)
	// afterStart, if set, runs once the servers answer and may measure more figures.
	afterStart func(ctx context.Context) ([]extraFigure, error)
	// verify, if set, runs after every round and fails the path when what was measured is
	// not what the path claims (e.g. an edge-to-edge pair that left its direct path).
	verify func(ctx context.Context) error
}

// extraFigure is a figure a path's setup measured itself.
type extraFigure struct {
	metric string
	value  float64
	unit   string
}

// The server-side ports; EGW paths expose exactly these as EServices.
const (
	iperfPort = 5201 // iperf3 server, TCP
	echoPort  = 7007 // responder TCP echo
	udpPort   = 9090 // in-process UDP sink in the server namespace
)

// direct fills every address with one host (paths without translation).
func direct(clientNS, serverNS, host string) endpoints {
	return endpoints{clientNS: clientNS, serverNS: serverNS, iperf: host, echo: host, udp: host, ping: host}
}

// path is one row group of the report.
type path struct {
	name string
	desc string
	// setup builds the path in lab; a returned errSkip skips the path with its reason.
	setup func(ctx context.Context, lab *harness.Lab, env *env) (endpoints, error)
}

// errSkip marks a path that cannot run here (for example EGW binaries missing).
type errSkip struct{ reason string }

func (e errSkip) Error() string { return e.reason }

func isSkip(err error) (string, bool) {
	var s errSkip
	if errors.As(err, &s) {
		return s.reason, true
	}
	return "", false
}

// env is what every path may use.
type env struct {
	tools harness.Tools
	egw   harness.EGWBinaries
	egwOK error // nil when the EGW binaries are present
}

// vethPath is the ceiling: two namespaces joined by one veth pair, no tunnel.
var vethPath = path{
	name: "veth",
	desc: "raw veth pair between two namespaces (ceiling)",
	setup: func(ctx context.Context, lab *harness.Lab, e *env) (endpoints, error) {
		c, err := lab.AddNS("cli")
		if err != nil {
			return endpoints{}, err
		}
		s, err := lab.AddNS("srv")
		if err != nil {
			return endpoints{}, err
		}
		if err := lab.Veth(c, "eth0", s, "eth0"); err != nil {
			return endpoints{}, err
		}
		cip, sip := netip.MustParseAddr("10.98.0.1"), netip.MustParseAddr("10.98.0.2")
		if err := lab.Addr(c, "eth0", cip.String()+"/24"); err != nil {
			return endpoints{}, err
		}
		if err := lab.Addr(s, "eth0", sip.String()+"/24"); err != nil {
			return endpoints{}, err
		}
		return direct(c, s, sip.String()), nil
	},
}

// wgPath is the reference: upstream wireguard-go in both namespaces, configured with wg.
var wgPath = path{
	name: "wireguard-go",
	desc: "plain upstream wireguard-go tunnel between two namespaces (reference)",
	setup: func(ctx context.Context, lab *harness.Lab, e *env) (endpoints, error) {
		p, err := lab.PlainWireGuard(ctx, e.tools.WireGuardGo)
		if err != nil {
			return endpoints{}, fmt.Errorf("reference tunnel: %w", err)
		}
		ep := direct(p.Left, p.Right, p.RightIP.String())
		ep.note = offloads(ctx, lab, p.Left, p.DevLeft)
		// Memory of one plain wireguard-go daemon, idle: what EGW's RSS figures compare with.
		if pid, err := findPid(e.tools.WireGuardGo, "-f", p.DevLeft); err == nil {
			if kb, err := rssKB(pid); err == nil {
				ep.extra = append(ep.extra, extraFigure{"idle_rss", float64(kb) / 1024, "MiB"})
			}
		}
		return ep, nil
	},
}

// offloads summarizes the offload state of a TUN device ("tun tso=on gso=on gro=on"), which
// decides most of a userspace tunnel's throughput; "" if ethtool cannot tell.
func offloads(ctx context.Context, lab *harness.Lab, ns, dev string) string {
	out, err := lab.Run(ctx, ns, "ethtool", "-k", dev)
	if err != nil {
		return ""
	}
	var parts []string
	for _, f := range []struct{ key, short string }{
		{"tcp-segmentation-offload", "tso"}, {"generic-segmentation-offload", "gso"}, {"generic-receive-offload", "gro"},
	} {
		for _, line := range strings.Split(out, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), f.key+": "); ok {
				parts = append(parts, f.short+"="+strings.Fields(v)[0])
			}
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "tun " + strings.Join(parts, " ")
}
