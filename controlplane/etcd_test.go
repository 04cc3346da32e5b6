package controlplane

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/egw-project/egw/internal/etcdmember"
	"github.com/egw-project/egw/internal/testcert"
)

// One etcd member serves every test of the package that needs one (each under a prefix
// of its own); it starts on first use and stops in TestMain.
var sharedEtcd struct {
	once sync.Once
	m    *etcdmember.Member
	dir  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedEtcd.m != nil {
		sharedEtcd.m.Close()
		os.RemoveAll(sharedEtcd.dir)
	}
	os.Exit(code)
}

// testEtcdURL returns the client URL of the shared member.
func testEtcdURL(t testing.TB) string {
	t.Helper()
	sharedEtcd.once.Do(func() {
		sharedEtcd.dir, sharedEtcd.err = os.MkdirTemp("", "egw-etcd-test-")
		if sharedEtcd.err == nil {
			sharedEtcd.m, sharedEtcd.err = etcdmember.Start(etcdmember.Options{Dir: sharedEtcd.dir})
		}
	})
	if sharedEtcd.err != nil {
		t.Fatalf("embedded etcd: %v", sharedEtcd.err)
	}
	return sharedEtcd.m.ClientURL
}

var prefixSeq atomic.Int64

// testPrefix returns a key prefix no other test uses.
func testPrefix(t testing.TB) string {
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	return fmt.Sprintf("/egwtest/%s-%d/", name, prefixSeq.Add(1))
}

