// Command etcdmember runs one etcd member (go.etcd.io/etcd/server/v3, the version EGW's
// etcd client is built with) on loopback, for trying several cloud gateways on one etcd:
// scripts/etcd-local.sh builds and starts it. It is not meant to run a production etcd;
// use etcd's own releases for that.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/egw-project/egw/internal/etcdmember"
)

func main() {
	name := flag.String("name", "m0", "member name")
	dir := flag.String("data-dir", "", "data directory (required)")
	client := flag.String("client-url", "http://127.0.0.1:2379", "client URL to listen on and advertise")
	peer := flag.String("peer-url", "http://127.0.0.1:2380", "peer URL to listen on and advertise")
	cluster := flag.String("initial-cluster", "", "name=peerURL,... of every member (default: this member alone)")
	logLevel := flag.String("log-level", "warn", "etcd's log level: debug, info, warn, error")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "etcdmember: --data-dir is required")
		os.Exit(2)
	}
	existing := false
	if _, err := os.Stat(*dir + "/member"); err == nil {
		existing = true // a restart on the same data
	}
	m, err := etcdmember.Start(etcdmember.Options{Name: *name, Dir: *dir, ClientURL: *client, PeerURL: *peer,
		InitialCluster: *cluster, Existing: existing, LogLevel: *logLevel, ReadyTimeout: 120e9})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("etcd member %s serving clients on %s (data %s)\n", *name, *client, *dir)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case s := <-sig:
		fmt.Printf("etcd member %s: %s, stopping\n", *name, s)
	case err := <-m.Err():
		fmt.Fprintln(os.Stderr, "etcdmember:", err)
		m.Close()
		os.Exit(1)
	}
	m.Close()
}
