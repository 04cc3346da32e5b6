package dnsd

// The UDP path. Each listen address has cfg.UDPWorkers sockets bound to the same port
// with SO_REUSEPORT (the kernel spreads clients over them); each socket has one worker
// goroutine that
//
//  1. reads up to udpBatch datagrams with one recvmmsg,
//  2. screens each header (responses dropped, other opcodes NOTIMP, QDCOUNT != 1
//     FORMERR), answers the common case on the fast path (fastpath.go) or else unpacks
//     it and runs ServeDNS's logic, queueing the reply,
//  3. writes the queued replies with one sendmmsg.
//
// Only a query that must be forwarded leaves the worker, on a goroutine holding a
// semaphore slot. So goroutines are bounded by workers + MaxConcurrent, and a flood
// beyond what the workers read is dropped by the kernel.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// maxQuerySize is the largest query we read; a longer datagram is cut and fails to parse.
const maxQuerySize = 4096

// udpSocketBuffer is the receive buffer we ask for on each UDP socket.
const udpSocketBuffer = 1 << 20

// udpBatch is how many datagrams a worker reads (recvmmsg) and writes (sendmmsg) per
// system call on Linux; elsewhere x/net falls back to one at a time.
const udpBatch = 32

// batchConn is the batch I/O of golang.org/x/net/ipv4 (and ipv6) PacketConn.
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// udpWorker serves one UDP socket until it is closed: read a batch, answer each datagram
// (replies are queued in the writer), write the replies as one batch.
func (s *Server) udpWorker(c *net.UDPConn) {
	defer s.workersWG.Done()
	var bc batchConn = ipv4.NewPacketConn(c)
	if a, ok := c.LocalAddr().(*net.UDPAddr); ok && a.AddrPort().Addr().Is6() && !a.AddrPort().Addr().Is4In6() {
		bc = ipv6.NewPacketConn(c)
	}
	in := make([]ipv4.Message, udpBatch)
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, maxQuerySize)}
	}
	w := &udpWriter{conn: c, batch: &outBatch{}}
	w.batch.init(udpBatch)
	for {
		n, err := bc.ReadBatch(in, 0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || s.ctx.Err() != nil {
				return
			}
			// Transient (e.g. ENOBUFS); pause briefly so a persistent error cannot spin.
			time.Sleep(time.Millisecond)
			continue
		}
		for i := range in[:n] {
			ua, ok := in[i].Addr.(*net.UDPAddr)
			if !ok {
				continue
			}
			w.peer, w.peerAddr = ua.AddrPort(), ua
			s.handlePacket(in[i].Buffers[0][:in[i].N], w)
		}
		if err := w.batch.flush(bc); err != nil {
			s.stats.writeErrors.Add(1)
		}
	}
}

// outBatch collects a worker's replies for one sendmmsg.
type outBatch struct {
	msgs []ipv4.Message
	bufs [][]byte
	n    int
}

func (b *outBatch) init(size int) {
	b.msgs = make([]ipv4.Message, size)
	b.bufs = make([][]byte, size)
	for i := range b.bufs {
		b.bufs[i] = make([]byte, 0, MaxUDPSize)
		b.msgs[i].Buffers = make([][]byte, 1)
	}
}

// add queues a reply: pack (when m is set) or copy raw into the next slot's buffer.
func (b *outBatch) add(m *dns.Msg, raw []byte, to net.Addr) error {
	if b.n == len(b.msgs) { // cannot happen: one reply per datagram read
		return errors.New("reply batch full")
	}
	buf := b.bufs[b.n][:0]
	if m != nil {
		packed, err := m.PackBuffer(buf[:cap(buf)])
		if err != nil {
			return fmt.Errorf("pack reply: %w", err)
		}
		buf = packed
	} else {
		buf = append(buf, raw...)
	}
	b.bufs[b.n] = buf
	b.msgs[b.n].Buffers[0] = buf
	b.msgs[b.n].Addr = to
	b.n++
	return nil
}

// flush writes the queued replies. Must be called by the worker after each read batch.
func (b *outBatch) flush(bc batchConn) error {
	defer func() {
		for i := range b.msgs[:b.n] {
			b.msgs[i].Addr = nil
		}
		b.n = 0
	}()
	for done := 0; done < b.n; {
		k, err := bc.WriteBatch(b.msgs[done:b.n], 0)
		if err != nil {
			return err
		}
		done += k
	}
	return nil
}

// handlePacket serves one raw query. w is the worker's writer; it is copied if the query
// leaves the worker (forwarding).
func (s *Server) handlePacket(pkt []byte, w *udpWriter) {
	s.stats.queries.Add(1)
	if len(pkt) < 12 {
		s.stats.formerr.Add(1) // no header to answer to; let the client time out
		return
	}
	flags := binary.BigEndian.Uint16(pkt[2:])
	if flags&(1<<15) != 0 { // a response: never answer (no loops, no reflection)
		s.stats.dropped.Add(1)
		return
	}
	if opcode := int(flags>>11) & 0xF; opcode != dns.OpcodeQuery {
		s.stats.notimp.Add(1)
		s.writeHeaderOnly(pkt, w, dns.RcodeNotImplemented)
		return
	}
	if qd := binary.BigEndian.Uint16(pkt[4:]); qd != 1 {
		s.stats.formerr.Add(1)
		s.writeHeaderOnly(pkt, w, dns.RcodeFormatError)
		return
	}
	if s.fastAnswer(pkt, w) {
		return
	}
	s.slowPacket(pkt, w)
}

