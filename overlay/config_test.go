package overlay

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

func TestTUNConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		c    TUNConfig
		want string // "" = valid
	}{
		{TUNConfig{Name: "vp0", MTU: 1420}, ""},
		{TUNConfig{Name: "vp0", MTU: 1420, Driver: DriverWGTun}, ""},
		{TUNConfig{Name: "vp0", MTU: 1420, Driver: DriverWater}, ""},
		{TUNConfig{Name: "", MTU: 1420}, "tun.name"},
		{TUNConfig{Name: "a-very-long-interface-name", MTU: 1420}, "tun.name"},
		{TUNConfig{Name: "vp0", MTU: 100}, "tun.mtu"},
		{TUNConfig{Name: "vp0", MTU: 70000}, "tun.mtu"},
		{TUNConfig{Name: "vp0", MTU: 1420, Driver: "tap"}, "tun.driver"},
	} {
		err := tc.c.validate()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: err = %v, want %q", tc.c, err, tc.want)
		}
	}
}

func TestAddressingValidate(t *testing.T) {
	good := Addressing{
		VPCIDR: netip.MustParsePrefix("192.168.0.0/24"), VPAddr: netip.MustParseAddr("192.168.0.1"),
		OverlayCIDR: overlayCIDR, OverlayIP: netip.MustParseAddr("100.64.4.1"),
	}
	for _, tc := range []struct {
		name   string
		mutate func(*Addressing)
		want   string
	}{
		{"good", func(*Addressing) {}, ""},
		{"no vp cidr", func(a *Addressing) { a.VPCIDR = netip.Prefix{} }, "vpCIDR"},
		{"ipv6 vp cidr", func(a *Addressing) { a.VPCIDR = netip.MustParsePrefix("fd00::/64") }, "vpCIDR"},
		{"vp addr outside", func(a *Addressing) { a.VPAddr = netip.MustParseAddr("192.168.1.1") }, "vpAddr"},
		{"overlay ip outside", func(a *Addressing) { a.OverlayIP = netip.MustParseAddr("10.0.0.1") }, "overlayIP"},
		{"no overlay cidr", func(a *Addressing) { a.OverlayCIDR = netip.Prefix{} }, "overlayCIDR"},
		{"overlap", func(a *Addressing) {
			a.VPCIDR, a.VPAddr = netip.MustParsePrefix("100.64.0.0/24"), netip.MustParseAddr("100.64.0.1")
		}, "overlaps"},
		{"bad route", func(a *Addressing) { a.Routes = []netip.Prefix{{}} }, "route"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := good
			tc.mutate(&a)
			err := a.validate()
			if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestLinkCommands(t *testing.T) {
	var ran []string
	l := &linkConfig{name: "vp0", mtu: 1420, run: func(args ...string) error {
		ran = append(ran, strings.Join(args, " "))
		if args[0] == "route" && args[2] == "10.9.0.0/16" {
			return fmt.Errorf("boom")
		}
		return nil
	}}
	a := Addressing{
		VPCIDR: netip.MustParsePrefix("192.168.0.0/24"), VPAddr: netip.MustParseAddr("192.168.0.1"),
		OverlayCIDR: overlayCIDR, OverlayIP: netip.MustParseAddr("100.64.4.1"),
	}
	if err := l.apply(a); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"link set dev vp0 mtu 1420",
		"addr replace 192.168.0.1/24 dev vp0",
		"addr replace 100.64.4.1/32 dev vp0",
		"link set dev vp0 up",
		"route replace 192.168.0.0/24 dev vp0 proto kernel scope link src 192.168.0.1",
		"route replace 100.64.0.0/10 dev vp0 src 100.64.4.1",
	}
	if strings.Join(ran, "\n") != strings.Join(want, "\n") {
		t.Fatalf("ran:\n%s\nwant:\n%s", strings.Join(ran, "\n"), strings.Join(want, "\n"))
	}
	a.Routes = []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16")}
	if err := l.apply(a); err == nil || !strings.Contains(err.Error(), "address vp0: boom") {
		t.Fatalf("err = %v", err)
	}
}
