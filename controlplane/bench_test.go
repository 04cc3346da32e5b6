package controlplane

import (
	"fmt"
	"strings"
	"testing"

	"github.com/egw-project/egw/api"
)

// bigWorld: n edge sites with a gateway, a server and m services each; every service is
// exposed to the next 5 sites under one policy that allows their servers.
func bigWorld(tb testing.TB, n, m int) []api.Object {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `{"kind":"ESite","metadata":{"name":"s%d"}}
{"kind":"EGateway","metadata":{"name":"g%d"},"virtualPresenceIPcidr":"192.168.0.0/22","eSiteName":"s%d"}
{"kind":"EServer","metadata":{"name":"c%d"},"ip":"10.0.0.20","eSiteName":"s%d"}
`, i, i, i, i, i)
		for j := range m {
			var sites, servers []string
			for k := 1; k <= 5; k++ {
				sites = append(sites, fmt.Sprintf("%q", fmt.Sprintf("s%d", (i+k)%n)))
				servers = append(servers, fmt.Sprintf("%q", fmt.Sprintf("c%d", (i+k)%n)))
			}
			fmt.Fprintf(&b, `{"kind":"EService","metadata":{"name":"svc%d-%d"},"protocol":"TCP","port":80,"ip":"10.0.1.%d","eSiteName":"s%d"}
{"kind":"EPolicy","metadata":{"name":"p%d-%d"},"allowedServers":[%s]}
{"kind":"ServiceExpose","metadata":{"name":"svc%d-%d"},"eServiceName":"svc%d-%d","eSites":[%s],"ePolicys":["p%d-%d"]}
`, i, j, j+1, i, i, j, strings.Join(servers, ","), i, j, i, j, strings.Join(sites, ","), i, j)
		}
	}
	objs, err := api.Decode("bench", []byte(b.String()))
	if err != nil {
		tb.Fatal(err)
	}
	return objs
}

// BenchmarkCompile: 100 gateways, 500 services, 2500 VIPs.
func BenchmarkCompile(b *testing.B) {
	s := openStore(b, b.TempDir(), testConfig())
	if _, _, err := s.Apply(bigWorld(b, 100, 5)); err != nil {
		b.Fatal(err)
	}
	st, _ := s.Load()
	objs := st.List("")
	b.ResetTimer()
	for range b.N {
		Compile(objs, st.IPAM, testConfig())
	}
}

// BenchmarkPolicyChange: one policy write (fsynced transaction, validation, IPAM
// reconcile) plus the recompile of every snapshot, on the same world.
func BenchmarkPolicyChange(b *testing.B) {
	srv := newServer(b, b.TempDir(), testConfig(), Options{})
	if _, _, err := srv.Apply(bigWorld(b, 100, 5)); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := range b.N {
		p := decode2(b, fmt.Sprintf(`{"kind":"EPolicy","metadata":{"name":"p0-0"},"allowedServers":["c%d"]}`, i%100))
		if _, _, err := srv.Apply(p); err != nil {
			b.Fatal(err)
		}
	}
}

func decode2(tb testing.TB, text string) []api.Object {
	objs, err := api.Decode("bench", []byte(text))
	if err != nil {
		tb.Fatal(err)
	}
	return objs
}
