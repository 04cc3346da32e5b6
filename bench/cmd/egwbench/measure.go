package main

// The measurements, each run from the client namespace of a path towards its server:
// iperf3 for TCP throughput, ping for ICMP latency, an in-process TCP request/response loop
// (socket opened inside the client namespace) against the responder's echo port for TCP
// latency, and an in-process 64-byte UDP sender and sink for the small-packet rate.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/egw-project/egw/netns-tests/harness"
)

// iperfResult is the part of `iperf3 -J` we read.
type iperfResult struct {
	End struct {
		SumReceived struct {
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
	Error string `json:"error"`
}

func runIperf(ctx context.Context, lab *harness.Lab, ns string, args ...string) (iperfResult, error) {
	var r iperfResult
	out, err := lab.Run(ctx, ns, append([]string{"iperf3", "-J"}, args...)...)
	if jerr := json.Unmarshal([]byte(out), &r); jerr != nil {
		if err != nil {
			return r, err
		}
		return r, fmt.Errorf("iperf3 output: %w", jerr)
	}
	if r.Error != "" {
		return r, fmt.Errorf("iperf3: %s", r.Error)
	}
	return r, err
}

// tcpThroughput returns the receiver's goodput in Gbit/s with streams parallel streams.
func tcpThroughput(ctx context.Context, lab *harness.Lab, ns, server string, port, streams int, d time.Duration) (float64, error) {
	r, err := runIperf(ctx, lab, ns, "-c", server, "-p", strconv.Itoa(port), "-P", strconv.Itoa(streams),
		"-t", strconv.Itoa(int(d.Seconds())), "-O", "1")
	if err != nil {
		return 0, err
	}
	return r.End.SumReceived.BitsPerSecond / 1e9, nil
}

// udpRate sends 64-byte UDP datagrams from clientNS to dst as fast as one sender goroutine
// can for d, counts what a sink bound to udpPort in serverNS receives, and returns the
// received rate in packets/s and the loss ratio. Sender and sink are sockets of this
// process, each created in its namespace, so every path is measured the same way.
func udpRate(ctx context.Context, lab *harness.Lab, clientNS, serverNS, dst string, d time.Duration) (pps, loss float64, err error) {
	sink, err := lab.ListenPacket(serverNS, "udp4", fmt.Sprintf(":%d", udpPort))
	if err != nil {
		return 0, 0, err
	}
	defer sink.Close()
	if uc, ok := sink.(*net.UDPConn); ok {
		_ = uc.SetReadBuffer(4 << 20)
	}
	var received atomic.Int64
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := sink.ReadFrom(buf); err != nil {
				return
			}
			received.Add(1)
		}
	}()
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := lab.DialContext(clientNS)(dctx, "udp4", net.JoinHostPort(dst, strconv.Itoa(udpPort)))
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	msg := make([]byte, 64)
	// Warm up (ARP, leases, handshakes) until a datagram arrives.
	err = harness.Poll(ctx, 10*time.Second, 10*time.Millisecond, "first UDP datagram", func() error {
		_, _ = c.Write(msg)
		if received.Load() == 0 {
			return fmt.Errorf("none received")
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	time.Sleep(50 * time.Millisecond) // let the warm-up datagrams drain before counting
	base := received.Load()
	var sent int64
	start := time.Now()
	deadline := start.Add(d)
	for ctx.Err() == nil {
		for range 256 {
			if _, err := c.Write(msg); err == nil {
				sent++
			}
		}
		if time.Now().After(deadline) {
			break
		}
	}
	elapsed := time.Since(start)
	time.Sleep(100 * time.Millisecond) // datagrams in flight
	got := received.Load() - base
	if sent == 0 {
		return 0, 0, fmt.Errorf("no datagram sent")
	}
	return float64(got) / elapsed.Seconds(), max(0, 1-float64(got)/float64(sent)), nil
}

var pingTime = regexp.MustCompile(`time=([0-9.]+) ms`)

// pingLatency sends count echo requests every interval and returns the RTTs in ms.
func pingLatency(ctx context.Context, lab *harness.Lab, ns, dst string, count int, interval time.Duration) ([]float64, error) {
	out, err := lab.Run(ctx, ns, "ping", "-n", "-c", strconv.Itoa(count), "-i", fmt.Sprintf("%.3f", interval.Seconds()), dst)
	var rtts []float64
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if m := pingTime.FindStringSubmatch(sc.Text()); m != nil {
			if v, perr := strconv.ParseFloat(m[1], 64); perr == nil {
				rtts = append(rtts, v)
			}
		}
	}
	if len(rtts) < count/2 {
		return nil, fmt.Errorf("ping %s: %d of %d replies (%v)", dst, len(rtts), count, err)
	}
	return rtts, nil
}

// tcpRR opens one TCP connection from ns to addr (an echo server) and measures n round
// trips of a size-byte message after a warm-up; it returns the RTTs in µs.
func tcpRR(ctx context.Context, lab *harness.Lab, ns, addr string, n, size int) ([]float64, error) {
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := lab.DialContext(ns)(dctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	msg := make([]byte, size)
	buf := make([]byte, size)
	const warmup = 200
	rtts := make([]float64, 0, n)
	for i := 0; i < warmup+n; i++ {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		start := time.Now()
		if _, err := c.Write(msg); err != nil {
			return nil, err
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			return nil, err
		}
		if i >= warmup {
			rtts = append(rtts, float64(time.Since(start).Nanoseconds())/1e3)
		}
	}
	return rtts, nil
}

// percentile returns the p-th percentile (0..100) by nearest rank.
func percentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	rank := int(p/100*float64(len(s))+0.999999) - 1
	return s[min(max(rank, 0), len(s)-1)]
}
