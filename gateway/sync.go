package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/egw-project/egw/api"
)

// SyncClient long-polls the cloud's sync endpoint through the tunnel. Its requests leave
// from the gateway's overlay IP: the cloud knows the caller by that source address, which
// WireGuard's cryptokey routing has authenticated; there is no other secret.
type SyncClient struct {
	BaseURL string // http://<cloud overlay IP>:<sync port>
	HTTP    *http.Client
	Log     *slog.Logger
	// Apply is called with every snapshot newer than the last one applied. An error is
	// logged and the snapshot is retried on the next poll.
	Apply func(*api.Snapshot) error
	// Report, if set, returns the status sent to the cloud after every applied snapshot and
	// at most every ReportEvery otherwise.
	Report      func() any
	ReportEvery time.Duration
	// Backoff bounds the wait after a failed poll.
	MinBackoff, MaxBackoff time.Duration
	// Latency, if set, observes how long each successful poll that carried a snapshot took.
	Latency func(time.Duration)
	// Revoked, if set, is called once when the cloud answers that this gateway was revoked
	// (revoked.go); Run then returns.
	Revoked func(*RevokedError)
	// Rotate, if set, is called with the nonce of a key rotation the cloud asks for
	// (HeaderRotate, rotate.go), before the answer is handled.
	Rotate func(nonce string)
}

// NewSyncClient returns a client whose connections originate from local (the overlay IP).
func NewSyncClient(cloud netip.AddrPort, local netip.Addr, log *slog.Logger) *SyncClient {
	// A long poll sends nothing while it waits, so only TCP keepalives notice that the
	// cloud restarted (its kernel answers them with a reset once the tunnel is back):
	// probe after 5 s idle, every 5 s, give up after 3.
	d := &net.Dialer{Timeout: 5 * time.Second,
		KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: 5 * time.Second, Interval: 5 * time.Second, Count: 3}}
	if local.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: local.AsSlice()}
	}
	tr := &http.Transport{DialContext: d.DialContext, MaxIdleConns: 2, IdleConnTimeout: 90 * time.Second}
	return &SyncClient{
		BaseURL:     "http://" + cloud.String(),
		HTTP:        &http.Client{Transport: tr, Timeout: 45 * time.Second},
		Log:         log,
		ReportEvery: 5 * time.Second,
		MinBackoff:  500 * time.Millisecond,
		MaxBackoff:  10 * time.Second,
	}
}

// Run polls until ctx ends. since is the revision already applied (from the cache, or 0).
// Reports go out after every applied snapshot and every ReportEvery, from their own
// goroutine so that a long poll never delays them.
func (c *SyncClient) Run(ctx context.Context, since int64) {
	applied := make(chan struct{}, 1)
	if c.Report != nil {
		go c.reportLoop(ctx, applied)
	}
	backoff := c.MinBackoff
	for ctx.Err() == nil {
		start := time.Now()
		snap, err := c.poll(ctx, since)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			var rev *RevokedError
			if errors.As(err, &rev) {
				if c.Revoked != nil {
					c.Revoked(rev)
				}
				return
			}
			c.Log.Warn("sync: poll failed", "err", err, "retry_in", backoff)
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(backoff*2, c.MaxBackoff)
			continue
		}
		backoff = c.MinBackoff
		// The cloud answers when the revision differs from ours in either direction: a
		// lower one comes from a reset or restored store (Node.Apply checks its StoreID).
		if snap == nil || snap.Revision == since {
			continue
		}
		if c.Latency != nil {
			c.Latency(time.Since(start))
		}
		if err := c.Apply(snap); err != nil {
			c.Log.Error("sync: applying snapshot failed; keeping the previous one", "revision", snap.Revision, "err", err)
			if !sleep(ctx, c.MaxBackoff) {
				return
			}
			continue
		}
		since = snap.Revision
		select {
		case applied <- struct{}{}:
		default:
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (c *SyncClient) reportLoop(ctx context.Context, applied <-chan struct{}) {
	every := c.ReportEvery
	if every <= 0 {
		every = 10 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-applied:
		case <-t.C:
		}
		c.sendReport(ctx)
	}
}

func (c *SyncClient) poll(ctx context.Context, since int64) (*api.Snapshot, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.BaseURL+"/v1/sync?since="+strconv.FormatInt(since, 10), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if n := resp.Header.Get(HeaderRotate); n != "" && c.Rotate != nil && resp.StatusCode < 300 {
		c.Rotate(n)
	}
	switch resp.StatusCode {
	case http.StatusNoContent, http.StatusNotModified:
		return nil, nil
	case http.StatusOK:
	default:
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if at := resp.Header.Get(HeaderRevoked); resp.StatusCode == http.StatusForbidden && at != "" {
			var e struct {
				Error string `json:"error"`
			}
			json.Unmarshal(b, &e)
			return nil, &RevokedError{At: at, Message: e.Error}
		}
		return nil, fmt.Errorf("sync: %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	var s api.Snapshot
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&s); err != nil {
		return nil, fmt.Errorf("sync: decoding snapshot: %v", err)
	}
	return &s, nil
}

func (c *SyncClient) sendReport(ctx context.Context) {
	if c.Report == nil {
		return
	}
	b, err := json.Marshal(c.Report())
	if err != nil {
		c.Log.Warn("sync: encoding report", "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.BaseURL+"/v1/report", bytes.NewReader(b))
	if err != nil {
		return
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		c.Log.Debug("sync: report failed", "err", err)
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}
