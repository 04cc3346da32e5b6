package overlay

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// linkConfig addresses the vp0 interface with iproute2 commands (in the process's
// network namespace). Everything it adds lives on the interface, so it all goes away when
// the TUN is closed.
type linkConfig struct {
	name string
	mtu  int
	run  func(args ...string) error // runIP; replaced in tests
	// sysctl writes /proc/sys files (os.WriteFile); nil skips them (tests).
	sysctl func(name string, data []byte, perm os.FileMode) error
}

// runIP runs `ip args...` and returns its output in the error.
func runIP(args ...string) error {
	var out bytes.Buffer
	cmd := exec.Command("ip", args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// commands returns the ip invocations that address the link: MTU; the VP address with
// its prefix length (the kernel adds the VP CIDR route); the overlay IP as a /32; link up;
// the overlay CIDR (and extra routes) via vp0 with the overlay IP as source, so the
// gateway's own control traffic leaves from its overlay address (docs/ARCHITECTURE.md,
// "Control plane and edge sync").
func (l *linkConfig) commands(a Addressing) [][]string {
	dev := l.name
	cmds := [][]string{
		{"link", "set", "dev", dev, "mtu", strconv.Itoa(l.mtu)},
		{"addr", "replace", fmt.Sprintf("%s/%d", a.VPAddr, a.VPCIDR.Bits()), "dev", dev},
		{"addr", "replace", a.OverlayIP.String() + "/32", "dev", dev},
		{"link", "set", "dev", dev, "up"},
		// The connected route of the VP address is added by the kernel; replace it
		// in case the VP address is not the prefix's first (proto kernel either way).
		{"route", "replace", a.VPCIDR.Masked().String(), "dev", dev, "proto", "kernel", "scope", "link", "src", a.VPAddr.String()},
		{"route", "replace", a.OverlayCIDR.Masked().String(), "dev", dev, "src", a.OverlayIP.String()},
	}
	for _, r := range a.Routes {
		cmds = append(cmds, []string{"route", "replace", r.Masked().String(), "dev", dev, "src", a.OverlayIP.String()})
	}
	return cmds
}

func (l *linkConfig) apply(a Addressing) error {
	if l.sysctl != nil {
		// The overlay is IPv4: no IPv6 link-local address, so the kernel sends no router
		// solicitations or MLD reports into vp0 for the engine to drop. Best effort (IPv6
		// may be off altogether).
		_ = l.sysctl("/proc/sys/net/ipv6/conf/"+l.name+"/disable_ipv6", []byte("1"), 0o644)
	}
	for _, c := range l.commands(a) {
		if err := l.run(c...); err != nil {
			return fmt.Errorf("overlay: address %s: %w", l.name, err)
		}
	}
	return nil
}