// openEtcd opens an EtcdBackend on url under prefix, closed when the test ends.
func openEtcd(t testing.TB, url, prefix string) *EtcdBackend {
	t.Helper()
	b, err := OpenEtcd(EtcdOptions{Endpoints: []string{url}, Prefix: prefix, ProbeInterval: 200 * time.Millisecond,
		RequestTimeout: 2 * time.Second, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// openEtcdStore opens a Store on an EtcdBackend (a replica of the store under prefix).
func openEtcdStore(t testing.TB, url, prefix string, cfg Config) *Store {
	t.Helper()
	return NewStore(openEtcd(t, url, prefix), cfg)
}

func TestEtcdWatchRelistsAfterCompaction(t *testing.T) {
	url := testEtcdURL(t)
	p := testPrefix(t)
	b := openEtcd(t, url, p)
	other := openEtcd(t, url, p)
	revs := make(chan int64, 100)
	b.Watch(t.Context(), func(rev int64) { revs <- rev })
	relists := b.relists.Load()

	// The watch misses writes (it is made to resume from an old revision, as after a long
	// disconnection) that were compacted away: it must relist.
	b.mu.RLock()
	old := b.mirrorRev
	b.mu.RUnlock()
	for i := range 5 {
		if err := other.Update(func(tx Tx) error { return tx.Put(bucketObjects, fmt.Sprintf("ESite/s%d", i), []byte("{}")) }); err != nil {
			t.Fatal(err)
		}
	}
	if err := other.Update(func(tx Tx) error { return tx.Delete(bucketObjects, "ESite/s0") }); err != nil {
		t.Fatal(err)
	}
	resp, err := other.Client().Get(t.Context(), "compact-probe")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Client().Compact(t.Context(), resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool {
		b.mu.RLock()
		defer b.mu.RUnlock()
		return len(b.mirror) >= 5 // the watch delivered them meanwhile
	})
	b.mu.Lock()
	b.mirrorRev = old
	b.mirror = map[string][]byte{}
	b.mu.Unlock()
	b.kick <- struct{}{}
	waitFor(t, 5*time.Second, func() bool { return b.relists.Load() > relists })
	b.mu.RLock()
	var keys []string
	for k := range b.mirror {
		keys = append(keys, k)
	}
	b.mu.RUnlock()
	if got := strings.Join(sortedStrings(keys), " "); !strings.Contains(got, "objects/ESite/s1 objects/ESite/s2 objects/ESite/s3 objects/ESite/s4") || strings.Contains(got, "ESite/s0") {
		t.Fatalf("mirror after relist: %s", got)
	}
	select {
	case <-revs:
	case <-time.After(5 * time.Second):
		t.Fatal("no watch notification after the relist")
	}
}

func sortedStrings(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// waitFor polls cond every 10 ms until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestEtcdTooManyOpsIsRefusedWhole(t *testing.T) {
	url := testEtcdURL(t)
	b := openEtcd(t, url, testPrefix(t))
	err := b.Update(func(tx Tx) error {
		for i := range 200 {
			if err := tx.Put(bucketObjects, fmt.Sprintf("ESite/s%03d", i), []byte("{}")); err != nil {
				return err
			}
		}
		return nil
	})
	wantErr(t, err, CodeTooLarge, "", "", "--max-txn-ops")
	n := 0
	if err := b.View(func(tx Tx) error {
		return tx.ForEach(bucketObjects, func(string, []byte) error { n++; return nil })
	}); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d keys written by a refused transaction", n)
	}
}

func TestEtcdOpenFailsClearly(t *testing.T) {
	urls, err := etcdmember.FreeURLs(1)
	if err != nil {
		t.Fatal(err)
	}
	_, err = OpenEtcd(EtcdOptions{Endpoints: urls, DialTimeout: 300 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "no answer within 300ms") || !strings.Contains(err.Error(), urls[0]) {
		t.Fatalf("err = %v", err)
	}
}

// TestEtcdUnavailable cuts the way to etcd: writes fail with 503 at once, reads are
// served from the watched state with the stale header, and once etcd is reachable again
// both work without a restart of the cloud gateway.
func TestEtcdUnavailable(t *testing.T) {
	px := newTCPProxy(t, strings.TrimPrefix(testEtcdURL(t), "http://"))
	cfg := testConfig()
	s1 := openEtcdStore(t, "http://"+px.addr, testPrefix(t), cfg)
	srv, err := NewServer(s1, Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv.Follow(t.Context())
	h := srv.Handler()
	mustApply(t, srv, twoSites)

	px.cut()
	waitFor(t, 10*time.Second, func() bool { return !srv.StoreHealth().Up })

	rec := do(t, h, "GET", "/v1/egateways", nil)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"gw-a"`) || rec.Header().Get(StaleHeader) == "" {
		t.Fatalf("read while etcd is down: %d %q header %q", rec.Code, rec.Body.String(), rec.Header().Get(StaleHeader))
	}
	start := time.Now()
	rec = do(t, h, "POST", "/v1/apply", `{"kind":"ESite","metadata":{"name":"site-c"}}`)
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), "writes are refused until etcd answers with a quorum again") {
		t.Fatalf("write while etcd is down: %d %q", rec.Code, rec.Body.String())
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("write while etcd is known down took %s", d)
	}

	px.restore()
	waitFor(t, 30*time.Second, func() bool { return srv.StoreHealth().Up })
	rec = do(t, h, "POST", "/v1/apply", `{"kind":"ESite","metadata":{"name":"site-c"}}`)
	if rec.Code != 200 || rec.Header().Get(StaleHeader) != "" {
		t.Fatalf("write after etcd came back: %d %q", rec.Code, rec.Body.String())
	}
}

// tcpProxy forwards a loopback port to target until cut; restore listens again on the
// same port.
type tcpProxy struct {
	t      testing.TB
	addr   string
	target string
	mu     sync.Mutex
	l      net.Listener
	conns  []net.Conn
}

func newTCPProxy(t testing.TB, target string) *tcpProxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{t: t, addr: l.Addr().String(), target: target}
	p.serve(l)
	t.Cleanup(p.cut)
	return p
}

func (p *tcpProxy) serve(l net.Listener) {
	p.mu.Lock()
	p.l = l
	p.mu.Unlock()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { io.Copy(u, c); u.Close() }()
			go func() { io.Copy(c, u); c.Close() }()
		}
	}()
}

func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.l != nil {
		p.l.Close()
		p.l = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *tcpProxy) restore() {
	l, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatal(err)
	}
	p.serve(l)
}

// TestEtcdQuorumLoss runs three members and stops two: writes answer 503, reads come from
// the last state; with the two back, writes go through again.
func TestEtcdQuorumLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("three etcd members")
	}
	ms, err := etcdmember.StartCluster(t.TempDir(), 3)
	if err != nil {
		t.Fatal(err)
	}
	var initial []string
	for _, m := range ms {
		initial = append(initial, m.Name+"="+m.PeerURL)
	}
	defer func() {
		for _, m := range ms {
			m.Close()
		}
	}()
	b, err := OpenEtcd(EtcdOptions{Endpoints: []string{ms[0].ClientURL}, Prefix: testPrefix(t),
		ProbeInterval: 200 * time.Millisecond, RequestTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	s := NewStore(b, testConfig())
	srv, err := NewServer(s, Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv.Follow(t.Context())
	h := srv.Handler()
	mustApply(t, srv, twoSites)

	ms[1].Close()
	if rec := do(t, h, "POST", "/v1/apply", `{"kind":"ESite","metadata":{"name":"one-down"}}`); rec.Code != 200 {
		t.Fatalf("write with one member of three down: %d %q", rec.Code, rec.Body.String())
	}
	ms[2].Close()
	waitFor(t, 15*time.Second, func() bool { return !srv.StoreHealth().Up })
	if rec := do(t, h, "POST", "/v1/apply", `{"kind":"ESite","metadata":{"name":"two-down"}}`); rec.Code != 503 {
		t.Fatalf("write without quorum: %d %q", rec.Code, rec.Body.String())
	}
	rec := do(t, h, "GET", "/v1/esites", nil)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "one-down") || rec.Header().Get(StaleHeader) == "" {
		t.Fatalf("read without quorum: %d %q %q", rec.Code, rec.Body.String(), rec.Header().Get(StaleHeader))
	}
	for i := 1; i <= 2; i++ {
		if ms[i], err = ms[i].Restart(strings.Join(initial, ",")); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 20*time.Second, func() bool { return srv.StoreHealth().Up })
	if rec := do(t, h, "POST", "/v1/apply", `{"kind":"ESite","metadata":{"name":"back"}}`); rec.Code != 200 {
		t.Fatalf("write after quorum came back: %d %q", rec.Code, rec.Body.String())
	}
}

// TestEtcdOverTLS: an https:// member, verified with store.etcd.tls.ca; a client
// certificate is loaded from store.etcd.tls.cert/key; a wrong CA is refused at start.
func TestEtcdOverTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := testcert.Write(t, dir)
	urls, err := etcdmember.FreeURLs(2)
	if err != nil {
		t.Fatal(err)
	}
	clientURL := strings.Replace(urls[0], "http://", "https://", 1)
	m, err := etcdmember.Start(etcdmember.Options{Dir: filepath.Join(dir, "etcd"), ClientURL: clientURL, PeerURL: urls[1],
		TLSCert: certFile, TLSKey: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	sc := StoreConfig{Backend: BackendEtcd}
	sc.Etcd.Endpoints = []string{clientURL}
	sc.Etcd.TLS.CA, sc.Etcd.TLS.Cert, sc.Etcd.TLS.Key = certFile, certFile, keyFile
	sc = sc.WithDefaults()
	if err := sc.Validate(); err != nil {
		t.Fatal(err)
	}
	b, err := OpenBackend(sc, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	s := NewStore(b, testConfig())
	mustApply(t, s, twoSites)
	if rev, err := s.Revision(); err != nil || rev != 1 {
		t.Fatalf("over TLS: revision %d, %v", rev, err)
	}
	s.Close()

	otherCA, _ := testcert.Write(t, t.TempDir())
	sc.Etcd.TLS.CA = otherCA
	sc.Etcd.DialTimeout = time.Second
	if _, err := OpenBackend(sc, "", nil); err == nil || !strings.Contains(err.Error(), "no answer within 1s") {
		t.Fatalf("a member whose certificate the CA did not sign: %v", err)
	}
	sc.Etcd.TLS.CA = filepath.Join(dir, "missing.pem")
	if _, err := OpenBackend(sc, "", nil); err == nil || !strings.Contains(err.Error(), "store.etcd.tls.ca") {
		t.Fatalf("a missing CA file: %v", err)
	}
}

func TestEtcdBadBucketIsNotAnOutage(t *testing.T) {
	b := openEtcd(t, testEtcdURL(t), testPrefix(t))
	err := b.View(func(tx Tx) error {
		tx.Get(".stamp", "x")
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "bad bucket name") {
		t.Fatalf("err = %v", err)
	}
	if !b.Health().Up {
		t.Fatal("a bad bucket name marked etcd down")
	}
}
