package dnsd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/egw-project/egw/api"
	"github.com/miekg/dns"
)

// Server is the gateway's DNS server. Create it with New, feed it snapshots with Update
// (before or after Start), and serve with Start / Shutdown.
type Server struct {
	cfg       Config
	listen    []netip.AddrPort
	upstreams []string
	ttl       uint32
	log       *slog.Logger
	now       func() time.Time

	zone atomic.Pointer[zone]

	// inflight is the concurrency semaphore: acquire increments it if below
	// cfg.MaxConcurrent.
	inflight atomic.Int64
	next     atomic.Uint32 // round-robin start among upstreams

	udpClient, tcpClient *dns.Client
	lastUpstreamLog      atomic.Int64

	stats counters

	ctx    context.Context // cancelled by Shutdown; bounds forwarded queries
	cancel context.CancelFunc

	mu        sync.Mutex // guards the fields below (lifecycle only, never the query path)
	started   bool
	stopped   bool
	udpConns  []*net.UDPConn
	tcpSrvs   []*dns.Server
	addrs     []netip.AddrPort
	workersWG sync.WaitGroup
	fwdWG     sync.WaitGroup
}

// New validates cfg and returns a Server with an empty zone. logger may be nil.
func New(cfg Config, logger *slog.Logger) (*Server, error) {
	cfg, listen, ups, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:       cfg,
		listen:    listen,
		upstreams: ups,
		ttl:       uint32(cfg.TTL / time.Second),
		log:       logger,
		now:       time.Now,
		udpClient: &dns.Client{Net: "udp", UDPSize: MaxUDPSize, Timeout: cfg.UpstreamTimeout},
		tcpClient: &dns.Client{Net: "tcp", Timeout: cfg.UpstreamTimeout},
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	z, _ := buildZone(nil, cfg.Zone, s.ttl)
	s.zone.Store(z)
	return s, nil
}

// Update compiles snap into a new zone and swaps it in atomically; queries never wait and
// are never dropped. Entries that cannot be served are skipped and logged. A nil snap
// empties the zone. Ordering snapshots is the caller's business (the gateway applies them
// in increasing revision; a control plane reset may legitimately start over).
func (s *Server) Update(snap *api.Snapshot) {
	z, problems := buildZone(snap, s.cfg.Zone, s.ttl)
	for _, p := range problems {
		s.log.Warn("dnsd: snapshot entry skipped", "revision", z.revision, "problem", p)
	}
	s.zone.Store(z)
	s.log.Info("dnsd: zone updated", "revision", z.revision, "zone", z.origin, "names", len(z.names), "ptrs", len(z.ptrs))
}

// Start binds every Config.Listen address on UDP and TCP (the same port for both) and
// serves them. It returns once all sockets are bound and served, or the first error (then
// nothing is left open).
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started || s.stopped {
		return errors.New("dnsd: Start called twice or after Shutdown")
	}
	if len(s.listen) == 0 {
		return errors.New("dnsd: no listen address configured")
	}
	s.started = true
	for _, ap := range s.listen {
		conns, tl, bound, err := bindPair(ap, s.cfg.UDPWorkers, s.cfg.FreeBind)
		if err != nil {
			s.closeAllLocked()
			return fmt.Errorf("dnsd: listen %v: %w", ap, err)
		}
		s.addrs = append(s.addrs, bound)
		for _, c := range conns {
			s.udpConns = append(s.udpConns, c)
			s.workersWG.Add(1)
			go s.udpWorker(c)
		}
		up := make(chan struct{})
		errc := make(chan error, 1)
		srv := &dns.Server{
			Listener:          &limitListener{Listener: tl, max: int64(s.cfg.MaxTCPConns), dropped: &s.stats.dropped},
			Net:               "tcp",
			Handler:           s,
			ReadTimeout:       2 * time.Second,
			WriteTimeout:      2 * time.Second,
			IdleTimeout:       func() time.Duration { return s.cfg.TCPIdleTimeout },
			MaxTCPQueries:     128,
			MsgAcceptFunc:     s.acceptTCP,
			MsgInvalidFunc:    s.invalidTCP,
			NotifyStartedFunc: func() { close(up) },
		}
		s.workersWG.Add(1)
		go func() {
			defer s.workersWG.Done()
			errc <- srv.ActivateAndServe()
		}()
		select {
		case <-up:
			s.tcpSrvs = append(s.tcpSrvs, srv)
			s.workersWG.Add(1)
			go func() {
				defer s.workersWG.Done()
				if err := <-errc; err != nil && !s.isStopped() {
					s.log.Error("dnsd: tcp server stopped", "addr", bound, "err", err)
				}
			}()
		case err := <-errc:
			tl.Close()
			s.closeAllLocked()
			return fmt.Errorf("dnsd: serve tcp %v: %w", bound, err)
		}
	}
	s.log.Info("dnsd: serving", "addrs", s.addrs, "udpWorkers", s.cfg.UDPWorkers, "upstreams", s.upstreams)
	return nil
}

