package overlay

// TCP throughput through a wireguard-go tunnel between two network namespaces, per TUN
// driver, plain (wireguard-go straight on the TUN) and through the Wrapper (with a
// pass-through engine that sees every packet). Opt-in: EGW_OVERLAY_PERF=1 (needs root,
// iperf3; takes ~40 s):
//
//	 ns A                                   ns B
//	 iperf3 -c 100.64.8.1                   iperf3 -s -B 100.64.8.1
//	 vp0 100.64.4.1 ── wireguard-go ─┐  ┌─ wireguard-go ── vp0 100.64.8.1
//	                     veth 10.77.0.1 ── 10.77.0.2 veth
//
// EGW_OVERLAY_PERF_SECONDS sets the iperf3 duration (default 5).

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/egw-project/egw/api"
)

type perfNode struct {
	Mode      string // "plain" or "wrapped"
	Driver    string
	Key       string
	PeerKey   string
	Endpoint  string // peer's underlay ip:port, "" for none
	Listen    int
	OverlayIP string
	VPCIDR    string
	Allowed   string // peer's allowed IPs
}

func TestNetnsThroughput(t *testing.T) {
	if os.Getenv("EGW_OVERLAY_PERF") == "" {
		t.Skip("set EGW_OVERLAY_PERF=1 to measure")
	}
	requireNetns(t)
	if _, err := exec.LookPath("iperf3"); err != nil {
		t.Skip("no iperf3")
	}
	secs := os.Getenv("EGW_OVERLAY_PERF_SECONDS")
	if secs == "" {
		secs = "5"
	}
	nsA, nsB := newNetns(t, "pa"), newNetns(t, "pb")
	nsRun(t, nsA, "ip", "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", nsB)
	nsRun(t, nsA, "ip", "addr", "add", "10.77.0.1/24", "dev", "va")
	nsRun(t, nsB, "ip", "addr", "add", "10.77.0.2/24", "dev", "vb")
	nsRun(t, nsA, "ip", "link", "set", "va", "up")
	nsRun(t, nsB, "ip", "link", "set", "vb", "up")
	t.Logf("veth baseline: %.2f Gbit/s", iperf(t, nsA, nsB, "10.77.0.2", secs))

	for _, driver := range []string{DriverWGTun, DriverWater} {
		for _, mode := range []string{"plain", "wrapped"} {
			ka, _ := wgtypes.GeneratePrivateKey()
			kb, _ := wgtypes.GeneratePrivateKey()
			b := perfNode{Mode: mode, Driver: driver, Key: kb.String(), PeerKey: ka.PublicKey().String(),
				Listen: 51820, OverlayIP: "100.64.8.1", VPCIDR: "192.168.2.0/24", Allowed: "100.64.4.0/22"}
			a := perfNode{Mode: mode, Driver: driver, Key: ka.String(), PeerKey: kb.PublicKey().String(),
				Endpoint: "10.77.0.2:51820", OverlayIP: "100.64.4.1", VPCIDR: "192.168.1.0/24", Allowed: "100.64.0.0/10"}
			stopB := startPerfNode(t, nsB, b)
			stopA := startPerfNode(t, nsA, a)
			gbps := iperf(t, nsA, nsB, "100.64.8.1", secs)
			stopA()
			stopB()
			t.Logf("driver=%s mode=%s: %.2f Gbit/s", driver, mode, gbps)
		}
	}
}

