package controlplane

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/egw-project/egw/api"
)

// BenchmarkStoreWrites: writes per second through the Store on each backend, over a store
// of 20 gateways and 40 exposed services (80 VIPs); each write changes one ESite's labels
// (one object, the revision; IPAM unchanged). etcd is one in-process member (it shares the
// CPUs with the benchmark); "etcd-2replicas" writes from two Stores at once, each on its own
// client, as two cloud gateways would.
//
//	go test -run '^$' -bench StoreWrites -benchtime 2s ./controlplane/
func BenchmarkStoreWrites(b *testing.B) {
	world := bigWorld(b, 20, 2)
	run := func(b *testing.B, stores []*Store) {
		// In pieces: one etcd transaction holds at most 128 operations.
		for i := 0; i < len(world); i += 10 {
			if _, _, err := stores[0].Apply(world[i:min(i+10, len(world))]); err != nil {
				b.Fatal(err)
			}
		}
		b.ResetTimer()
		start := time.Now()
		var wg sync.WaitGroup
		per := (b.N + len(stores) - 1) / len(stores)
		for si, s := range stores {
			wg.Go(func() {
				for i := range per {
					site, _ := api.New(api.KindESite)
					site.GetMeta().Name = fmt.Sprintf("bench-%d", si)
					site.GetMeta().Labels = map[string]string{"n": fmt.Sprint(i)}
					if _, _, err := s.Apply([]api.Object{site}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		b.ReportMetric(float64(per*len(stores))/time.Since(start).Seconds(), "writes/s")
	}
	b.Run("bbolt", func(b *testing.B) {
		bb, err := OpenBolt(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		defer bb.Close()
		run(b, []*Store{NewStore(bb, testConfig())})
	})
	b.Run("etcd", func(b *testing.B) {
		run(b, []*Store{openEtcdStore(b, testEtcdURL(b), testPrefix(b), testConfig())})
	})
	b.Run("etcd-2replicas", func(b *testing.B) {
		p := testPrefix(b)
		run(b, []*Store{openEtcdStore(b, testEtcdURL(b), p, testConfig()), openEtcdStore(b, testEtcdURL(b), p, testConfig())})
	})
}
