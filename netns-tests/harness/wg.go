//go:build linux

package harness

// The reference tunnel of the benchmarks: two namespaces joined by a veth underlay, each
// running upstream wireguard-go, configured with `wg setconf` through the UAPI socket and
// addressed with ip — no EGW code involved.
//
//	┌──────── wgl ────────┐             ┌──────── wgr ────────┐
//	│ wg… 10.200.0.1/24   │  UDP 51820  │ wg… 10.200.0.2/24   │
//	│ ul0 10.99.0.1/24 ───┼─────────────┼─── ul0 10.99.0.2/24 │
//	└─────────────────────┘             └─────────────────────┘

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// UAPIDir is where wireguard-go serves its UAPI sockets. It is one directory for all network
// namespaces (the mount namespace is shared), so device names must be unique per Lab.
const UAPIDir = "/var/run/wireguard"

// WGPair is a running plain wireguard-go tunnel between two namespaces.
type WGPair struct {
	Left, Right     string     // full namespace names
	LeftIP, RightIP netip.Addr // tunnel addresses
	LeftUL, RightUL netip.Addr // underlay addresses
	DevLeft         string     // WireGuard device name in Left
	DevRight        string     // WireGuard device name in Right
}

// DevName returns a network device name unique to this Lab (≤ 15 bytes): prefix (≤ 4 bytes)
// + the Lab's random suffix + tag (1 byte).
func (l *Lab) DevName(prefix, tag string) string {
	_, suffix, _ := strings.Cut(l.ID, "x")
	return prefix + suffix + tag
}

// PlainWireGuard builds the reference tunnel with the wireguard-go binary wgGo and waits
// until a packet crosses it.
func (l *Lab) PlainWireGuard(ctx context.Context, wgGo string) (*WGPair, error) {
	p := &WGPair{
		LeftIP: netip.MustParseAddr("10.200.0.1"), RightIP: netip.MustParseAddr("10.200.0.2"),
		LeftUL: netip.MustParseAddr("10.99.0.1"), RightUL: netip.MustParseAddr("10.99.0.2"),
		DevLeft: l.DevName("wg", "l"), DevRight: l.DevName("wg", "r"),
	}
	var err error
	if p.Left, err = l.AddNS("wgl"); err != nil {
		return nil, err
	}
	if p.Right, err = l.AddNS("wgr"); err != nil {
		return nil, err
	}
	if err := l.Veth(p.Left, "ul0", p.Right, "ul0"); err != nil {
		return nil, err
	}
	if err := l.Addr(p.Left, "ul0", p.LeftUL.String()+"/24"); err != nil {
		return nil, err
	}
	if err := l.Addr(p.Right, "ul0", p.RightUL.String()+"/24"); err != nil {
		return nil, err
	}
	keyL, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		return nil, err
	}
	keyR, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		return nil, err
	}
	sides := []struct {
		ns, dev, addr    string
		key              wgtypes.Key
		peer             wgtypes.Key
		peerIP, endpoint string
	}{
		{p.Left, p.DevLeft, p.LeftIP.String(), keyL, keyR.PublicKey(), p.RightIP.String(), p.RightUL.String() + ":51820"},
		{p.Right, p.DevRight, p.RightIP.String(), keyR, keyL.PublicKey(), p.LeftIP.String(), p.LeftUL.String() + ":51820"},
	}
	for _, s := range sides {
		// -f: stay in the foreground so the Lab owns the process.
		if _, err := l.Start(s.ns, "wireguard-go-"+s.dev, []string{"LOG_LEVEL=error"}, wgGo, "-f", s.dev); err != nil {
			return nil, err
		}
		sock := filepath.Join(UAPIDir, s.dev+".sock")
		if err := WaitFile(ctx, sock, 10*time.Second); err != nil {
			return nil, err
		}
		conf := filepath.Join(l.LogDir, s.dev+".conf")
		body := fmt.Sprintf("[Interface]\nPrivateKey = %s\nListenPort = 51820\n\n[Peer]\nPublicKey = %s\nAllowedIPs = %s/32\nEndpoint = %s\n",
			s.key, s.peer, s.peerIP, s.endpoint)
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			return nil, err
		}
		if _, err := l.Run(ctx, s.ns, "wg", "setconf", s.dev, conf); err != nil {
			return nil, err
		}
		if err := l.Addr(s.ns, s.dev, s.addr+"/24"); err != nil {
			return nil, err
		}
		if err := l.IP(s.ns, "link", "set", s.dev, "up"); err != nil {
			return nil, err
		}
	}
	err = Poll(ctx, 10*time.Second, 50*time.Millisecond, "ping across the wireguard-go tunnel", func() error {
		_, err := l.Run(ctx, p.Left, "ping", "-c1", "-W1", "-q", p.RightIP.String())
		return err
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}
