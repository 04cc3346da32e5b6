package dnsd

// A query's walk through ServeDNS:
//
//  1. Count it; drop responses (never answer an answer).
//  2. Sanity: opcode QUERY (else NOTIMP), exactly one question and empty answer and
//     authority sections (else FORMERR), at most one OPT (else FORMERR), EDNS version 0
//     (else BADVERS), class IN (else REFUSED), no zone transfers (REFUSED).
//  3. Look the lower-cased name up in the current zone (one atomic load):
//     exposed name -> A (allowed VIPs) / NODATA / minimal ANY; PTR of a VIP -> its name;
//     policy-aware: a client no policy allows gets NXDOMAIN; anything else under the zone
//     or the VP CIDR's reverse names -> NXDOMAIN.
//  4. Not ours: forward to an upstream if the client is inside the site networks and an
//     upstream is configured, else REFUSED. A forward takes a slot of the semaphore
//     (MaxConcurrent) or is dropped (UDP) / SERVFAIL (TCP); local answers need none: they
//     never wait, and run on the bounded UDP workers or TCP connections.
//  5. Reply with our OPT (1232) when the query had one, truncated to the client's UDP size.

import (
	"net"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// ServeDNS answers one query. It implements dns.Handler, so it can be called with any
// dns.ResponseWriter (tests use a recorder). It never panics on a message produced by
// dns.Msg.Unpack; a nil message is dropped.
func (s *Server) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	s.stats.queries.Add(1)
	s.serve(w, r, false)
}

// serve is ServeDNS; async lets a forwarded query continue on its own goroutine (the UDP
// workers must not block on an upstream). It counts everything except the query itself.
func (s *Server) serve(w dns.ResponseWriter, r *dns.Msg, async bool) {
	if r == nil || r.Response {
		s.stats.dropped.Add(1)
		return
	}
	tcp := isTCP(w)

	if r.Opcode != dns.OpcodeQuery {
		s.stats.notimp.Add(1)
		s.reply(w, r, tcp, s.errorMsg(r, dns.RcodeNotImplemented))
		return
	}
	if len(r.Question) != 1 || len(r.Answer) != 0 || len(r.Ns) != 0 || countOPT(r) > 1 {
		s.stats.formerr.Add(1)
		s.reply(w, r, tcp, s.errorMsg(r, dns.RcodeFormatError))
		return
	}
	q := r.Question[0]
	if opt := r.IsEdns0(); opt != nil && opt.Version() != 0 {
		s.stats.formerr.Add(1)
		s.reply(w, r, tcp, s.errorMsg(r, dns.RcodeBadVers))
		return
	}
	if _, ok := dns.IsDomainName(q.Name); !ok || !dns.IsFqdn(q.Name) {
		s.stats.formerr.Add(1)
		s.reply(w, r, tcp, s.errorMsg(r, dns.RcodeFormatError))
		return
	}
	switch {
	case q.Qtype == dns.TypeOPT:
		s.stats.formerr.Add(1)
		s.reply(w, r, tcp, s.errorMsg(r, dns.RcodeFormatError))
		return
	case q.Qclass != dns.ClassINET, q.Qtype == dns.TypeAXFR, q.Qtype == dns.TypeIXFR,
		q.Qtype == dns.TypeTSIG, q.Qtype == dns.TypeTKEY:
		s.stats.refused.Add(1)
		s.reply(w, r, tcp, s.errorMsg(r, dns.RcodeRefused))
		return
	case q.Qtype == dns.TypeMAILA, q.Qtype == dns.TypeMAILB:
		s.stats.notimp.Add(1)
		s.reply(w, r, tcp, s.errorMsg(r, dns.RcodeNotImplemented))
		return
	}

	client := clientAddr(w)
	inSite := s.inSite(client)
	// Forwarding needs configured site networks holding the client, and an upstream.
	mayForward := inSite && len(s.cfg.SiteNetworks) > 0 && len(s.upstreams) > 0
	z := s.zone.Load()
	if m := s.answer(z, r, q, client, inSite); m != nil {
		m.RecursionAvailable = mayForward
		s.reply(w, r, tcp, m)
		return
	}

	// Not ours.
	if !mayForward {
		s.stats.refused.Add(1)
		s.reply(w, r, tcp, s.errorMsg(r, dns.RcodeRefused))
		return
	}
	// Forwarding is the only step that waits; it needs a slot of the semaphore.
	if !s.acquire() {
		s.stats.dropped.Add(1)
		if tcp {
			s.reply(w, r, tcp, s.errorMsg(r, dns.RcodeServerFailure))
		}
		return
	}
	if async {
		// The worker goes back to reading; the goroutine holds the slot.
		if d, ok := w.(interface{ detach() *udpWriter }); ok {
			w = d.detach() // the worker reuses its writer for the next datagram
		}
		s.fwdWG.Add(1)
		go func() {
			defer s.fwdWG.Done()
			defer s.release()
			s.forwardAndReply(w, r, tcp)
		}()
		return
	}
	defer s.release()
	s.forwardAndReply(w, r, tcp)
}

