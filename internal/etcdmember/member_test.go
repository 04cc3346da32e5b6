package etcdmember

import (
	"context"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// A member serves, keeps its data across a restart on the same directory, and says what is
// wrong with bad options.
func TestMemberRestartKeepsData(t *testing.T) {
	m, err := Start(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { m.Close() }()
	put := func(k, v string) {
		t.Helper()
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{m.ClientURL}, DialTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if v != "" {
			if _, err := c.Put(ctx, k, v); err != nil {
				t.Fatal(err)
			}
			return
		}
		resp, err := c.Get(ctx, k)
		if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "kept" {
			t.Fatalf("after restart: %v %v", resp, err)
		}
	}
	put("k", "kept")
	m.Close()
	if m, err = m.Restart(""); err != nil {
		t.Fatal(err)
	}
	put("k", "")

	if _, err := Start(Options{}); err == nil || !strings.Contains(err.Error(), "no data directory") {
		t.Fatalf("no dir: %v", err)
	}
	if _, err := Start(Options{Dir: t.TempDir(), ClientURL: m.ClientURL, PeerURL: "http://127.0.0.1:1"}); err == nil {
		t.Fatal("a second member on a client port in use started")
	}
}
