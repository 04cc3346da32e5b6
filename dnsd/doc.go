// Package dnsd is the local DNS server of an EGW gateway. It answers the clients of its
// own site, from the zone compiled out of the gateway's api.Snapshot:
//
//   - A for each VIP's dnsName and for its EService domainName under the zone
//     (api.Snapshot.DNSZone, else Config.Zone) -> the VIP at this site; AAAA and other
//     types for those names -> NODATA; ANY -> the A records only (RFC 8482);
//   - PTR for each VIP -> its name; other addresses of the VP CIDR -> NXDOMAIN;
//   - every other name under the zone -> NXDOMAIN (with the zone's SOA);
//   - policy-aware (Config.PolicyAware): a client that no policy allows to use a VIP gets
//     NXDOMAIN for its names and its PTR. A client is allowed when it is one of the VIP's
//     AllowedClients, or when the VIP has AllowSite and the client is inside
//     Config.SiteNetworks (any client when none are configured);
//   - any other name is forwarded to Config.Upstreams, only for clients inside
//     Config.SiteNetworks; everyone else gets REFUSED (never an open resolver).
//
// Hardening: FORMERR for malformed queries and QDCOUNT != 1, NOTIMP for opcodes other than
// QUERY, BADVERS for EDNS versions other than 0, UDP replies at most 1232 bytes (or the
// client's smaller EDNS size, 512 without EDNS) with TC set when cut, and bounded work: a
// fixed set of UDP reader goroutines answer local names inline, a semaphore bounds the
// forwarded queries in flight, and TCP connections are capped.
//
// We own only the zone, the exact exposed dnsNames and the reverse names of the VP CIDR:
// a sibling or a child of an exposed dnsName (other.test.com. next to url1.test.com.)
// follows the forward-or-refuse rule.
//
// The zone is an immutable value behind an atomic pointer: Update builds a new one and
// swaps it in; queries in flight finish on the zone they loaded.
package dnsd
