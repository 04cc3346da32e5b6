package overlay

import (
	"sync"
	"sync/atomic"
)

// replyQueue is a bounded FIFO of the replies the engine wrote for the overlay (ICMP
// errors, a revoked flow's reset for the remote end), copied out of the reply buffers
// until the next Read hands them to WireGuard. Slots grow to the largest packet they held
// and are kept, so a steady state allocates nothing.
type replyQueue struct {
	count atomic.Int64 // mirrors n, read without the lock on Read's fast path
	mu    sync.Mutex   // guards slots, head, n, spare
	slots [][]byte
	head  int
	n     int
	spare [][]byte // buffers of popped packets, for the next pushes
}

func (q *replyQueue) init(size int) {
	q.slots = make([][]byte, size)
	q.spare = make([][]byte, 0, size)
}

// push copies pkt into the queue; false when the queue is full.
func (q *replyQueue) push(pkt []byte) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.n == len(q.slots) {
		return false
	}
	i := (q.head + q.n) % len(q.slots)
	var s []byte
	if k := len(q.spare); k > 0 && cap(q.spare[k-1]) >= len(pkt) {
		s = q.spare[k-1]
		q.spare[k-1] = nil
		q.spare = q.spare[:k-1]
	} else {
		s = make([]byte, 0, max(len(pkt), 2048))
	}
	s = s[:len(pkt)]
	copy(s, pkt)
	q.slots[i] = s
	q.n++
	q.count.Add(1)
	return true
}

// pop copies up to len(bufs) queued packets into bufs at offset. It returns how many,
// their bytes, and how many were dropped for not fitting.
func (q *replyQueue) pop(bufs [][]byte, sizes []int, offset int) (n, bytes, tooBig int) {
	if q.count.Load() == 0 {
		return 0, 0, 0
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.n > 0 && n < len(bufs) {
		s := q.slots[q.head]
		q.slots[q.head] = nil
		q.spare = append(q.spare, s)
		q.head = (q.head + 1) % len(q.slots)
		q.n--
		q.count.Add(-1)
		if len(s) > len(bufs[n])-offset {
			tooBig++
			continue
		}
		sizes[n] = copy(bufs[n][offset:], s)
		bytes += sizes[n]
		n++
	}
	return n, bytes, tooBig
}
