//go:build linux

// Package harness builds throw-away network topologies out of Linux network namespaces and
// veth pairs, runs commands and long-lived processes inside them, and removes all of it again.
//
// It is the shared base of EGW's end-to-end tests (netns-tests, build tag `netns`), the
// benchmark (bench/cmd/egwbench) and nothing else. Everything a Lab creates carries the Lab's
// prefix ("egw" + PID + "x" + random hex), so two runs never collide and a crashed run's
// leftovers can be found and swept (SweepStale). Close kills every process the Lab started
// (process group first, then whatever is still inside its namespaces) and deletes every
// namespace, which also removes the veth pairs inside them. NewT ties a Lab to a test: Close
// runs from t.Cleanup, also after a failure or a panic, and on failure the logs of every
// process are written to the test log.
//
// Readiness is always polled with a bound (Poll, WaitTCP, WaitFile), never assumed after a
// fixed sleep. Sockets can be opened inside a namespace from this process (DialContext,
// HTTPClient, ListenPacket): the socket keeps the namespace it was created in.
//
// The EGW site topology (Topology), the gateways' configuration (egw.go) and a plain
// wireguard-go tunnel used as the benchmark reference (wg.go) are built on top of this file.
package harness

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Prefix starts the name of every namespace a Lab creates.
const Prefix = "egw"

// netnsDir is where `ip netns` keeps its named namespaces.
const netnsDir = "/var/run/netns"

// Lab owns a set of namespaces and processes. Its methods are safe for concurrent use.
type Lab struct {
	// ID is unique per Lab: Prefix + PID + "x" + 4 random hex digits.
	ID string
	// LogDir receives the stdout/stderr of every process started with Start.
	LogDir string
	// Logf, if set, receives a line for each action (tests pass t.Logf).
	Logf func(format string, args ...any)

	mu     sync.Mutex
	nss    []string // full namespace names, in creation order
	procs  []*Proc
	closed bool
}

// New returns an empty Lab whose process logs go to logDir (created if missing).
func New(logDir string) (*Lab, error) {
	var r [2]byte
	if _, err := rand.Read(r[:]); err != nil {
		return nil, fmt.Errorf("harness: random id: %w", err)
	}
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, fmt.Errorf("harness: log dir: %w", err)
	}
	return &Lab{
		ID:     fmt.Sprintf("%s%dx%s", Prefix, os.Getpid(), hex.EncodeToString(r[:])),
		LogDir: logDir,
	}, nil
}

// NewT returns a Lab for a test: it skips the test unless running as root with `ip` present,
// logs to t.TempDir, closes from t.Cleanup and then, if the test failed, writes every
// process's output to the test log.
func NewT(t testing.TB) *Lab {
	t.Helper()
	SkipUnlessRoot(t)
	l, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	l.Logf = t.Logf
	t.Cleanup(func() {
		err := l.Close() // first, so that every log is complete
		if t.Failed() {
			l.DumpLogs(t.Logf)
		}
		if err != nil {
			t.Errorf("harness cleanup: %v", err)
		}
	})
	return l
}

// SkipUnlessRoot skips t unless the process is root and `ip` is installed.
func SkipUnlessRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("netns tests need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("netns tests need iproute2 (scripts/install-deps.sh)")
	}
}

func (l *Lab) logf(format string, args ...any) {
	if l.Logf != nil {
		l.Logf(format, args...)
	}
}

// NS returns the full namespace name of the short name used inside this Lab.
func (l *Lab) NS(short string) string { return l.ID + "-" + short }

// AddNS creates namespace short (full name NS(short)) with its loopback up. It is deleted by
// Close.
func (l *Lab) AddNS(short string) (string, error) {
	name := l.NS(short)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return "", fmt.Errorf("ip netns add %s: %v: %s", name, err, bytes.TrimSpace(out))
	}
	l.mu.Lock()
	l.nss = append(l.nss, name)
	l.mu.Unlock()
	if err := l.IP(name, "link", "set", "lo", "up"); err != nil {
		return "", err
	}
	// Keep each namespace deterministic: no IPv6 DAD delays, no router solicitations.
	_ = l.Sysctl(name, "net.ipv6.conf.all.disable_ipv6", "1")
	_ = l.Sysctl(name, "net.ipv6.conf.default.disable_ipv6", "1")
	return name, nil
}

