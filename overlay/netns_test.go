package overlay

// Tests with real TUN devices. They need root and /dev/net/tun, and never touch the host's
// network namespace: the parent test creates a namespace, re-runs this test binary inside
// it (`ip netns exec NS <binary> -test.run=<child test>`), and deletes the namespace
// afterwards, even on failure. The child tests skip unless started that way.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/egw-project/egw/nat"
)

const childEnv = "EGW_OVERLAY_NETNS_CHILD" // set in the child process, names the case

func requireNetns(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skip("no /dev/net/tun")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("no ip command")
	}
}

var nsSeq atomic.Int32

// newNetns creates a network namespace removed at the end of the test.
func newNetns(t *testing.T, tag string) string {
	t.Helper()
	ns := fmt.Sprintf("egwov-%s-%d-%d", tag, os.Getpid(), nsSeq.Add(1))
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", ns, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", ns, err, out)
		}
	})
	nsRun(t, ns, "ip", "link", "set", "lo", "up")
	return ns
}

func nsRun(t *testing.T, ns string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("in %s: %s: %v: %s", ns, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// childCmd returns the command running child test `name` inside ns.
func childCmd(ns, name, arg string) *exec.Cmd {
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^"+name+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+arg)
	return cmd
}

// TestNetnsDevice: with each driver, New creates the TUN with its addresses, routes and
// MTU, passes packets between the kernel and the Wrapper (hairpin and the reply queue), serves
// the UAPI socket, and Close removes all of it.
func TestNetnsDevice(t *testing.T) {
	requireNetns(t)
	for _, driver := range []string{DriverWGTun, DriverWater} {
		t.Run(driver, func(t *testing.T) {
			ns := newNetns(t, "dev")
			out, err := childCmd(ns, "TestNetnsChildDevice", driver).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "--- PASS: TestNetnsChildDevice") {
				t.Fatalf("child: %v\n%s", err, out)
			}
			t.Logf("child:\n%s", out)
		})
	}
}

// mirror is a fake engine: a site packet to mirrorHost is sent back to the site with
// addresses and ports swapped (checksums stay valid: the sums are the same); an overlay
// packet goes back to the overlay.
type mirror struct{}

var mirrorHost = netip.MustParseAddr("192.168.77.50")

func (mirror) FromSite(pkt, reply []byte) nat.Result {
	if len(pkt) < 28 || pkt[0] != 0x45 || pkt[9] != 17 || dstOf(pkt) != mirrorHost {
		return nat.Result{Action: nat.Drop}
	}
	var a [4]byte
	copy(a[:], pkt[12:16])
	copy(pkt[12:16], pkt[16:20])
	copy(pkt[16:20], a[:])
	var p [2]byte
	copy(p[:], pkt[20:22])
	copy(pkt[20:22], pkt[22:24])
	copy(pkt[22:24], p[:])
	return nat.Result{Action: nat.ToSite}
}

// FromOverlay drops the packet and answers it with a copy of itself to the overlay.
func (mirror) FromOverlay(pkt, reply []byte) nat.Result {
	n := copy(reply, pkt)
	return nat.Result{Action: nat.Drop, ReplyLen: n, ReplyAction: nat.ToOverlay}
}

type ipAddrJSON struct {
	Ifname   string   `json:"ifname"`
	MTU      int      `json:"mtu"`
	Flags    []string `json:"flags"`
	AddrInfo []struct {
		Local     string `json:"local"`
		Prefixlen int    `json:"prefixlen"`
	} `json:"addr_info"`
}

type ipRouteJSON struct {
	Dst     string `json:"dst"`
	Prefsrc string `json:"prefsrc"`
}

func TestNetnsChildDevice(t *testing.T) {
	driver := os.Getenv(childEnv)
	if driver != DriverWGTun && driver != DriverWater {
		t.Skip("runs inside the namespace TestNetnsDevice creates")
	}
	key, _ := wgtypes.GeneratePrivateKey()
	name := fmt.Sprintf("egwt%d", os.Getpid()%1000000) // unique: the UAPI socket path is not per namespace
	cfg := Config{
		TUN:        TUNConfig{Name: name, MTU: 1380, Driver: driver},
		PrivateKey: key,
		Address: Addressing{
			VPCIDR:      netip.MustParsePrefix("192.168.77.0/24"),
			VPAddr:      netip.MustParseAddr("192.168.77.1"),
			OverlayCIDR: overlayCIDR,
			OverlayIP:   netip.MustParseAddr("100.64.4.1"),
			Routes:      []netip.Prefix{netip.MustParsePrefix("10.200.0.0/16")},
		},
	}
	o, err := New(cfg, mirror{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()

	// Addresses, MTU, link up.
	out, err := exec.Command("ip", "-j", "addr", "show", "dev", name).Output()
	if err != nil {
		t.Fatal(err)
	}
	var links []ipAddrJSON
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		t.Fatalf("ip -j addr: %v %s", err, out)
	}
	var addrs []string
	for _, a := range links[0].AddrInfo {
		addrs = append(addrs, fmt.Sprintf("%s/%d", a.Local, a.Prefixlen))
	}
	slices.Sort(addrs)
	if fmt.Sprint(addrs) != "[100.64.4.1/32 192.168.77.1/24]" || links[0].MTU != 1380 || !slices.Contains(links[0].Flags, "UP") {
		t.Fatalf("link: %+v addrs %v", links[0], addrs)
	}
	// Routes.
	out, err = exec.Command("ip", "-j", "-4", "route", "show", "dev", name).Output()
	if err != nil {
		t.Fatal(err)
	}
	var routes []ipRouteJSON
	if err := json.Unmarshal(out, &routes); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"192.168.77.0/24": "192.168.77.1", "100.64.0.0/10": "100.64.4.1", "10.200.0.0/16": "100.64.4.1"}
	for _, r := range routes {
		if src, ok := want[r.Dst]; ok && src == r.Prefsrc {
			delete(want, r.Dst)
		}
	}
	if len(want) != 0 {
		t.Fatalf("routes missing %v; have %s", want, out)
	}

	// Hairpin through the real TUN: the kernel sends to mirrorHost (routed to vp0), the
	// Wrapper reads it, the engine mirrors it, the Wrapper writes it back, the kernel
	// delivers it to the sending socket.
	uc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP("192.168.77.1")})
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	uc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := uc.WriteToUDP([]byte("mirror me"), &net.UDPAddr{IP: mirrorHost.AsSlice(), Port: 9999}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	n, from, err := uc.ReadFromUDP(buf)
	if err != nil || string(buf[:n]) != "mirror me" || from.Port != 9999 {
		t.Fatalf("hairpin: %v %q from %v", err, buf[:n], from)
	}
	// The reply queue through the real TUN: the reply to a packet handed to Write reaches
	// WireGuard's Read (which is blocked in the TUN) — WireGuard has no peer for it and
	// drops it.
	before := o.Wrapper().Stats().ToOverlayPackets
	bufs := [][]byte{append(make([]byte, wgOffset), udp4(netip.MustParseAddr("100.64.8.5"), netip.MustParseAddr("100.64.12.5"), "relay")...)}
	if _, err := o.Wrapper().Write(bufs, wgOffset); err != nil {
		t.Fatal(err)
	}
	for i := 0; o.Wrapper().Stats().ToOverlayPackets == before; i++ {
		if i > 200 {
			t.Fatal("queued reply not read by WireGuard")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// UAPI socket.
	sock := "/var/run/wireguard/" + name + ".sock"
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprint(c, "get=1\n\n")
	var got []string
	sc := bufio.NewScanner(c)
	for sc.Scan() && sc.Text() != "" {
		got = append(got, sc.Text())
	}
	c.Close()
	if !slices.Contains(got, "errno=0") || !slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, "listen_port=") }) {
		t.Fatalf("UAPI get: %q", got)
	}
	if _, err := exec.LookPath("wg"); err == nil {
		out, err := exec.Command("wg", "show", name).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "listening port") {
			t.Errorf("wg show: %v: %s", err, out)
		}
	}

	// Close removes the interface (and so its addresses and routes) and the socket.
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	for i := 0; exec.Command("ip", "link", "show", "dev", name).Run() == nil; i++ {
		if i > 100 {
			t.Fatal("interface still there after Close")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("UAPI socket still there: %v", err)
	}
	if out, _ := exec.Command("ip", "-4", "route", "show", "100.64.0.0/10").Output(); len(strings.TrimSpace(string(out))) != 0 {
		t.Errorf("route left behind: %s", out)
	}
}
