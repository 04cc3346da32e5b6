package main

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/egw-project/egw/api"
	"github.com/egw-project/egw/controlplane"
	"github.com/egw-project/egw/internal/etcdmember"
)

// storeWrites measures committed writes per second for d on each store: bbolt (the file,
// fsync'd), etcd (one member embedded in this process, on the same disk) and two replicas
// on that etcd writing at once. Each write changes one EServer of a small world (20
// gateways), so it is one durable transaction plus a recompile of the snapshots it touches.
func storeWrites(ctx context.Context, dir string, d time.Duration) ([]Record, error) {
	world := latencyWorld(20)
	one := func(stores []*controlplane.Store) (float64, error) {
		srv, err := controlplane.NewServer(stores[0], controlplane.Options{})
		if err != nil {
			return 0, err
		}
		if err := srv.EnsureHub(hubVPCIDR, "", ""); err != nil {
			return 0, err
		}
		if err := applyInPieces(srv, world); err != nil {
			return 0, err
		}
		var wg sync.WaitGroup
		counts := make([]int, len(stores))
		errs := make([]error, len(stores))
		deadline := time.Now().Add(d)
		start := time.Now()
		for i, st := range stores {
			wg.Go(func() {
				for j := 0; time.Now().Before(deadline) && ctx.Err() == nil; j++ {
					o := server(fmt.Sprintf("w%d", i), siteName(j%20), newClientIP)
					o.IP = fmt.Sprintf("10.0.2.%d", 1+j%200)
					if _, _, err := st.Apply([]api.Object{o}); err != nil {
						errs[i] = err
						return
					}
					counts[i]++
				}
			})
		}
		wg.Wait()
		total := 0
		for i := range stores {
			if errs[i] != nil {
				return 0, errs[i]
			}
			total += counts[i]
		}
		return float64(total) / time.Since(start).Seconds(), nil
	}
	var out []Record
	bolt, err := controlplane.Open(filepath.Join(dir, "writes-bbolt"), cpConfig())
	if err != nil {
		return nil, err
	}
	v, err := one([]*controlplane.Store{bolt})
	bolt.Close()
	if err != nil {
		return nil, fmt.Errorf("bbolt: %w", err)
	}
	out = append(out, Record{Name: "store.bbolt.writes_per_s", Value: v, Unit: "writes/s", Note: "one-object applies, fsync'd, one process"})

	m, err := etcdmember.Start(etcdmember.Options{Dir: filepath.Join(dir, "writes-etcd")})
	if err != nil {
		return nil, fmt.Errorf("etcd member: %w", err)
	}
	defer m.Close()
	for _, n := range []int{1, 2} {
		prefix := fmt.Sprintf("/egw-writes-%d/", n)
		var stores []*controlplane.Store
		for range n {
			b, err := controlplane.OpenEtcd(controlplane.EtcdOptions{Endpoints: []string{m.ClientURL}, Prefix: prefix})
			if err != nil {
				return nil, err
			}
			st := controlplane.NewStore(b, cpConfig())
			defer st.Close()
			stores = append(stores, st)
		}
		v, err := one(stores)
		if err != nil {
			return nil, fmt.Errorf("etcd, %d replicas: %w", n, err)
		}
		name, note := "store.etcd.writes_per_s", "one-object applies through one replica; etcd is one member in this process"
		if n == 2 {
			name, note = "store.etcd2.writes_per_s", "one-object applies through two replicas at once, together"
		}
		out = append(out, Record{Name: name, Value: v, Unit: "writes/s", Note: note})
	}
	return out, nil
}
