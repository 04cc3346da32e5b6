package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/egw-project/egw/api"
)

// SyncClient long-polls the cloud's sync endpoint through the tunnel. Its requests leave
// from the gateway's overlay IP: the cloud knows the caller by that source address, which
// WireGuard's cryptokey routing has authenticated; there is no other secret.
//
// Several cloud gateway replicas are several hubs, each serving sync at its own overlay
// address (Hubs). The client syncs from one; while a long poll waits it pings that hub every
// Heartbeat, and when the hub has not answered for DeadAfter (or a poll fails) it moves to
// the next hub at once, so a hub that dies is left within DeadAfter plus one Heartbeat.
type SyncClient struct {
	BaseURL string // http://<cloud overlay IP>:<sync port>: the hub when Hubs gives none
	// Hubs, if set, returns the sync URLs of every hub the gateway knows (its configured
	// one and those its snapshot lists), in the order to try them (HubOrder).
	Hubs func() []string
	// Heartbeat is how often the hub synced from is pinged while a long poll waits
	// (default 1 s); DeadAfter is how long it may leave pings unanswered before the client
	// moves to another hub (default 3 s).
	Heartbeat, DeadAfter time.Duration
	HTTP                 *http.Client
	Log                  *slog.Logger
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

	// OnHub, if set, is called with a hub's sync URL whenever the client starts syncing
	// from it: on the first answer of a hub other than the last one named.
	OnHub func(base string)

	mu       sync.Mutex
	cur      string               // the hub synced from ("" until the first poll)
	failed   map[string]time.Time // hubs that failed lately, when
	answered string               // the hub OnHub last named
}

// HubOrder returns hubs in the order gateway tries them: rendezvous hashing of the
// gateway's name with each hub's, so that a fleet spreads over the hubs, and the gateways
// of a hub that goes away spread over the others.
func HubOrder(gateway string, hubs []string) []string {
	score := func(h string) uint64 {
		f := fnv.New64a()
		f.Write([]byte(gateway))
		f.Write([]byte{0})
		f.Write([]byte(h))
		return f.Sum64()
	}
	out := slices.Clone(hubs)
	slices.SortStableFunc(out, func(a, b string) int {
		sa, sb := score(a), score(b)
		switch {
		case sa > sb:
			return -1
		case sa < sb:
			return 1
		}
		return 0
	})
	return out
}

// Current returns the sync URL of the hub the client syncs from.
func (c *SyncClient) Current() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == "" {
		return c.BaseURL
	}
	return c.cur
}

// hubs returns the hubs to try, in order (at least one).
func (c *SyncClient) hubs() []string {
	var hs []string
	if c.Hubs != nil {
		hs = c.Hubs()
	}
	if len(hs) == 0 {
		hs = []string{c.BaseURL}
	}
	return hs
}

// failMemory is how long a hub that failed is passed over while another answers.
const failMemory = time.Minute

// pick returns the hub to sync from: the first of the list that has not failed within
// failMemory (so a gateway goes back to its own first choice once that hub is back);
// when every hub failed lately, the one after the current.
func (c *SyncClient) pick() string {
	hs := c.hubs()
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, h := range hs {
		if t, failed := c.failed[h]; !failed || now.Sub(t) > failMemory {
			c.cur = h
			return h
		}
	}
	i := slices.Index(hs, c.cur)
	c.cur = hs[(i+1)%len(hs)]
	return c.cur
}

// fail records that hub failed and reports whether every hub of the list failed within
// failMemory.
func (c *SyncClient) fail(hub string) bool {
	hs := c.hubs()
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failed == nil {
		c.failed = map[string]time.Time{}
	}
	c.failed[hub] = now
	for h, t := range c.failed {
		if now.Sub(t) > failMemory || !slices.Contains(hs, h) {
			delete(c.failed, h)
		}
	}
	return len(c.failed) >= len(hs)
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
		base := c.pick()
		snap, err := c.pollWatched(ctx, base, since)
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
			if !c.fail(base) {
				c.Log.Warn("sync: hub not answering; moving to the next", "hub", base, "err", err)
				continue
			}
			c.Log.Warn("sync: poll failed", "hub", base, "err", err, "retry_in", backoff)
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(backoff*2, c.MaxBackoff)
			continue
		}
		backoff = c.MinBackoff
		c.hubAnswered(base)
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

// hubAnswered calls OnHub when base is not the hub it last named. Only Run's goroutine
// calls it.
func (c *SyncClient) hubAnswered(base string) {
	if base == c.answered {
		return
	}
	c.answered = base
	if c.OnHub != nil {
		c.OnHub(base)
	}
}

// errHubSilent says the hub left DeadAfter of pings unanswered.
var errHubSilent = errors.New("the hub stopped answering")

// pollWatched polls base while pinging it every Heartbeat; it gives up with errHubSilent
// when no ping was answered for DeadAfter.
func (c *SyncClient) pollWatched(ctx context.Context, base string, since int64) (*api.Snapshot, error) {
	hb, dead := c.Heartbeat, c.DeadAfter
	if hb <= 0 {
		hb = time.Second
	}
	if dead <= 0 {
		dead = 3 * time.Second
	}
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		snap *api.Snapshot
		err  error
	}
	done := make(chan result, 1)
	go func() {
		s, err := c.poll(pctx, base, since)
		done <- result{s, err}
	}()
	answered := make(chan struct{}, 1)
	last := time.Now()
	t := time.NewTicker(hb)
	defer t.Stop()
	go c.ping(pctx, base, hb, answered) // at once: a hub moved to is named as soon as it answers
	for {
		select {
		case r := <-done:
			return r.snap, r.err
		case <-answered:
			last = time.Now()
			c.hubAnswered(base)
		case now := <-t.C:
			if now.Sub(last) >= dead {
				cancel()
				<-done
				return nil, fmt.Errorf("%w for %s", errHubSilent, now.Sub(last).Round(time.Millisecond))
			}
			go c.ping(pctx, base, hb, answered)
		}
	}
}

// ping asks base for /v1/ping within timeout and signals answered on any HTTP answer.
func (c *SyncClient) ping(ctx context.Context, base string, timeout time.Duration, answered chan<- struct{}) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/ping", nil)
	if err != nil {
		return
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	select {
	case answered <- struct{}{}:
	default:
	}
}

func (c *SyncClient) poll(ctx context.Context, base string, since int64) (*api.Snapshot, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/sync?since="+strconv.FormatInt(since, 10), nil)
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
	// A report to a hub that died is given up as soon as a poll would give it up.
	timeout := c.DeadAfter
	if timeout <= 0 {
		timeout = 3 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.Current()+"/v1/report", bytes.NewReader(b))
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
