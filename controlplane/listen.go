package controlplane

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/egw-project/egw/internal/secret"
)

func contextWithTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d)
}

func parseRemote(remote string) (netip.Addr, error) {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return netip.Addr{}, err
	}
	return ap.Addr().Unmap(), nil
}

// DefaultAPISocket is where the admin API listens by default.
const DefaultAPISocket = "/run/egw/api.sock"

// ListenUnix listens on the unix socket path with mode 0600 from the first moment: the
// socket is bound inside a private (0700) temporary directory beside path, chmodded, and
// renamed into place. The parent directory is created (0755) if missing. A stale socket
// at path is replaced; any other file there is an error. Closing the listener removes the
// socket.
func ListenUnix(path string) (net.Listener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("API socket directory: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("API socket %s: exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("API socket %s: another server is listening there", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("API socket %s: removing stale socket: %w", path, err)
		}
	}
	tmp, err := os.MkdirTemp(dir, ".egw-sock-")
	if err != nil {
		return nil, fmt.Errorf("API socket: %w", err)
	}
	defer os.RemoveAll(tmp)
	tmpPath := filepath.Join(tmp, "s")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmpPath, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("API socket %s: %w", path, err)
	}
	l.SetUnlinkOnClose(false)
	if err := os.Chmod(tmpPath, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("API socket %s: %w", path, err)
	}
	if err := os.Rename(tmpPath, path); err != nil {
		l.Close()
		return nil, fmt.Errorf("API socket %s: %w", path, err)
	}
	return &unixListener{Listener: l, path: path}, nil
}

type unixListener struct {
	net.Listener
	path string
}

func (l *unixListener) Close() error {
	err := l.Listener.Close()
	os.Remove(l.path)
	return err
}

// ReadTokenFile reads a bearer token from path (internal/secret: the file must be 0600 or
// stricter, one line), refusing a token shorter than 16 characters.
func ReadTokenFile(path string) (string, error) {
	tok, err := secret.ReadLine(path, "API token file")
	if err != nil {
		return "", err
	}
	if len(tok) < 16 {
		return "", fmt.Errorf("API token file %s: token is shorter than 16 characters", path)
	}
	return tok, nil
}

// BearerAuth wraps h so that every request needs "Authorization: Bearer <token>" with the
// token that token() returns at the time (so it can be reloaded); others get 401. An
// empty token refuses everything. The comparison takes constant time. The check runs before
// anything reads the body, and a refused request's connection is closed without reading it.
func BearerAuth(h http.Handler, token func() string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := token()
		want := []byte("Bearer " + tok)
		got := []byte(r.Header.Get("Authorization"))
		if tok == "" || subtle.ConstantTimeCompare(got, want) != 1 {
			// Close after the 401 without reading the body: net/http would otherwise
			// wait to discard an announced body before answering (and again when
			// closing it), and keep the connection for another try.
			w.Header().Set("Connection", "close")
			http.NewResponseController(w).SetReadDeadline(time.Now())
			w.Header().Set("WWW-Authenticate", `Bearer realm="egw"`)
			writeJSON(w, http.StatusUnauthorized, errorBody{Error: "missing or wrong bearer token"})
			return
		}
		h.ServeHTTP(w, r)
	})
}

// TLSCert is the certificate the TCP admin API serves, read from a PEM certificate (chain)
// file and a PEM key file. Reload re-reads both (on SIGHUP) without a restart; connections
// made after it get the new certificate.
type TLSCert struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
}

// LoadTLSCert reads the certificate and key. The key file is a secret (internal/secret):
// one accessible to group or others is refused, as is a key that does not match
// the certificate.
func LoadTLSCert(certFile, keyFile string) (*TLSCert, error) {
	c := &TLSCert{certFile: certFile, keyFile: keyFile}
	if err := c.Reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// Reload re-reads the files; on error the certificate in use stays.
func (c *TLSCert) Reload() error {
	keyPEM, err := secret.Read(c.keyFile, "API TLS key file")
	if err != nil {
		return err
	}
	certPEM, err := os.ReadFile(c.certFile)
	if err != nil {
		return fmt.Errorf("API TLS certificate: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("API TLS certificate %s with key %s: %w", c.certFile, c.keyFile, err)
	}
	c.cur.Store(&cert)
	return nil
}

// Leaf returns the certificate in use, parsed.
func (c *TLSCert) Leaf() *x509.Certificate { return c.cur.Load().Leaf }

// Config returns a server TLS configuration that serves the current certificate, with
// TLS 1.2 as the lowest version.
func (c *TLSCert) Config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return c.cur.Load(), nil
		},
	}
}