// IP runs `ip -n ns args...`.
func (l *Lab) IP(ns string, args ...string) error {
	full := append([]string{"-n", ns}, args...)
	if out, err := exec.Command("ip", full...).CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(full, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// Veth creates a veth pair with end nameA in nsA and nameB in nsB, both up. The names only
// need to be unique inside their namespace (at most 15 bytes).
func (l *Lab) Veth(nsA, nameA, nsB, nameB string) error {
	if err := l.IP(nsA, "link", "add", nameA, "type", "veth", "peer", "name", nameB, "netns", nsB); err != nil {
		return err
	}
	if err := l.IP(nsA, "link", "set", nameA, "up"); err != nil {
		return err
	}
	return l.IP(nsB, "link", "set", nameB, "up")
}

// Bridge creates bridge name in ns, up, with IPv4 address cidr if not empty.
func (l *Lab) Bridge(ns, name, cidr string) error {
	if err := l.IP(ns, "link", "add", name, "type", "bridge"); err != nil {
		return err
	}
	if err := l.IP(ns, "link", "set", name, "up"); err != nil {
		return err
	}
	if cidr != "" {
		return l.Addr(ns, name, cidr)
	}
	return nil
}

// Enslave attaches link dev in ns to bridge br.
func (l *Lab) Enslave(ns, dev, br string) error {
	return l.IP(ns, "link", "set", dev, "master", br)
}

// Addr adds address cidr (e.g. "10.0.0.1/24") to dev in ns.
func (l *Lab) Addr(ns, dev, cidr string) error {
	return l.IP(ns, "addr", "add", cidr, "dev", dev)
}

// Route adds a route to dst (a CIDR or "default") via gw in ns.
func (l *Lab) Route(ns, dst, gw string) error {
	return l.IP(ns, "route", "add", dst, "via", gw)
}

// SetMTU sets the MTU of dev in ns.
func (l *Lab) SetMTU(ns, dev string, mtu int) error {
	return l.IP(ns, "link", "set", dev, "mtu", strconv.Itoa(mtu))
}

// Sysctl writes a sysctl inside ns (name in dotted form).
func (l *Lab) Sysctl(ns, name, value string) error {
	_, err := l.Run(context.Background(), ns, "sysctl", "-q", "-w", name+"="+value)
	return err
}

// EnableForwarding turns on IPv4 forwarding in ns.
func (l *Lab) EnableForwarding(ns string) error {
	return l.Sysctl(ns, "net.ipv4.ip_forward", "1")
}

// Run runs argv in ns, waits for it and returns its stdout. A failure's error carries the
// exit status and stderr.
func (l *Lab) Run(ctx context.Context, ns string, argv ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, argv...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	if err != nil {
		return stdout.String(), fmt.Errorf("in %s: %s: %v: %s", ns, strings.Join(argv, " "), err,
			bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.String(), nil
}

// Proc is a long-running process started in a namespace.
type Proc struct {
	Name    string // short name, used for its log files
	NS      string
	Argv    []string
	Stdout  string // path of the captured stdout
	Stderr  string // path of the captured stderr
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
}

// Start starts argv in ns with extra environment env ("K=V"). Its stdout and stderr go to
// files in LogDir named after name. Close (or Stop) ends it.
func (l *Lab) Start(ns, name string, env []string, argv ...string) (*Proc, error) {
	l.mu.Lock()
	n := len(l.procs)
	l.mu.Unlock()
	base := filepath.Join(l.LogDir, fmt.Sprintf("%02d-%s", n, name))
	outF, err := os.Create(base + ".stdout")
	if err != nil {
		return nil, err
	}
	errF, err := os.Create(base + ".stderr")
	if err != nil {
		outF.Close()
		return nil, err
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...)
	cmd.Stdout, cmd.Stderr = outF, errF
	cmd.Env = append(os.Environ(), env...)
	// Own process group so Stop reaches children; SIGKILL if this process dies first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		outF.Close()
		errF.Close()
		return nil, fmt.Errorf("start %s in %s: %w", name, ns, err)
	}
	p := &Proc{Name: name, NS: ns, Argv: argv, Stdout: outF.Name(), Stderr: errF.Name(), cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		outF.Close()
		errF.Close()
		close(p.done)
	}()
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	l.logf("started %s in %s (pid %d): %s", name, ns, cmd.Process.Pid, strings.Join(argv, " "))
	return p, nil
}

// Pid is the process id (ip netns exec execs the program, so it is the program's own).
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended, and how.
func (p *Proc) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.waitErr
	default:
		return false, nil
	}
}

// Done is closed when the process has ended.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Signal sends sig to the process (not its group).
func (p *Proc) Signal(sig syscall.Signal) error { return p.cmd.Process.Signal(sig) }

// Stop sends SIGTERM to the process group, waits up to grace, then SIGKILLs it. It returns
// the process's exit error, if it exited on its own with one before the signal.
func (p *Proc) Stop(grace time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
	return nil
}

// Logs returns the captured stdout and stderr of p.
func (p *Proc) Logs() (stdout, stderr string) {
	o, _ := os.ReadFile(p.Stdout)
	e, _ := os.ReadFile(p.Stderr)
	return string(o), string(e)
}

// DumpLogs writes the tail of every process's output to logf.
func (l *Lab) DumpLogs(logf func(string, ...any)) {
	l.mu.Lock()
	procs := append([]*Proc(nil), l.procs...)
	l.mu.Unlock()
	for _, p := range procs {
		o, e := p.Logs()
		logf("---- %s in %s: %s\n-- stdout:\n%s\n-- stderr:\n%s", p.Name, p.NS, strings.Join(p.Argv, " "), tail(o, 4000), tail(e, 4000))
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// Close stops every process and deletes every namespace of the Lab. It is idempotent and
// keeps going past errors, returning them joined.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	procs, nss := l.procs, l.nss
	l.mu.Unlock()

	for i := len(procs) - 1; i >= 0; i-- {
		_ = procs[i].Stop(3 * time.Second)
	}
	var errs []error
	for i := len(nss) - 1; i >= 0; i-- {
		if err := deleteNS(nss[i]); err != nil {
			errs = append(errs, err)
		}
	}
	if len(nss) > 0 {
		l.logf("removed %d namespaces of %s", len(nss), l.ID)
	}
	return errors.Join(errs...)
}

// deleteNS kills whatever still runs inside ns and deletes it.
func deleteNS(ns string) error {
	if out, err := exec.Command("ip", "netns", "pids", ns).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
		if _, statErr := os.Stat(filepath.Join(netnsDir, ns)); os.IsNotExist(statErr) {
			return nil
		}
		return fmt.Errorf("ip netns del %s: %v: %s", ns, err, bytes.TrimSpace(out))
	}
	return nil
}

// SweepStale deletes namespaces left by crashed runs: names that start with Prefix followed
// by the PID of a process that no longer exists. It returns the names it removed.
func SweepStale() ([]string, error) {
	entries, err := os.ReadDir(netnsDir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, e := range entries {
		pid, ok := ownerPID(e.Name())
		if !ok || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
			continue // its run is still going
		}
		if err := deleteNS(e.Name()); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, e.Name())
	}
	return removed, errors.Join(errs...)
}