// slowPacket is the general path for a datagram whose header passed the screening.
func (s *Server) slowPacket(pkt []byte, w *udpWriter) {
	r := new(dns.Msg)
	if err := r.Unpack(pkt); err != nil {
		s.stats.formerr.Add(1)
		s.writeHeaderOnly(pkt, w, dns.RcodeFormatError)
		return
	}
	s.serve(w, r, true)
}

// writeHeaderOnly answers with just a header carrying rcode (no amplification: 12 bytes).
func (s *Server) writeHeaderOnly(pkt []byte, w *udpWriter, rcode int) {
	var h [12]byte
	copy(h[0:2], pkt[0:2]) // ID
	in := binary.BigEndian.Uint16(pkt[2:])
	out := uint16(1<<15) | in&(0xF<<11) | in&(1<<8) | in&(1<<4) | uint16(rcode&0xF) // QR, opcode, RD, CD, rcode
	binary.BigEndian.PutUint16(h[2:], out)
	if _, err := w.Write(h[:]); err != nil {
		s.stats.writeErrors.Add(1)
	}
}

// udpWriter is the dns.ResponseWriter of the UDP path. With batch set (a worker's writer)
// replies are queued for the worker's next sendmmsg; otherwise they are written at once
// to conn, or with conn nil (tests, fuzzing) appended to sent.
type udpWriter struct {
	conn     *net.UDPConn
	peer     netip.AddrPort
	peerAddr *net.UDPAddr // peer as read, reused for the batch write
	batch    *outBatch
	buf      []byte // pack buffer when not batching
	sent     [][]byte
}

func (w *udpWriter) clientAddr() netip.Addr { return w.peer.Addr().Unmap() }

func (w *udpWriter) LocalAddr() net.Addr {
	if w.conn == nil {
		return &net.UDPAddr{}
	}
	return w.conn.LocalAddr()
}

func (w *udpWriter) RemoteAddr() net.Addr { return net.UDPAddrFromAddrPort(w.peer) }

func (w *udpWriter) WriteMsg(m *dns.Msg) error {
	if w.batch != nil {
		return w.batch.add(m, nil, w.peerAddr)
	}
	b, err := m.PackBuffer(w.buf[:cap(w.buf)])
	if err != nil {
		return fmt.Errorf("pack reply: %w", err)
	}
	_, err = w.Write(b)
	return err
}

func (w *udpWriter) Write(b []byte) (int, error) {
	switch {
	case w.batch != nil:
		return len(b), w.batch.add(nil, b, w.peerAddr)
	case w.conn == nil:
		w.sent = append(w.sent, append([]byte(nil), b...))
		return len(b), nil
	}
	return w.conn.WriteToUDPAddrPort(b, w.peer)
}

// replyBuffer returns a buffer of n bytes for a reply built in place, then handed to send.
func (w *udpWriter) replyBuffer(n int) []byte {
	if w.batch != nil && w.batch.n < len(w.batch.bufs) {
		return w.batch.bufs[w.batch.n][:n]
	}
	if cap(w.buf) < n {
		w.buf = make([]byte, 0, max(n, MaxUDPSize))
	}
	return w.buf[:n]
}

// send sends a reply built in a replyBuffer.
func (w *udpWriter) send(b []byte) error {
	if w.batch != nil {
		return w.batch.add(nil, b, w.peerAddr)
	}
	_, err := w.Write(b)
	return err
}

func (w *udpWriter) Close() error        { return nil }
func (w *udpWriter) TsigStatus() error   { return nil }
func (w *udpWriter) TsigTimersOnly(bool) {}
func (w *udpWriter) Hijack()             {}

// detach returns a writer that writes at once, for a reply that leaves the worker.
func (w *udpWriter) detach() *udpWriter { return &udpWriter{conn: w.conn, peer: w.peer} }

var _ dns.ResponseWriter = (*udpWriter)(nil)

// bindPair binds n UDP sockets (SO_REUSEPORT when n > 1) and one TCP listener on the same
// address and port. With port 0 it picks a port free for both, retrying a few times.
func bindPair(ap netip.AddrPort, n int, freebind bool) ([]*net.UDPConn, net.Listener, netip.AddrPort, error) {
	var lastErr error
	for attempt := 0; attempt < 8; attempt++ {
		conns, bound, err := bindUDP(ap, n, freebind)
		if err != nil {
			return nil, nil, netip.AddrPort{}, err
		}
		tl, err := listenTCP(bound, freebind)
		if err == nil {
			return conns, tl, bound, nil
		}
		for _, c := range conns {
			c.Close()
		}
		lastErr = err
		if ap.Port() != 0 || !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	return nil, nil, netip.AddrPort{}, lastErr
}

func bindUDP(ap netip.AddrPort, n int, freebind bool) ([]*net.UDPConn, netip.AddrPort, error) {
	var conns []*net.UDPConn
	bound := ap
	for i := 0; i < n; i++ {
		c, err := listenUDP(bound, n > 1, freebind)
		if err != nil {
			if i > 0 && errors.Is(err, errNoReusePort) {
				break // one socket shared by the workers' reads is still correct
			}
			for _, c := range conns {
				c.Close()
			}
			return nil, netip.AddrPort{}, err
		}
		// Best effort (capped by net.core.rmem_max): absorb bursts while the workers are
		// descheduled instead of dropping them.
		c.SetReadBuffer(udpSocketBuffer)
		conns = append(conns, c)
		if i == 0 {
			bound = c.LocalAddr().(*net.UDPAddr).AddrPort()
			bound = netip.AddrPortFrom(bound.Addr().Unmap(), bound.Port())
		}
	}
	return conns, bound, nil
}