// answer returns our reply for q, or nil if the name is not ours.
func (s *Server) answer(z *zone, r *dns.Msg, q dns.Question, client netip.Addr, inSite bool) *dns.Msg {
	name := strings.ToLower(q.Name)
	policy := s.cfg.PolicyAware
	allowed := func(v *vipRecord) bool { return !policy || v.allows(client, inSite) }

	if e, ok := z.names[name]; ok {
		m := s.newReply(r, dns.RcodeSuccess)
		if q.Qtype == dns.TypeA || q.Qtype == dns.TypeANY {
			for i := range e.records {
				if v := &e.records[i]; allowed(v) {
					m.Answer = append(m.Answer, &dns.A{
						Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: s.ttl},
						A:   v.vip.AsSlice(),
					})
				}
			}
			if len(m.Answer) == 0 {
				return s.nxdomain(z, m, name)
			}
			s.stats.answers.Add(1)
			return m
		}
		if policy && !anyAllowed([]*entry{e}, client, inSite) {
			return s.nxdomain(z, m, name)
		}
		return s.nodata(z, m, name)
	}

	if a, ok := reverseAddr(name); ok {
		if p, ok := z.ptrs[a]; ok {
			m := s.newReply(r, dns.RcodeSuccess)
			if !allowed(p.rec) {
				return s.nxdomain(z, m, name)
			}
			if q.Qtype != dns.TypePTR && q.Qtype != dns.TypeANY {
				return s.nodata(z, m, name)
			}
			m.Answer = append(m.Answer, &dns.PTR{
				Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: s.ttl},
				Ptr: p.target,
			})
			s.stats.answers.Add(1)
			return m
		}
		if z.reverse.IsValid() && z.reverse.Contains(a) {
			return s.nxdomain(z, s.newReply(r, dns.RcodeSuccess), name)
		}
		return nil
	}

	if !dns.IsSubDomain(z.origin, name) {
		return nil
	}
	m := s.newReply(r, dns.RcodeSuccess)
	if name == z.origin {
		switch q.Qtype {
		case dns.TypeSOA, dns.TypeANY:
			m.Answer = append(m.Answer, soaFor(z, q.Name))
			s.stats.answers.Add(1)
			return m
		}
		return s.nodata(z, m, name)
	}
	if es, ok := z.ents[name]; ok && (!policy || anyAllowed(es, client, inSite)) {
		return s.nodata(z, m, name)
	}
	return s.nxdomain(z, m, name)
}

func soaFor(z *zone, owner string) *dns.SOA {
	soa := *z.soa
	soa.Hdr.Name = owner
	return &soa
}

// nxdomain turns m into NXDOMAIN, with the zone's SOA for negative caching when name is
// under the zone.
func (s *Server) nxdomain(z *zone, m *dns.Msg, name string) *dns.Msg {
	s.stats.nxdomain.Add(1)
	m.Rcode = dns.RcodeNameError
	if dns.IsSubDomain(z.origin, name) {
		m.Ns = append(m.Ns, z.soa)
	}
	return m
}