// ownerPID parses "egw<pid>x<hex>-<short>".
func ownerPID(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, Prefix)
	if !ok {
		return 0, false
	}
	digits, after, ok := strings.Cut(rest, "x")
	if !ok || !strings.Contains(after, "-") || digits == "" || digits[0] == '0' {
		return 0, false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false // no sign, no spaces: exactly how New writes a PID
		}
	}
	pid, err := strconv.Atoi(digits)
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, true
}

// permanentError makes Poll give up at once.
type permanentError struct{ err error }

func (p permanentError) Error() string { return p.err.Error() }
func (p permanentError) Unwrap() error { return p.err }

// Permanent wraps err so that Poll stops waiting and returns it (e.g. the awaited process
// has exited).
func Permanent(err error) error { return permanentError{err} }

// Poll calls check every interval until it returns nil or timeout passes; the error then
// names what was awaited and check's last error. A Permanent error ends the wait at once.
func Poll(ctx context.Context, timeout, interval time.Duration, what string, check func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return nil
		}
		var perm permanentError
		if errors.As(err, &perm) {
			return fmt.Errorf("waiting for %s: %w", what, perm.err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s (%v): %w", what, timeout, err)
		case <-tick.C:
		}
	}
}

// WaitFile polls until path exists.
func WaitFile(ctx context.Context, path string, timeout time.Duration) error {
	return Poll(ctx, timeout, 20*time.Millisecond, path, func() error {
		_, err := os.Stat(path)
		return err
	})
}

// WaitTCP polls until a TCP connection to addr from inside ns succeeds.
func (l *Lab) WaitTCP(ctx context.Context, ns, addr string, timeout time.Duration) error {
	return Poll(ctx, timeout, 20*time.Millisecond, "tcp "+addr+" from "+ns, func() error {
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		c, err := l.DialContext(ns)(dctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

// InNS runs fn on an OS thread switched into the network namespace ns. Sockets fn creates
// stay in ns. fn must not start goroutines that create sockets.
func InNS(ns string, fn func() error) error {
	runtime.LockOSThread()
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open own netns: %w", err)
	}
	defer unix.Close(orig)
	target, err := unix.Open(filepath.Join(netnsDir, ns), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open netns %s: %w", ns, err)
	}
	defer unix.Close(target)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("setns %s: %w", ns, err)
	}
	ferr := fn()
	if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
		// Leave the thread locked: it ends with this goroutine instead of serving others
		// in the wrong namespace.
		return errors.Join(ferr, fmt.Errorf("setns back: %w", err))
	}
	runtime.UnlockOSThread()
	return ferr
}

// DialContext returns a dial function whose sockets live in ns.
func (l *Lab) DialContext(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := InNS(ns, func() error {
			var d net.Dialer
			var err error
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// ListenPacket opens a packet socket (e.g. "udp", ":0") inside ns.
func (l *Lab) ListenPacket(ns, network, addr string) (net.PacketConn, error) {
	var pc net.PacketConn
	err := InNS(ns, func() error {
		var err error
		pc, err = net.ListenPacket(network, addr)
		return err
	})
	return pc, err
}

// HTTPClient returns an HTTP client whose connections start in ns, without keep-alives and
// with the given overall timeout.
func (l *Lab) HTTPClient(ns string, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext:       l.DialContext(ns),
			DisableKeepAlives: true,
			Proxy:             nil,
		},
	}
}
