//go:build linux

package harness

// Gateway lifecycle helpers: register an edge without a key (a join token) and join it with
// `edgegateway join`, as an operator would, with nothing copied by hand.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// AddForJoin registers s's site and gateway with `egwctl gateway add` without a key and
// returns the join token it printed (stdout holds only the token). extra are more flags
// (e.g. --ttl).
func (e *EGW) AddForJoin(ctx context.Context, s *Site, extra ...string) (string, error) {
	if _, err := e.Ctl(ctx, "site", "add", s.Site); err != nil && !strings.Contains(err.Error(), "exists") {
		return "", err
	}
	args := append([]string{"gateway", "add", s.Gateway, "--site", s.Site, "--vp-cidr", s.VPCIDR.String(),
		"--ip", s.Underlay.Addr().String()}, extra...)
	out, err := e.Ctl(ctx, args...)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(out), nil
}

// JoinNode runs `edgegateway join TOKEN` in s's gateway namespace with the node's config
// path and state dir, and returns the node (not started; StartNode starts it with the
// written config as it is, only the device name set through EGW_TUN_NAME so that labs do
// not collide) and what the command printed (stdout, or the error with its stderr).
func (e *EGW) JoinNode(ctx context.Context, s *Site, token string) (*Node, string, error) {
	n, err := e.newNode(s)
	if err != nil {
		return nil, "", err
	}
	out, err := e.Lab.Run(ctx, s.GWNS, e.Opts.Bin.Edge, "join", token, "--config", n.Config, "--state-dir", n.StateDir, "--timeout", "20s")
	if err != nil {
		return nil, err.Error(), err
	}
	n.PublicKey, err = PublicKeyOf(filepath.Join(n.StateDir, "private.key"))
	if err != nil {
		return nil, out, err
	}
	n.argv = []string{"env", "EGW_TUN_NAME=" + n.Tun, e.Opts.Bin.Edge, "--config", n.Config}
	e.Nodes[s.Site] = n
	return n, out, nil
}

// PublicKeyOf reads a WireGuard private key file and returns its public key.
func PublicKeyOf(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	k, err := wgtypes.ParseKey(strings.TrimSpace(string(b)))
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return k.PublicKey().String(), nil
}