// Addrs returns the bound addresses (UDP and TCP share each), in Config.Listen order.
func (s *Server) Addrs() []netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]netip.AddrPort(nil), s.addrs...)
}

func (s *Server) isStopped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopped
}

// Shutdown stops serving: sockets are closed, forwarded queries are cancelled, and it
// waits (until ctx is done) for every goroutine the server started.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	s.cancel()
	var errs []error
	for _, c := range s.udpConns {
		c.Close()
	}
	for _, srv := range s.tcpSrvs {
		if err := srv.ShutdownContext(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.workersWG.Wait()
		s.fwdWG.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("dnsd: shutdown: %w", ctx.Err()))
	}
	return errors.Join(errs...)
}

// closeAllLocked closes whatever Start opened so far. Must hold s.mu.
func (s *Server) closeAllLocked() {
	s.stopped = true
	s.cancel()
	for _, c := range s.udpConns {
		c.Close()
	}
	for _, srv := range s.tcpSrvs {
		srv.Shutdown()
	}
	s.mu.Unlock()
	s.workersWG.Wait()
	s.mu.Lock()
}

// acquire takes a slot of the concurrency semaphore if one is free.
func (s *Server) acquire() bool {
	if s.inflight.Add(1) > int64(s.cfg.MaxConcurrent) {
		s.inflight.Add(-1)
		return false
	}
	return true
}

func (s *Server) release() { s.inflight.Add(-1) }

// acceptTCP screens a TCP message by its header before miekg unpacks it: responses are
// ignored and other opcodes get NOTIMP; everything else goes to ServeDNS.
func (s *Server) acceptTCP(dh dns.Header) dns.MsgAcceptAction {
	switch {
	case dh.Bits&(1<<15) != 0:
		s.stats.queries.Add(1)
		s.stats.dropped.Add(1)
		return dns.MsgIgnore
	case int(dh.Bits>>11)&0xF != dns.OpcodeQuery:
		s.stats.queries.Add(1)
		s.stats.notimp.Add(1)
		return dns.MsgRejectNotImplemented
	}
	return dns.MsgAccept
}

// invalidTCP counts a TCP message that could not be parsed (miekg answers FORMERR when it
// got the header).
func (s *Server) invalidTCP(_ []byte, _ error) {
	s.stats.queries.Add(1)
	s.stats.formerr.Add(1)
}

// limitListener closes connections beyond max at once (counted in dropped), so a flood of
// connections cannot grow goroutines without bound.
type limitListener struct {
	net.Listener
	max     int64
	active  atomic.Int64
	dropped *atomic.Uint64
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.active.Add(1) > l.max {
			l.active.Add(-1)
			l.dropped.Add(1)
			c.Close()
			continue
		}
		return &limitConn{Conn: c, l: l}, nil
	}
}

type limitConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.active.Add(-1) })
	return err
}
