package dnsd

import "sync/atomic"

// Stats are the server's counters since New. Every query is counted once in Queries and
// at most once in one of the outcome counters.
type Stats struct {
	Queries     uint64 // messages received (UDP datagrams and TCP messages)
	Answers     uint64 // positive answers from the zone (A, PTR, SOA)
	NoData      uint64 // NOERROR with no answer for a name we own
	NXDomain    uint64 // names we own but do not expose to this client
	Refused     uint64 // not ours and not forwarded for this client; bad class; transfers
	Forwarded   uint64 // sent to an upstream (its rcode is relayed)
	ServFail    uint64 // forwarding failed
	FormErr     uint64 // malformed queries
	NotImp      uint64 // opcodes other than QUERY, obsolete qtypes
	Dropped     uint64 // responses received, over the concurrency or connection limits
	Truncated   uint64 // replies cut to the client's UDP size (TC set)
	WriteErrors uint64 // replies that could not be packed or sent
}

type counters struct {
	queries, answers, nodata, nxdomain, refused, forwarded, servfail,
	formerr, notimp, dropped, truncated, writeErrors atomic.Uint64
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	c := &s.stats
	return Stats{
		Queries: c.queries.Load(), Answers: c.answers.Load(), NoData: c.nodata.Load(),
		NXDomain: c.nxdomain.Load(), Refused: c.refused.Load(), Forwarded: c.forwarded.Load(),
		ServFail: c.servfail.Load(), FormErr: c.formerr.Load(), NotImp: c.notimp.Load(),
		Dropped: c.dropped.Load(), Truncated: c.truncated.Load(), WriteErrors: c.writeErrors.Load(),
	}
}