// ServeLimits bound what the clients of an HTTP API can hold (docs/ARCHITECTURE.md,
// "Admin API limits"): how long a request may take to arrive and to be answered, how long
// an idle keep-alive connection stays, and how many connections are open at once, in all
// and per source address.
type ServeLimits struct {
	ReadHeaderTimeout time.Duration // request line and headers
	ReadTimeout       time.Duration // the whole request, body included
	WriteTimeout      time.Duration // from the end of the headers to the end of the answer
	IdleTimeout       time.Duration // between requests on a keep-alive connection
	MaxHeaderBytes    int
	MaxConns          int // open connections in all; more are closed as soon as accepted
	MaxConnsPerAddr   int // open connections from one source IP address
}

// DefaultServeLimits are the TCP admin API's limits. MaxConns stays well below the
// units' LimitNOFILE (scripts/systemd) so that the unix socket, the store and the data
// plane keep descriptors whatever TCP clients do.
var DefaultServeLimits = ServeLimits{
	ReadHeaderTimeout: 5 * time.Second,
	ReadTimeout:       30 * time.Second,
	WriteTimeout:      60 * time.Second,
	IdleTimeout:       60 * time.Second,
	MaxHeaderBytes:    64 << 10,
	MaxConns:          512,
	MaxConnsPerAddr:   32,
}

// NewHTTPServer returns an http.Server for h with the timeouts and header limit of lim
// (the connection caps are LimitListener's).
func NewHTTPServer(h http.Handler, lim ServeLimits) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: lim.ReadHeaderTimeout,
		ReadTimeout:       lim.ReadTimeout,
		WriteTimeout:      lim.WriteTimeout,
		IdleTimeout:       lim.IdleTimeout,
		MaxHeaderBytes:    lim.MaxHeaderBytes,
	}
}

// ConnLimiter is a listener that holds at most a number of connections open, in all and
// per source IP address; a connection beyond either cap is closed as soon as it is
// accepted, so it costs a descriptor for a moment only and never waits for a slot.
// Counting is by the remote IP address (any port); listeners whose connections carry no
// IP address (unix sockets) count everything under one key.
type ConnLimiter struct {
	net.Listener
	max, perAddr int

	mu      sync.Mutex
	open    int
	byAddr  map[netip.Addr]int
	refused atomic.Uint64
}

// LimitListener wraps l with caps on open connections: max in all, perAddr per source
// address (0: no cap). Wrap the plain TCP listener, below any TLS.
func LimitListener(l net.Listener, max, perAddr int) *ConnLimiter {
	return &ConnLimiter{Listener: l, max: max, perAddr: perAddr, byAddr: map[netip.Addr]int{}}
}

// Accept returns the next connection within the caps.
func (l *ConnLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		var addr netip.Addr
		if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			addr, _ = netip.AddrFromSlice(ta.IP)
			addr = addr.Unmap()
		}
		l.mu.Lock()
		if (l.max > 0 && l.open >= l.max) || (l.perAddr > 0 && l.byAddr[addr] >= l.perAddr) {
			l.mu.Unlock()
			l.refused.Add(1)
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetLinger(0) // reset: no FIN_WAIT state kept for a refused client
			}
			c.Close()
			continue
		}
		l.open++
		l.byAddr[addr]++
		l.mu.Unlock()
		return &limitedConn{Conn: c, release: func() { l.release(addr) }}, nil
	}
}

func (l *ConnLimiter) release(addr netip.Addr) {
	l.mu.Lock()
	l.open--
	if l.byAddr[addr]--; l.byAddr[addr] <= 0 {
		delete(l.byAddr, addr)
	}
	l.mu.Unlock()
}

// Open is the number of connections open now.
func (l *ConnLimiter) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

// Refused is the number of connections closed at once for being over a cap.
func (l *ConnLimiter) Refused() uint64 { return l.refused.Load() }

type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
