// Command responder is the service host of EGW's netns tests and benchmarks: a tiny HTTP,
// TCP-echo and UDP-echo server with no dependencies beyond the standard library, so every
// namespace can run the same known responder (python or nginx are not guaranteed).
//
//	responder [-http :8080] [-tcp :7007] [-udp :9090] [-name NAME]
//
// HTTP:  GET /        → JSON {"name":NAME,"remote":"ip:port","local":"ip:port"}
//
//	GET /bytes?n=N → N bytes (application/octet-stream), for large transfers
//	GET /bytes?n=N&seed=S → N pseudorandom bytes: the ChaCha8 stream (math/rand/v2) whose
//	                 seed is S (uint64) little-endian in its first 8 bytes, zeros after, so
//	                 a client can check the content, not only the length
//	POST /upload   → JSON {"received":N,"sha256":HEX}: the request body is read, counted
//	                 and hashed
//
// TCP:   echoes every byte back until the peer closes.
// UDP:   echoes each datagram; the datagram "whoami" is answered with the sender's ip:port.
//
// An empty address disables that listener. It prints "ready" on stdout once every listener
// is bound, and exits cleanly on SIGTERM or SIGINT.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

// maxBytes bounds /bytes so a typo cannot stream forever.
const maxBytes = 4 << 30

func main() {
	httpAddr := flag.String("http", ":8080", "HTTP listen address (empty: off)")
	tcpAddr := flag.String("tcp", ":7007", "TCP echo listen address (empty: off)")
	udpAddr := flag.String("udp", ":9090", "UDP echo listen address (empty: off)")
	name := flag.String("name", hostname(), "name reported by the HTTP responder")
	flag.Parse()
	log.SetFlags(log.Ltime | log.Lmicroseconds)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	if *httpAddr != "" {
		ln, err := net.Listen("tcp", *httpAddr)
		if err != nil {
			log.Fatalf("http listen %s: %v", *httpAddr, err)
		}
		srv := &http.Server{Handler: handler(*name), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		go func() { <-ctx.Done(); _ = srv.Close() }()
	}
	if *tcpAddr != "" {
		ln, err := net.Listen("tcp", *tcpAddr)
		if err != nil {
			log.Fatalf("tcp listen %s: %v", *tcpAddr, err)
		}
		go func() { <-ctx.Done(); _ = ln.Close() }()
		go serveEcho(ln)
	}
	if *udpAddr != "" {
		pc, err := net.ListenPacket("udp", *udpAddr)
		if err != nil {
			log.Fatalf("udp listen %s: %v", *udpAddr, err)
		}
		go func() { <-ctx.Done(); _ = pc.Close() }()
		go serveUDP(pc)
	}
	fmt.Println("ready")
	<-ctx.Done()
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "responder"
	}
	return h
}

// whoami is what the HTTP root answers.
type whoami struct {
	Name   string `json:"name"`
	Remote string `json:"remote"`
	Local  string `json:"local"`
}

func handler(name string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		local := ""
		if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			local = a.String()
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(whoami{Name: name, Remote: r.RemoteAddr, Local: local})
	})
	mux.HandleFunc("GET /bytes", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		if err != nil || n < 0 || n > maxBytes {
			http.Error(w, "n: want 0.."+strconv.Itoa(maxBytes), http.StatusBadRequest)
			return
		}
		var stream *rand.ChaCha8
		if s := r.URL.Query().Get("seed"); s != "" {
			seed, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				http.Error(w, "seed: want a uint64", http.StatusBadRequest)
				return
			}
			stream = SeededStream(seed)
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		buf := make([]byte, 64<<10)
		for i := range buf {
			buf[i] = byte(i)
		}
		for n > 0 {
			chunk := min(n, int64(len(buf)))
			if stream != nil {
				_, _ = stream.Read(buf[:chunk])
			}
			if _, err := w.Write(buf[:chunk]); err != nil {
				return
			}
			n -= chunk
		}
	})
	mux.HandleFunc("POST /upload", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, io.LimitReader(r.Body, maxBytes))
		if err != nil {
			http.Error(w, "upload: "+err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(struct {
			Received int64  `json:"received"`
			SHA256   string `json:"sha256"`
		}{n, hex.EncodeToString(h.Sum(nil))})
	})
	return mux
}

func serveEcho(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			log.Printf("tcp accept: %v", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go func() {
			defer c.Close()
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetNoDelay(true)
			}
			_, _ = io.Copy(c, c)
		}()
	}
}

func serveUDP(pc net.PacketConn) {
	buf := make([]byte, 65535)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			log.Printf("udp read: %v", err)
			continue
		}
		reply := buf[:n]
		if string(reply) == "whoami" || string(reply) == "whoami\n" {
			reply = []byte(from.String() + "\n")
		}
		if _, err := pc.WriteTo(reply, from); err != nil {
			log.Printf("udp write to %s: %v", from, err)
		}
	}
}

// SeededStream is the content of GET /bytes?seed=S: ChaCha8 seeded with S little-endian in
// the first 8 bytes of its key.
func SeededStream(seed uint64) *rand.ChaCha8 {
	var key [32]byte
	for i := range 8 {
		key[i] = byte(seed >> (8 * i))
	}
	return rand.NewChaCha8(key)
}
