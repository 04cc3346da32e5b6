//go:build netns && linux

package netnstests

// Gateway lifecycle (issue 13) against the real binaries: an edge joined with only a join
// token, join-token misuse, a policy revoked under an open TCP stream (both ends reset), a
// key rotated under a transfer, and a gateway revoked under a transfer. One deployment:
// cloud + site-b registered with a key (the key-based path) + site-a joined with a token.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/egw-project/egw/internal/jointoken"
	"github.com/egw-project/egw/netns-tests/harness"
)

const policyOnlyA21 = `
kind: EPolicy
apiVersion: v1
metadata: {name: allow-a20}
allowedServers: [client-a21]
`

func TestLifecycle(t *testing.T) {
	harness.SkipUnlessRoot(t)
	bins, err := harness.FindEGW("")
	if err != nil {
		t.Skip(err)
	}
	ctx := context.Background()
	lab := harness.NewT(t)
	topo, err := harness.Build(lab, harness.DefaultSpec())
	if err != nil {
		t.Fatal(err)
	}
	d := &deployment{lab: lab, topo: topo, a20: topo.Host("a20"), a21: topo.Host("a21"), b10: topo.Host("b10"), c10: topo.Host("c10")}
	startResponder(t, lab, d.b10, "b10")
	d.egw, err = harness.StartCloud(ctx, topo, harness.EGWOptions{Bin: bins, RejectDenied: true, PolicyAware: true})
	if err != nil {
		t.Fatal(err)
	}
	egw := d.egw
	nb, err := egw.RegisterEdge(ctx, topo.Site("site-b")) // the key-based path
	if err != nil {
		t.Fatal(err)
	}
	if err := egw.StartNode(ctx, nb); err != nil {
		t.Fatal(err)
	}
	siteA := topo.Site("site-a")
	var secrets []string // every token made: none may appear in a log
	logsOf := func(p *harness.Proc) string {
		if p == nil {
			return ""
		}
		o, e := p.Logs()
		return o + e
	}
	gwKey := func() string {
		out, err := egw.Ctl(ctx, "get", "egateway", siteA.Gateway, "-o", "json")
		if err != nil {
			t.Fatal(err)
		}
		i := strings.Index(out, `"publicKey"`)
		if i < 0 {
			return ""
		}
		rest := out[i+len(`"publicKey"`):]
		rest = rest[strings.Index(rest, `"`)+1:]
		return rest[:strings.Index(rest, `"`)]
	}

	token, err := egw.AddForJoin(ctx, siteA)
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, token)
	if !strings.HasPrefix(token, jointoken.Prefix) || strings.Contains(token, "\n") {
		t.Fatalf("gateway add printed %q, want one join token", token)
	}

	t.Run("JoinMisuse", func(t *testing.T) {
		refused := func(what, tok, want string) {
			t.Helper()
			_, out, err := egw.JoinNode(ctx, siteA, tok)
			if err == nil {
				t.Fatalf("%s: joined", what)
			}
			if !strings.Contains(out, want) {
				t.Errorf("%s: %q does not say %q", what, out, want)
			}
			// out is the harness's error: the command line (with the token), then what the
			// edge printed.
			printed := out
			if i := strings.Index(out, "exit status "); i >= 0 {
				printed = out[i:]
			}
			for _, s := range append(secrets, tok) {
				if strings.Contains(printed, s) {
					t.Errorf("%s: the edge printed the token", what)
				}
			}
			if k := gwKey(); k != "" {
				t.Fatalf("%s: a key was registered: %s", what, k)
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(egw.APISocket), "egw-"+siteA.Gateway, "state", "private.key")); err == nil {
				t.Errorf("%s: a key file was left behind", what)
			}
		}
		// One byte changed, at several places (the text, the secret, the ID).
		for _, i := range []int{len(jointoken.Prefix) + 3, len(token) / 2, len(token) - 2} {
			b := []byte(token)
			if b[i] == 'A' {
				b[i] = 'B'
			} else {
				b[i] = 'A'
			}
			refused(fmt.Sprintf("byte %d changed", i), string(b), "")
		}
		tok, err := jointoken.Parse(token)
		if err != nil {
			t.Fatal(err)
		}
		bad := tok
		bad.Secret = strings.Repeat("x", 43)
		refused("another secret", bad.String(), "invalid join token")
		bad = tok
		bad.CertHash[0] ^= 1
		refused("wrong cloud identity", bad.String(), "identity")
		// Expired.
		expired, err := egw.Ctl(ctx, "gateway", "token", siteA.Gateway, "--ttl", "1s")
		if err != nil {
			t.Fatal(err)
		}
		expired = strings.TrimSpace(expired)
		secrets = append(secrets, expired)
		time.Sleep(1500 * time.Millisecond)
		refused("expired", expired, "expired")
		// Revoked.
		revoked, err := egw.Ctl(ctx, "gateway", "token", siteA.Gateway)
		if err != nil {
			t.Fatal(err)
		}
		revoked = strings.TrimSpace(revoked)
		secrets = append(secrets, revoked)
		rt, _ := jointoken.Parse(revoked)
		if _, err := egw.Ctl(ctx, "token", "revoke", rt.ID); err != nil {
			t.Fatal(err)
		}
		refused("revoked", revoked, "revoked")
		list, err := egw.Ctl(ctx, "token", "list")
		if err != nil || !strings.Contains(list, rt.ID) || !strings.Contains(list, "revoked") || !strings.Contains(list, "expired") {
			t.Errorf("token list: %q %v", list, err)
		}
		// The cloud logged the refusals, never a token.
		cl := logsOf(egw.Cloud.Proc)
		if !strings.Contains(cl, "join refused") {
			t.Error("the cloud did not log the refusals")
		}
		for _, s := range append(secrets, tok.Secret, rt.Secret) {
			if strings.Contains(cl, s) || strings.Contains(list, s) {
				t.Fatal("a token (or its secret) is in the cloud's log or the token list")
			}
		}
	})

	var na *harness.Node
	t.Run("Join", func(t *testing.T) {
		var out string
		na, out, err = egw.JoinNode(ctx, siteA, token)
		if err != nil {
			t.Fatalf("join: %v", err)
		}
		t.Logf("join: %s", strings.TrimSpace(out))
		if st, err := os.Stat(na.Config); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("config %s: %v %v; want mode 0600", na.Config, st.Mode(), err)
		}
		if gwKey() != na.PublicKey {
			t.Fatalf("registered key %q; the edge made %q", gwKey(), na.PublicKey)
		}
		if err := egw.StartNode(ctx, na); err != nil {
			t.Fatal(err)
		}
		for _, n := range []*harness.Node{na, nb} {
			if err := egw.WaitHandshake(ctx, n); err != nil {
				t.Fatal(err)
			}
		}
		if err := egw.Apply(ctx, "objects", objects); err != nil {
			t.Fatal(err)
		}
		vip := waitDNS(t, d, d.a20, siteA.VPCIDR, "url1.test.com")
		who := waitHTTP(t, d, d.a20, vip, 30*time.Second)
		assertPresence(t, who.Remote, topo.Site("site-b").VPCIDR)
		download(t, d, d.a20, vip, 4<<20)
		// The token works once.
		_, out, err = egw.JoinNode(ctx, siteA, token)
		if err == nil || !strings.Contains(out, "already used") {
			t.Errorf("second use: %v %q", err, out)
		}
		if gwKey() != na.PublicKey {
			t.Fatal("a replayed token changed the key")
		}
		for _, s := range secrets {
			if strings.Contains(logsOf(na.Proc)+logsOf(egw.Cloud.Proc), s) {
				t.Fatal("a token is in a daemon's log")
			}
		}
	})
	if na == nil || na.Proc == nil {
		t.Fatal("no joined edge; the other scenarios need it")
	}

	t.Run("PolicyRevokeResetsBothEnds", func(t *testing.T) {
		echoVIP := waitDNS(t, d, d.a20, siteA.VPCIDR, "echo.test.com")
		addr := net.JoinHostPort(echoVIP.String(), "7007")
		c, err := dialFrom(d, d.a20, addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// A stream both ways: the client writes, the echo writes back.
		var streamErr atomic.Value
		var errAt atomic.Int64
		go func() {
			buf := make([]byte, 16<<10)
			for {
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := c.Write(buf); err != nil {
					streamErr.Store(err)
					errAt.Store(time.Now().UnixNano())
					return
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					streamErr.Store(err)
					errAt.Store(time.Now().UnixNano())
					return
				}
			}
		}()
		established := func() int {
			out, _ := lab.Run(ctx, d.b10.NS, "ss", "-Htn", "state", "established", "( sport = :7007 )")
			return len(strings.Fields(out))
		}
		time.Sleep(300 * time.Millisecond)
		if streamErr.Load() != nil || established() == 0 {
			t.Fatalf("the stream does not flow: %v", streamErr.Load())
		}
		applied := time.Now() // egwctl apply included
		if err := egw.Apply(ctx, "only-a21", policyOnlyA21); err != nil {
			t.Fatal(err)
		}
		err = harness.Poll(ctx, 5*time.Second, 10*time.Millisecond, "client reset", func() error {
			if streamErr.Load() == nil {
				return errors.New("stream still running")
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		clientAfter := time.Duration(errAt.Load() - applied.UnixNano())
		cerr := streamErr.Load().(error)
		if !errors.Is(cerr, syscall.ECONNRESET) {
			t.Errorf("client end: %v; want connection reset", cerr)
		}
		if err := harness.Poll(ctx, 5*time.Second, 10*time.Millisecond, "server end closed", func() error {
			if n := established(); n > 0 {
				return fmt.Errorf("%d established", n)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		serverAfter := time.Since(applied)
		t.Logf("policy revoked: client reset after %v, server connection gone after ≤ %v", clientAfter, serverAfter)
		if clientAfter > time.Second || serverAfter > time.Second+100*time.Millisecond {
			t.Errorf("resets took %v (client), %v (server); want within 1 s", clientAfter, serverAfter)
		}
		// Re-grant: new connections pass.
		if err := egw.Apply(ctx, "allow-one", policyOne); err != nil {
			t.Fatal(err)
		}
		if err := harness.Poll(ctx, 10*time.Second, 100*time.Millisecond, "echo after the re-grant", func() error {
			c, err := dialFrom(d, d.a20, addr, 2*time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			return echoOnce(c, time.Second)
		}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("RotateDuringTransfer", func(t *testing.T) {
		vip := waitDNS(t, d, d.a20, siteA.VPCIDR, "url1.test.com")
		oldKey := na.PublicKey
		const size = 300 << 20
		done := make(chan error, 1)
		var finished, longestPause atomic.Int64
		go func() {
			url := fmt.Sprintf("http://%s/bytes?n=%d", net.JoinHostPort(vip.String(), "8080"), size)
			resp, err := lab.HTTPClient(d.a20.NS, 120*time.Second).Get(url)
			if err != nil {
				done <- err
				return
			}
			defer resp.Body.Close()
			var n int64
			buf := make([]byte, 64<<10)
			last := time.Now()
			for {
				m, rerr := resp.Body.Read(buf)
				if m > 0 {
					n += int64(m)
					if gap := time.Since(last); int64(gap) > longestPause.Load() {
						longestPause.Store(int64(gap))
					}
					last = time.Now()
				}
				if rerr != nil {
					if rerr != io.EOF {
						err = rerr
					}
					break
				}
			}
			finished.Store(time.Now().UnixNano())
			if err == nil && n != size {
				err = fmt.Errorf("%d of %d bytes", n, size)
			}
			done <- err
		}()
		time.Sleep(300 * time.Millisecond)
		if _, err := egw.Ctl(ctx, "gateway", "rotate-key", siteA.Gateway); err != nil {
			t.Fatal(err)
		}
		requested := time.Now()
		var newKey string
		if err := harness.Poll(ctx, 10*time.Second, 20*time.Millisecond, "the edge's new key", func() error {
			k, err := harness.PublicKeyOf(filepath.Join(na.StateDir, "private.key"))
			if err != nil || k == oldKey {
				return fmt.Errorf("key file unchanged (%v)", err)
			}
			newKey = k
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		// Done when the hub has the new peer and the edge a handshake with it.
		if err := harness.Poll(ctx, 10*time.Second, 20*time.Millisecond, "the hub's peer swapped and a handshake on the new key", func() error {
			peers, err := lab.Run(ctx, egw.Cloud.Site.GWNS, "wg", "show", egw.Cloud.Tun, "latest-handshakes")
			if err != nil {
				return err
			}
			for _, l := range strings.Split(peers, "\n") {
				if f := strings.Fields(l); len(f) == 2 && f[0] == newKey && f[1] != "0" {
					return nil
				}
			}
			return fmt.Errorf("hub handshakes %q", peers)
		}); err != nil {
			t.Fatal(err)
		}
		rotated := time.Now()
		if err := <-done; err != nil {
			t.Fatalf("transfer across the rotation: %v", err)
		}
		pause := time.Duration(longestPause.Load())
		t.Logf("rotation done %v after the request; transfer of %d MB ended %v after the rotation; its longest pause %v",
			rotated.Sub(requested), size>>20, time.Duration(finished.Load()-rotated.UnixNano()), pause)
		if pause > 1500*time.Millisecond {
			t.Errorf("the transfer stalled %v across the rotation", pause)
		}
		if finished.Load() < rotated.UnixNano() {
			t.Error("the transfer ended before the rotation: it did not cross it")
		}
		if gwKey() != newKey {
			t.Errorf("registered key %s; the edge has %s", gwKey(), newKey)
		}
		peers, _ := lab.Run(ctx, egw.Cloud.Site.GWNS, "wg", "show", egw.Cloud.Tun, "peers")
		if !strings.Contains(peers, newKey) || strings.Contains(peers, oldKey) {
			t.Errorf("hub peers %q: want the new key %s and not the old %s", peers, newKey, oldKey)
		}
		na.PublicKey = newKey
		// The old key is revoked.
		if _, err := egw.Ctl(ctx, "gateway", "add", "x-old", "--site", "site-x", "--vp-cidr", "192.168.77.0/24", "--public-key", oldKey); err == nil || !strings.Contains(err.Error(), "revoked") {
			t.Errorf("the rotated-out key was admitted: %v", err)
		}
		download(t, d, d.a20, vip, 4<<20)
	})

	t.Run("RevokeDuringTransfer", func(t *testing.T) {
		vip := waitDNS(t, d, d.a20, siteA.VPCIDR, "url1.test.com")
		cloudVIP := waitDNS(t, d, d.c10, topo.Site("cloud").VPCIDR, "url1.test.com")
		var got atomic.Int64
		var lastProgress atomic.Int64
		ctxT, cancel := context.WithCancel(ctx)
		defer cancel()
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			url := fmt.Sprintf("http://%s/bytes?n=%d", net.JoinHostPort(vip.String(), "8080"), int64(4<<30))
			req, _ := http.NewRequestWithContext(ctxT, http.MethodGet, url, nil)
			resp, err := lab.HTTPClient(d.a20.NS, 60*time.Second).Do(req)
			if err != nil {
				return
			}
			defer resp.Body.Close()
			buf := make([]byte, 64<<10)
			for {
				n, err := resp.Body.Read(buf)
				if n > 0 {
					got.Add(int64(n))
					lastProgress.Store(time.Now().UnixNano())
				}
				if err != nil {
					return
				}
			}
		}()
		time.Sleep(500 * time.Millisecond)
		if got.Load() == 0 {
			t.Fatal("the transfer does not flow")
		}
		revoked := time.Now() // egwctl included
		if _, err := egw.Ctl(ctx, "gateway", "revoke", siteA.Gateway); err != nil {
			t.Fatal(err)
		}
		if err := harness.Poll(ctx, 5*time.Second, 10*time.Millisecond, "hub drops the key", func() error {
			peers, err := lab.Run(ctx, egw.Cloud.Site.GWNS, "wg", "show", egw.Cloud.Tun, "peers")
			if err != nil || strings.Contains(peers, na.PublicKey) {
				return fmt.Errorf("still a peer (%v)", err)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		hubAfter := time.Since(revoked)
		time.Sleep(2 * time.Second)
		stopped := time.Duration(lastProgress.Load() - revoked.UnixNano())
		t.Logf("revoked: hub dropped the key after %v; the transfer's last bytes %v after the revoke (%d MB moved)", hubAfter, stopped, got.Load()>>20)
		if hubAfter > time.Second || stopped > time.Second {
			t.Errorf("revocation took %v at the hub, %v for the transfer; want within 1 s", hubAfter, stopped)
		}
		cancel()
		wg.Wait()
		// The revoked edge said so once and stopped (status 78: not restarted).
		select {
		case <-na.Proc.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("the revoked edge keeps running")
		}
		_, werr := na.Proc.Exited()
		var ee interface{ ExitCode() int }
		if !errors.As(werr, &ee) || ee.ExitCode() != 78 {
			t.Errorf("revoked edge exited with %v; want status 78", werr)
		}
		_, stderr := na.Proc.Logs()
		lines := 0
		for _, l := range strings.Split(stderr, "\n") {
			if strings.Contains(strings.ToLower(l), "revoked") {
				lines++
			}
		}
		if n := lines; n != 1 {
			t.Errorf("the revoked edge logged %d lines about it; want 1:\n%s", n, stderr)
		}
		// Started again with the same key, it stops at once.
		if err := egw.StartNode(ctx, na); err == nil || !strings.Contains(err.Error(), "revoked") {
			t.Errorf("restart of the revoked edge: %v", err)
		}
		// Someone who ignores that (the record removed, the stolen key used) gets no
		// handshake: the hub answers no initiation from a key it does not have.
		if err := os.Remove(filepath.Join(na.StateDir, "revoked")); err != nil {
			t.Fatal(err)
		}
		if err := egw.StartNode(ctx, na); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Second) // wireguard-go initiates at once (persistent keepalive)
		hs, err := lab.Run(ctx, siteA.GWNS, "wg", "show", na.Tun, "latest-handshakes")
		// Every peer (the hub and the edge's cached path peers) shows no handshake.
		if err != nil || !strings.Contains(hs, egw.Cloud.PublicKey) {
			t.Errorf("wg show of the revoked edge: %q %v", hs, err)
		}
		for _, l := range strings.Split(strings.TrimSpace(hs), "\n") {
			if f := strings.Fields(l); len(f) != 2 || f[1] != "0" {
				t.Errorf("the revoked key got a handshake: %q", l)
			}
		}
		if err := egw.StopNode(na); err != nil {
			t.Logf("stopping the revoked edge: %v", err)
		}
		// The key is refused if it comes back; describe shows when it was revoked.
		_, err = egw.Ctl(ctx, "gateway", "add", "x-back", "--site", "site-y", "--vp-cidr", "192.168.78.0/24", "--public-key", na.PublicKey)
		if err == nil || !strings.Contains(err.Error(), "revoked") {
			t.Errorf("the revoked key was admitted: %v", err)
		}
		if out, err := egw.Ctl(ctx, "describe", "egateway", siteA.Gateway); err != nil || !strings.Contains(out, "egw.io/revoked-at") {
			t.Errorf("describe: %v\n%s", err, out)
		}
		// Other edges are unaffected: the cloud site still reaches site B.
		waitHTTP(t, d, d.c10, cloudVIP, 10*time.Second)
	})
}
