package dnsd

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/miekg/dns"
)

// forwardAndReply sends r's question to the upstreams (round robin start, then each in
// turn) and relays the answer; SERVFAIL when none answers.
func (s *Server) forwardAndReply(w dns.ResponseWriter, r *dns.Msg, tcp bool) {
	s.stats.forwarded.Add(1)
	resp, err := s.forward(s.ctx, r)
	if err != nil {
		s.stats.servfail.Add(1)
		s.logUpstream(err)
		s.reply(w, r, tcp, s.errorMsg(r, dns.RcodeServerFailure))
		return
	}
	s.reply(w, r, tcp, resp)
}

// forward queries the upstreams. The upstream sees a fresh message: a random ID, the
// client's question and RD/CD/AD bits, our own EDNS (1232, DO copied); none of the
// client's EDNS options. The reply is checked (ID, question) and returned re-addressed
// to r: r's ID and question, the upstream's OPT and any TSIG removed.
func (s *Server) forward(ctx context.Context, r *dns.Msg) (*dns.Msg, error) {
	q := new(dns.Msg)
	q.Id = dns.Id()
	q.RecursionDesired = r.RecursionDesired
	q.CheckingDisabled = r.CheckingDisabled
	q.AuthenticatedData = r.AuthenticatedData
	q.Question = []dns.Question{r.Question[0]}
	do := false
	if opt := r.IsEdns0(); opt != nil {
		do = opt.Do()
	}
	q.SetEdns0(MaxUDPSize, do)

	n := len(s.upstreams)
	start := int(s.next.Add(1) % uint32(n))
	var errs []error
	for i := range n {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		up := s.upstreams[(start+i)%n]
		resp, err := s.exchange(ctx, q, up)
		if err != nil {
			errs = append(errs, fmt.Errorf("upstream %s: %w", up, err))
			continue
		}
		if resp.Rcode == dns.RcodeServerFailure || resp.Rcode == dns.RcodeRefused {
			if i < n-1 { // another upstream may do better
				errs = append(errs, fmt.Errorf("upstream %s: rcode %s", up, dns.RcodeToString[resp.Rcode]))
				continue
			}
		}
		resp.Id = r.Id
		resp.Question = r.Question[:1:1]
		extra := resp.Extra[:0]
		for _, rr := range resp.Extra {
			if t := rr.Header().Rrtype; t != dns.TypeOPT && t != dns.TypeTSIG {
				extra = append(extra, rr)
			}
		}
		resp.Extra = extra
		resp.Authoritative = false
		resp.RecursionAvailable = true
		resp.Compress = true
		return resp, nil
	}
	return nil, errors.Join(errs...)
}

// exchange does one query with one upstream over UDP, retrying over TCP when the answer
// was truncated.
func (s *Server) exchange(ctx context.Context, q *dns.Msg, upstream string) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.UpstreamTimeout)
	defer cancel()
	resp, err := exchangeOnce(ctx, s.udpClient, q, upstream)
	if err == nil && resp.Truncated {
		resp, err = exchangeOnce(ctx, s.tcpClient, q, upstream)
	}
	if err != nil {
		return nil, err
	}
	if len(resp.Question) != 1 || !strings.EqualFold(resp.Question[0].Name, q.Question[0].Name) ||
		resp.Question[0].Qtype != q.Question[0].Qtype || resp.Question[0].Qclass != q.Question[0].Qclass {
		return nil, errors.New("reply does not match the question")
	}
	if !resp.Response || resp.Opcode != dns.OpcodeQuery {
		return nil, errors.New("reply is not a query response")
	}
	return resp, nil
}

// logUpstream logs upstream failures at most once per second.
func (s *Server) logUpstream(err error) {
	now := s.now().UnixNano()
	last := s.lastUpstreamLog.Load()
	if now-last < 1e9 || !s.lastUpstreamLog.CompareAndSwap(last, now) {
		return
	}
	s.log.Warn("dnsd: forwarding failed", "err", err)
}

// exchangeOnce is one exchange on a fresh connection that is closed as soon as ctx is done
// (miekg's client only honours the deadline), so Shutdown does not wait for timeouts.
func exchangeOnce(ctx context.Context, c *dns.Client, q *dns.Msg, upstream string) (*dns.Msg, error) {
	conn, err := c.DialContext(ctx, upstream)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	resp, _, err := c.ExchangeWithConnContext(ctx, q, conn)
	if err != nil && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return resp, err
}
