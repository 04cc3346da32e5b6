package controlplane

import (
	"context"
	"fmt"
	"slices"
	"strings"
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

// BenchmarkReplicaPropagation: a policy change written through replica 1 wakes the
// snapshot watches of the 99 edge gateways (of 100) it concerns on replica 2 (both Servers on one etcd, Follow): the
// control-plane part of "a change reaches every gateway", whichever replica a gateway syncs
// from. Each op toggles the policy of one service exposed to all 99 edge sites between
// allowing the sites and allowing their servers, which changes every consuming gateway's
// snapshot (the service's own gateway enforces the same either way); p50-ms and max-ms are
// over every gateway of every op.
//
//	go test -run '^$' -bench ReplicaPropagation -benchtime 20x ./controlplane/
func BenchmarkReplicaPropagation(b *testing.B) {
	const n = 100
	url, p := testEtcdURL(b), testPrefix(b)
	cfg := testConfig()
	r1, err := NewServer(openEtcdStore(b, url, p, cfg), Options{})
	if err != nil {
		b.Fatal(err)
	}
	var objs, sites, servers []string
	for i := range n {
		objs = append(objs, fmt.Sprintf(`{"kind":"ESite","metadata":{"name":"s%d"}}`, i),
			fmt.Sprintf(`{"kind":"EGateway","metadata":{"name":"g%d"},"virtualPresenceIPcidr":"192.168.0.0/22","eSiteName":"s%d"}`, i, i),
			fmt.Sprintf(`{"kind":"EServer","metadata":{"name":"c%d"},"ip":"10.0.0.20","eSiteName":"s%d"}`, i, i))
		if i > 0 {
			sites = append(sites, fmt.Sprintf("%q", fmt.Sprintf("s%d", i)))
			servers = append(servers, fmt.Sprintf("%q", fmt.Sprintf("c%d", i)))
		}
	}
	policy := []string{
		fmt.Sprintf(`{"kind":"EPolicy","metadata":{"name":"p"},"allowedSites":[%s]}`, strings.Join(sites, ",")),
		fmt.Sprintf(`{"kind":"EPolicy","metadata":{"name":"p"},"allowedServers":[%s]}`, strings.Join(servers, ",")),
	}
	objs = append(objs, `{"kind":"EService","metadata":{"name":"svc"},"protocol":"TCP","port":80,"ip":"10.0.1.1","eSiteName":"s0"}`, policy[0])
	for i := 0; i < len(objs); i += 20 {
		if _, _, err := r1.Apply(decodeBench(b, strings.Join(objs[i:min(i+20, len(objs))], "\n"))); err != nil {
			b.Fatal(err)
		}
	}
	// Exposed to all 99 edge sites: 99 managed VirtualPresences, in pieces below the limit.
	if _, _, err := r1.Apply(decodeBench(b, fmt.Sprintf(`{"kind":"ServiceExpose","metadata":{"name":"svc"},"eServiceName":"svc","eSites":[%s],"ePolicys":["p"]}`, strings.Join(sites[:50], ",")))); err != nil {
		b.Fatal(err)
	}
	if _, _, err := r1.Apply(decodeBench(b, fmt.Sprintf(`{"kind":"ServiceExpose","metadata":{"name":"svc"},"eServiceName":"svc","eSites":[%s],"ePolicys":["p"]}`, strings.Join(sites, ",")))); err != nil {
		b.Fatal(err)
	}
	r2, err := NewServer(openEtcdStore(b, url, p, cfg), Options{})
	if err != nil {
		b.Fatal(err)
	}
	r2.Follow(b.Context())

	var lat []time.Duration
	b.ResetTimer()
	for i := range b.N {
		var wg sync.WaitGroup
		done := make([]time.Time, n-1)
		for g := 1; g < n; g++ {
			name := fmt.Sprintf("g%d", g)
			snap, ok := r2.Snapshot(name)
			if !ok {
				b.Fatalf("no snapshot of %s on replica 2", name)
			}
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(b.Context(), 10*time.Second)
				defer cancel()
				if _, err := r2.Watch(ctx, name, snap.Revision); err != nil {
					b.Errorf("%s not woken on replica 2: %v", name, err)
				}
				done[g-1] = time.Now()
			})
		}
		start := time.Now()
		if _, _, err := r1.Apply(decodeBench(b, policy[(i+1)%2])); err != nil {
			b.Fatal(err)
		}
		wg.Wait()
		for _, d := range done {
			lat = append(lat, d.Sub(start))
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
}

func decodeBench(b *testing.B, text string) []api.Object {
	objs, err := api.Decode("bench", []byte(text))
	if err != nil {
		b.Fatal(err)
	}
	return objs
}