// nodata is NOERROR with an empty answer (RFC 2308 NODATA).
func (s *Server) nodata(z *zone, m *dns.Msg, name string) *dns.Msg {
	s.stats.nodata.Add(1)
	if dns.IsSubDomain(z.origin, name) {
		m.Ns = append(m.Ns, z.soa)
	}
	return m
}

// newReply starts an authoritative reply to r.
func (s *Server) newReply(r *dns.Msg, rcode int) *dns.Msg {
	m := &dns.Msg{Question: r.Question[:1:1]}
	m.Id = r.Id
	m.Response = true
	m.Opcode = r.Opcode
	m.Authoritative = true
	m.RecursionDesired = r.RecursionDesired
	m.CheckingDisabled = r.CheckingDisabled
	m.Rcode = rcode
	return m
}

// errorMsg is a reply carrying only rcode (and the question when there is exactly one).
func (s *Server) errorMsg(r *dns.Msg, rcode int) *dns.Msg {
	m := &dns.Msg{}
	m.Id = r.Id
	m.Response = true
	m.Opcode = r.Opcode
	m.RecursionDesired = r.RecursionDesired
	m.CheckingDisabled = r.CheckingDisabled
	m.Rcode = rcode
	if len(r.Question) == 1 && rcode != dns.RcodeFormatError {
		m.Question = r.Question[:1:1]
	}
	return m
}

// reply adds our OPT record when the query had one, truncates to what the client can take
// over UDP and writes m. A reply that cannot be packed becomes SERVFAIL.
func (s *Server) reply(w dns.ResponseWriter, r *dns.Msg, tcp bool, m *dns.Msg) {
	size := dns.MinMsgSize
	if opt := r.IsEdns0(); opt != nil {
		size = min(max(int(opt.UDPSize()), dns.MinMsgSize), MaxUDPSize)
		o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		o.SetUDPSize(MaxUDPSize)
		if opt.Do() {
			o.SetDo()
		}
		m.Extra = append(m.Extra, o)
	} else if m.Rcode > 0xF {
		// An extended rcode cannot be expressed without OPT.
		m.Rcode = dns.RcodeServerFailure
	}
	if tcp {
		size = dns.MaxMsgSize
	}
	m.Truncate(size)
	if m.Truncated {
		s.stats.truncated.Add(1)
	}
	if err := w.WriteMsg(m); err != nil {
		s.stats.writeErrors.Add(1)
	}
}

// countOPT counts OPT records in the additional section.
func countOPT(r *dns.Msg) int {
	n := 0
	for _, rr := range r.Extra {
		if rr != nil && rr.Header().Rrtype == dns.TypeOPT {
			n++
		}
	}
	return n
}

// clientAddr is the query's source address (invalid if unknown).
func clientAddr(w dns.ResponseWriter) netip.Addr {
	if c, ok := w.(interface{ clientAddr() netip.Addr }); ok {
		return c.clientAddr()
	}
	switch a := w.RemoteAddr().(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap()
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// isTCP reports whether w is a stream transport; anything else is treated as UDP (so
// replies get truncated).
func isTCP(w dns.ResponseWriter) bool {
	if _, ok := w.(interface{ clientAddr() netip.Addr }); ok {
		return false // our UDP writer
	}
	_, ok := w.RemoteAddr().(*net.TCPAddr)
	return ok
}

// inSite reports whether client is inside the site networks; with none configured every
// client is (for AllowSite), but forwarding still requires configured networks.
func (s *Server) inSite(client netip.Addr) bool {
	if len(s.cfg.SiteNetworks) == 0 {
		return true
	}
	if !client.IsValid() {
		return false
	}
	for _, p := range s.cfg.SiteNetworks {
		if p.Contains(client) {
			return true
		}
	}
	return false
}