// iperf runs an iperf3 server in nsB on addr and a client in nsA; it returns Gbit/s.
func iperf(t *testing.T, nsA, nsB, addr, secs string) float64 {
	t.Helper()
	srv := exec.Command("ip", "netns", "exec", nsB, "iperf3", "-s", "-1", "-B", addr)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Wait()
	defer srv.Process.Kill()
	// Poll for the listening socket (iperf3 buffers its "listening" line on a pipe).
	for i := 0; ; i++ {
		out, _ := exec.Command("ip", "netns", "exec", nsB, "ss", "-Hltn", "sport", "=", ":5201").Output()
		if len(strings.TrimSpace(string(out))) > 0 {
			break
		}
		if i > 100 {
			t.Fatal("iperf3 server not listening")
		}
		time.Sleep(50 * time.Millisecond)
	}
	res, err := exec.Command("ip", "netns", "exec", nsA, "iperf3", "-c", addr, "-t", secs, "-J").Output()
	if err != nil {
		t.Fatalf("iperf3 client: %v: %s", err, res)
	}
	var r struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(res, &r); err != nil {
		t.Fatal(err)
	}
	return r.End.SumReceived.BitsPerSecond / 1e9
}

// startPerfNode runs TestNetnsChildNode in ns and waits until it is up; the returned
// function stops it (closing its stdin) and waits.
func startPerfNode(t *testing.T, ns string, n perfNode) func() {
	t.Helper()
	js, _ := json.Marshal(n)
	cmd := childCmd(ns, "TestNetnsChildNode", string(js))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		ok := false
		for sc.Scan() {
			if sc.Text() == "READY" && !ok {
				ok = true
				ready <- true
			}
		}
		if !ok {
			ready <- false
		}
	}()
	stop := func() {
		stdin.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	select {
	case ok := <-ready:
		if !ok {
			stop()
			t.Fatalf("node in %s did not start", ns)
		}
	case <-time.After(20 * time.Second):
		stop()
		t.Fatalf("node in %s did not start", ns)
	}
	return stop
}

// TestNetnsChildNode is one tunnel end of TestNetnsThroughput; it runs until stdin closes.
func TestNetnsChildNode(t *testing.T) {
	var n perfNode
	if err := json.Unmarshal([]byte(os.Getenv(childEnv)), &n); err != nil || n.Mode == "" {
		t.Skip("runs inside a namespace TestNetnsThroughput creates")
	}
	key, err := wgtypes.ParseKey(n.Key)
	if err != nil {
		t.Fatal(err)
	}
	vp := netip.MustParsePrefix(n.VPCIDR)
	addrs := Addressing{VPCIDR: vp, VPAddr: vp.Addr().Next(), OverlayCIDR: overlayCIDR, OverlayIP: netip.MustParseAddr(n.OverlayIP)}
	peer := api.Peer{Name: "peer", PublicKey: n.PeerKey, Endpoint: n.Endpoint, AllowedIPs: []netip.Prefix{netip.MustParsePrefix(n.Allowed)}}
	tcfg := TUNConfig{Name: "vp0", MTU: 1420, Driver: n.Driver}
	switch n.Mode {
	case "wrapped":
		o, err := New(Config{TUN: tcfg, PrivateKey: key, ListenPort: n.Listen, Address: addrs, NoUAPI: true}, forward{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer o.Close()
		if err := o.SetPeers([]api.Peer{peer}, 0); err != nil {
			t.Fatal(err)
		}
	case "plain":
		dev, err := OpenTUN(tcfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := (&linkConfig{name: "vp0", mtu: 1420, run: runIP, sysctl: os.WriteFile}).apply(addrs); err != nil {
			dev.Close()
			t.Fatal(err)
		}
		d := device.NewDevice(dev, conn.NewDefaultBind(), device.NewLogger(device.LogLevelError, "plain: "))
		defer d.Close()
		pk, _ := wgtypes.ParseKey(n.PeerKey)
		cfg := fmt.Sprintf("private_key=%s\nlisten_port=%d\npublic_key=%s\nallowed_ip=%s\n", hexKey(key), n.Listen, hexKey(pk), n.Allowed)
		if n.Endpoint != "" {
			cfg += "endpoint=" + n.Endpoint + "\n"
		}
		if err := d.IpcSet(cfg); err != nil {
			t.Fatal(err)
		}
		if err := d.Up(); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("mode %q", n.Mode)
	}
	fmt.Println("READY")
	io.Copy(io.Discard, os.Stdin)
}
