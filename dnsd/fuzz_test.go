package dnsd

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

// FuzzServeDNS feeds arbitrary bytes to the UDP packet path (header screening, unpack,
// ServeDNS) and, when they unpack, to ServeDNS over a TCP-like writer. Nothing may panic;
// every UDP reply must parse, carry the query's ID, fit the UDP limit and be no larger
// than needed for a header when the query had none.
func FuzzServeDNS(f *testing.F) {
	for _, q := range []*dns.Msg{
		query("url1.test.com.", dns.TypeA),
		query("eservicenginx.egw.local.", dns.TypeAAAA),
		query("10.0.168.192.in-addr.arpa.", dns.TypePTR),
		query("team.egw.local.", dns.TypeANY),
		query("example.com.", dns.TypeMX),
		func() *dns.Msg { m := query("web.egw.local.", dns.TypeA); m.SetEdns0(4096, true); return m }(),
		func() *dns.Msg { m := query("WEB.Example.org.", dns.TypeA); m.AuthenticatedData = true; return m }(),
		func() *dns.Msg {
			m := query("url1.test.com.", dns.TypeA)
			m.SetEdns0(1232, false)
			m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"})
			return m
		}(),
		func() *dns.Msg { m := query("egw.local.", dns.TypeSOA); m.Opcode = dns.OpcodeUpdate; return m }(),
	} {
		b, err := q.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0})

	cfg := testConfig()
	s := newTestServer(f, cfg, testSnapshot(1))
	peer := netip.MustParseAddrPort(clientNginx + ":5353")
	f.Fuzz(func(t *testing.T, data []byte) {
		w := &udpWriter{peer: peer, buf: make([]byte, 0, MaxUDPSize)}
		s.handlePacket(data, w)
		if len(w.sent) > 1 {
			t.Fatalf("%d replies to one datagram", len(w.sent))
		}
		for _, b := range w.sent {
			if len(b) > MaxUDPSize {
				t.Fatalf("UDP reply of %d bytes", len(b))
			}
			m := new(dns.Msg)
			if err := m.Unpack(b); err != nil {
				t.Fatalf("reply does not parse: %v", err)
			}
			if m.Id != binary.BigEndian.Uint16(data) || !m.Response {
				t.Fatalf("reply id %d response %v, want id %d", m.Id, m.Response, binary.BigEndian.Uint16(data))
			}
			if len(b) > maxReplySize(data) {
				t.Fatalf("reply of %d bytes exceeds the client's size", len(b))
			}
		}
		// Differential: whenever the fast path answers, the general path must send the
		// very same bytes.
		for _, client := range []string{clientNginx, clientSite, clientRemote} {
			ap := netip.AddrPortFrom(netip.MustParseAddr(client), 5353)
			fast := &udpWriter{peer: ap}
			if len(data) >= 12 && s.fastAnswer(data, fast) {
				slow := &udpWriter{peer: ap}
				s.slowPacket(data, slow)
				if len(fast.sent) != 1 || len(slow.sent) != 1 || !bytes.Equal(fast.sent[0], slow.sent[0]) {
					t.Fatalf("fast path reply differs from the general path for client %s:\nfast %x\nslow %x", client, fast.sent, slow.sent)
				}
			}
		}
		// The TCP path: miekg screens and unpacks, then calls ServeDNS.
		r := new(dns.Msg)
		if r.Unpack(data) == nil {
			s.ServeDNS(newRecorder(clientSite, true), r)
		}
	})
}

// maxReplySize is the largest UDP reply a query allows: 512 without EDNS, else its size
// clamped to [512, 1232]. Unparsable queries allow 512 (we only send a header).
func maxReplySize(query []byte) int {
	m := new(dns.Msg)
	if m.Unpack(query) != nil {
		return dns.MinMsgSize
	}
	if opt := m.IsEdns0(); opt != nil {
		return min(max(int(opt.UDPSize()), dns.MinMsgSize), MaxUDPSize)
	}
	return dns.MinMsgSize
}

// TestFastPath: the fast path takes exactly the queries it is meant for, and its replies
// equal the general path's byte for byte.
func TestFastPath(t *testing.T) {
	cfg := testConfig()
	cfg.Upstreams = []string{"192.0.2.1"} // RA for site clients
	s := newTestServer(t, cfg, testSnapshot(1))
	edns := func(m *dns.Msg, do bool) *dns.Msg { m.SetEdns0(4096, do); return m }
	tests := []struct {
		name   string
		client string
		q      *dns.Msg
		fast   bool
	}{
		{"A, site client", clientSite, query("web.egw.local.", dns.TypeA), true},
		{"A, mixed case dnsName", clientSite, query("Web.EXAMPLE.org.", dns.TypeA), true},
		{"A, allowed client, EDNS with DO", clientNginx, edns(query("url1.test.com.", dns.TypeA), true), true},
		{"A, AD and CD set", clientNginx, func() *dns.Msg {
			m := query("url1.test.com.", dns.TypeA)
			m.AuthenticatedData, m.CheckingDisabled = true, true
			return m
		}(), true},
		{"A, outside client not allowed", clientRemote, query("url1.test.com.", dns.TypeA), false},
		{"A, denied client", clientSite, query("url1.test.com.", dns.TypeA), false},
		{"AAAA", clientNginx, query("url1.test.com.", dns.TypeAAAA), false},
		{"unknown name", clientSite, query("nothere.egw.local.", dns.TypeA), false},
		{"EDNS version 1", clientSite, func() *dns.Msg {
			m := edns(query("web.egw.local.", dns.TypeA), false)
			m.IsEdns0().SetVersion(1)
			return m
		}(), false},
		{"not ours", clientSite, query("example.com.", dns.TypeA), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pkt, err := tt.q.Pack()
			if err != nil {
				t.Fatal(err)
			}
			ap := netip.AddrPortFrom(netip.MustParseAddr(tt.client), 5353)
			fast := &udpWriter{peer: ap}
			if got := s.fastAnswer(pkt, fast); got != tt.fast {
				t.Fatalf("fast path taken: %v, want %v", got, tt.fast)
			}
			if !tt.fast {
				if len(fast.sent) != 0 {
					t.Fatal("the fast path declined but sent a reply")
				}
				return
			}
			slow := &udpWriter{peer: ap}
			s.slowPacket(pkt, slow)
			if !bytes.Equal(fast.sent[0], slow.sent[0]) {
				t.Fatalf("fast %x\nslow %x", fast.sent[0], slow.sent[0])
			}
		})
	}
	// The worker's path (batch buffers) sends the same bytes too.
	pkt, _ := query("web.egw.local.", dns.TypeA).Pack()
	w := &udpWriter{peer: netip.MustParseAddrPort(clientSite + ":53"), batch: &outBatch{}}
	w.batch.init(2)
	if !s.fastAnswer(pkt, w) || w.batch.n != 1 {
		t.Fatal("fast path into a batch did not queue one reply")
	}
	ref := &udpWriter{peer: w.peer}
	s.slowPacket(pkt, ref)
	if !bytes.Equal(w.batch.msgs[0].Buffers[0], ref.sent[0]) {
		t.Fatalf("batched fast reply %x, want %x", w.batch.msgs[0].Buffers[0], ref.sent[0])
	}
}
