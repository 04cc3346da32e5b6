package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// daemonEnv, when set to a number, makes the test binary run cloudgateway itself (with the
// arguments after "--") with RLIMIT_NOFILE lowered to that number: a daemon whose
// descriptors a test can exhaust cheaply.
const daemonEnv = "EGW_TEST_DAEMON_NOFILE"

func TestMain(m *testing.M) {
	if v := os.Getenv(daemonEnv); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err == nil {
			err = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: n, Max: n})
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "lowering RLIMIT_NOFILE:", err)
			os.Exit(2)
		}
		args := os.Args[1:]
		for i, a := range args {
			if a == "--" {
				args = args[i+1:]
				break
			}
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		cmd := newCommand(os.Stderr)
		cmd.SetArgs(args)
		if err := cmd.ExecuteContext(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "cloudgateway:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if v := os.Getenv(holdEnv); v != "" {
		os.Exit(holdConns(v))
	}
	os.Exit(m.Run())
}

// heldConns is how many unauthenticated connections the exhaustion test holds open, in
// holders processes (one process may not have that many descriptors).
const (
	heldConns = 20000
	holders   = 4
)

// holdEnv, when set to "ADDR COUNT", makes the test binary open COUNT unauthenticated
// connections to ADDR from 127.0.0.1, print "opened N reset R failed M", and hold them
// until its standard input closes. A third stay silent, a third send headers announcing a
// 1000-byte body and never send it, a third make one request and stay idle after their
// 401. A dial reset by the daemon is counted and the next one tried; the holder stops early
// once 64 dials have failed otherwise (timed out: the daemon no longer accepts).
const holdEnv = "EGW_TEST_HOLD"

func holdConns(spec string) int {
	var addr string
	var count int64
	if _, err := fmt.Sscan(spec, &addr, &count); err != nil {
		fmt.Fprintln(os.Stderr, "bad", holdEnv, err)
		return 2
	}
	var mu sync.Mutex
	var conns []net.Conn
	var opened, reset, failed, next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{Timeout: time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}}
			for {
				i := next.Add(1)
				if i > count || failed.Load() >= 64 {
					return
				}
				c, err := d.Dial("tcp", addr)
				if errors.Is(err, syscall.ECONNRESET) {
					reset.Add(1) // accepted and closed at once: the daemon refused it
					continue
				}
				if err != nil {
					failed.Add(1)
					continue
				}
				opened.Add(1)
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
				c.SetWriteDeadline(time.Now().Add(time.Second))
				switch i % 3 {
				case 1:
					fmt.Fprintf(c, "POST /v1/apply HTTP/1.1\r\nHost: egw\r\nContent-Length: 1000\r\n\r\n")
				case 2:
					fmt.Fprintf(c, "GET /v1/revision HTTP/1.1\r\nHost: egw\r\n\r\n")
				}
			}
		}()
	}
	wg.Wait()
	fmt.Printf("opened %d reset %d failed %d\n", opened.Load(), reset.Load(), failed.Load())
	io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		c.Close()
	}
	return 0
}

// TestUnauthenticatedConnectionsDoNotStarveAPI holds 20,000 unauthenticated connections
// (see holdConns) to the TCP admin API of a daemon limited to 1024 descriptors, all from
// 127.0.0.1. A token holder on another address (127.0.0.2) and a client of the unix
// socket must still be answered within a second each.
func TestUnauthenticatedConnectionsDoNotStarveAPI(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 20,000 connections")
	}
	dir := t.TempDir()
	args := apiConfig(t, dir, "")
	sock := args[5]
	logs := &syncBuffer{}
	daemon := exec.Command(os.Args[0], append([]string{"-test.run=^$", "--"}, args...)...)
	daemon.Env = append(os.Environ(), daemonEnv+"=1024")
	daemon.Stderr = logs
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopProcess(daemon) })
	addr, _ := tcpAddr(t, logs)
	waitSocket(t, sock, logs)

	begin := time.Now()
	var opened, reset, failed int
	for h := 0; h < holders; h++ {
		holder := exec.Command(os.Args[0], "-test.run=^$")
		holder.Env = append(os.Environ(), fmt.Sprintf("%s=%s %d", holdEnv, addr, heldConns/holders))
		in, err := holder.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		out, err := holder.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		holder.Stderr = os.Stderr
		if err := holder.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { in.Close(); stopProcess(holder) })
		var o, r, f int
		if _, err := fmt.Fscanf(bufio.NewReader(out), "opened %d reset %d failed %d\n", &o, &r, &f); err != nil {
			t.Fatalf("holder %d: %v", h, err)
		}
		opened, reset, failed = opened+o, reset+r, failed+f
	}
	t.Logf("%d connection attempts: %d established and held, %d reset by the daemon, %d failed (timed out), in %v",
		opened+reset+failed, opened, reset, failed, time.Since(begin).Round(time.Millisecond))

	tokenClient := &http.Client{Timeout: time.Second, Transport: &http.Transport{
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).DialContext,
	}}
	ask := func(name string, c *http.Client, url string, auth bool) {
		t.Helper()
		req, _ := http.NewRequestWithContext(context.Background(), "GET", url, nil)
		if auth {
			req.Header.Set("Authorization", "Bearer 0123456789abcdef-token")
		}
		t0 := time.Now()
		resp, err := c.Do(req)
		took := time.Since(t0)
		if err != nil {
			t.Errorf("%s: not answered within 1s (after %v): %v", name, took.Round(time.Millisecond), err)
			return
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: status %d", name, resp.StatusCode)
		}
		t.Logf("%s answered in %v", name, took.Round(time.Microsecond))
	}
	ask("token holder over TCP", tokenClient, "http://"+addr+"/v1/revision", true)
	uc := unixClient(sock)
	uc.Timeout = time.Second
	ask("unix socket", uc, "http://egw/v1/revision", false)
}

// stopProcess ends a process the test started: SIGTERM, then SIGKILL after 10s.
func stopProcess(c *exec.Cmd) {
	c.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { c.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		c.Process.Kill()
		<-done
	}
}
