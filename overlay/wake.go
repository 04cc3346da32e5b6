package overlay

// Waking the reader: see wrapper.go. deadlineSource for TUNs with a pollable file,
// pumpSource for the rest.

import (
	"errors"
	"os"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/tun"
)

// siteSource reads batches from the TUN on behalf of Read and can be woken by kick.
type siteSource interface {
	// read reads a batch like tun.Device.Read, or returns errKicked after kick.
	read(bufs [][]byte, sizes []int, offset int) (int, error)
	// kick makes a blocked or the next read return errKicked. Safe from any goroutine.
	kick()
	// tryRead reads a batch only if one is there (or arrives within pollWindow);
	// else it returns 0, nil. It cancels a pending kick (the caller looks at the
	// reply queue afterwards).
	tryRead(bufs [][]byte, sizes []int, offset int) (int, error)
	// settle cancels a pending kick. Only the reader calls it, and must look at the
	// reply queue afterwards (before its next read).
	settle()
}

// aLongTimeAgo is a deadline in the past: it interrupts a blocked read at once.
var aLongTimeAgo = time.Unix(1, 0)

// deadlineSource reads the TUN in the caller's goroutine and buffers; kick interrupts the
// read with a past read deadline on the TUN's file.
type deadlineSource struct {
	dev    tun.Device
	f      *os.File
	kicked atomic.Bool // a past deadline is set (or about to be) and not yet consumed
}

func (s *deadlineSource) read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := s.dev.Read(bufs, sizes, offset)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		// Clear the deadline before the flag: a kick can set a new deadline only after
		// the flag is false, hence after this clear, so no kick is lost; the caller looks
		// at the reply queue after we return, so nothing pushed before the clear is missed.
		_ = s.f.SetReadDeadline(time.Time{})
		s.kicked.Store(false)
		return n, errKicked
	}
	return n, err
}

func (s *deadlineSource) tryRead(bufs [][]byte, sizes []int, offset int) (int, error) {
	_ = s.f.SetReadDeadline(time.Now().Add(pollWindow))
	n, err := s.dev.Read(bufs, sizes, offset)
	_ = s.f.SetReadDeadline(time.Time{}) // same order as in read
	s.kicked.Store(false)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		return n, nil
	}
	return n, err
}

func (s *deadlineSource) settle() {
	if s.kicked.Load() {
		_ = s.f.SetReadDeadline(time.Time{}) // same order as in read
		s.kicked.Store(false)
	}
}

func (s *deadlineSource) kick() {
	if s.kicked.CompareAndSwap(false, true) {
		_ = s.f.SetReadDeadline(aLongTimeAgo)
	}
}

// pumpSource reads the TUN in its own goroutine into its own buffers; read copies a
// batch into the caller's buffers or returns errKicked. Used for devices without a
// pollable file.
type pumpSource struct {
	ready chan *pumpBatch // read by the pump, waiting to be consumed
	free  chan *pumpBatch // consumed, for the pump to refill
	kickc chan struct{}
	done  <-chan struct{}
	cur   *pumpBatch // partly consumed batch; owned by the reader (Wrapper.readMu)
}

type pumpBatch struct {
	bufs  [][]byte
	sizes []int
	n     int // packets in the batch
	next  int // first packet not yet handed out
	err   error
}

func newPumpSource(dev tun.Device, done <-chan struct{}) *pumpSource {
	const sets = 2
	s := &pumpSource{
		ready: make(chan *pumpBatch, sets),
		free:  make(chan *pumpBatch, sets),
		kickc: make(chan struct{}, 1),
		done:  done,
	}
	bs := max(dev.BatchSize(), 1)
	for range sets {
		b := &pumpBatch{bufs: make([][]byte, bs), sizes: make([]int, bs)}
		for i := range b.bufs {
			b.bufs[i] = make([]byte, maxPacket)
		}
		s.free <- b
	}
	go s.pump(dev)
	return s
}

func (s *pumpSource) pump(dev tun.Device) {
	for {
		var b *pumpBatch
		select {
		case b = <-s.free:
		case <-s.done:
			return
		}
		b.n, b.err = dev.Read(b.bufs, b.sizes, 0)
		b.next = 0
		select {
		case s.ready <- b:
		case <-s.done:
			return
		}
		if b.err != nil && !errors.Is(b.err, tun.ErrTooManySegments) {
			return
		}
	}
}

func (s *pumpSource) read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if s.cur == nil {
		select {
		case s.cur = <-s.ready:
		case <-s.kickc:
			return 0, errKicked
		case <-s.done:
			return 0, os.ErrClosed
		}
	}
	return s.take(bufs, sizes, offset)
}

func (s *pumpSource) tryRead(bufs [][]byte, sizes []int, offset int) (int, error) {
	s.settle()
	if s.cur == nil {
		select {
		case s.cur = <-s.ready:
		default:
			return 0, nil
		}
	}
	return s.take(bufs, sizes, offset)
}

// take copies packets of the current batch into bufs.
func (s *pumpSource) take(bufs [][]byte, sizes []int, offset int) (int, error) {
	b := s.cur
	n := 0
	for b.next < b.n && n < len(bufs) {
		sz := b.sizes[b.next]
		if sz > len(bufs[n])-offset {
			b.next++ // cannot hold it; wireguard-go's buffers always can
			continue
		}
		sizes[n] = copy(bufs[n][offset:], b.bufs[b.next][:sz])
		n++
		b.next++
	}
	if b.next < b.n {
		return n, nil
	}
	err := b.err
	s.cur = nil
	s.free <- b
	return n, err
}

func (s *pumpSource) settle() {
	select {
	case <-s.kickc:
	default:
	}
}

func (s *pumpSource) kick() {
	select {
	case s.kickc <- struct{}{}:
	default:
	}
}
