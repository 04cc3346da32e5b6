package controlplane

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Process-wide control-plane metrics: a process runs one Server.
var (
	metricWrites = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "egw_controlplane_writes_total",
		Help: "Writes through the control plane by result (ok, invalid, conflict, notfound, toolarge, unavailable, badrequest, error).",
	}, []string{"result"})
	metricCompile = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "egw_controlplane_compile_seconds",
		Help:    "Time to compile every gateway's snapshot from the store's state.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14), // 0.5 ms .. 4 s
	})
)

// countWrite counts one write and its result.
func countWrite(err error) {
	result := "ok"
	if err != nil {
		var e *Error
		switch {
		case errors.As(err, &e):
			result = map[ErrorCode]string{CodeBadRequest: "badrequest", CodeNotFound: "notfound", CodeConflict: "conflict",
				CodeInvalid: "invalid", CodeTooLarge: "toolarge", CodeUnavailable: "unavailable"}[e.Code]
		case codeOf(err) == CodeInvalid:
			result = "invalid"
		}
		if result == "" || result == "ok" {
			result = "error"
		}
	}
	metricWrites.WithLabelValues(result).Inc()
}

// observeCompile records one compile's duration.
func observeCompile(d time.Duration) { metricCompile.Observe(d.Seconds()) }

// Collectors returns the control plane's Prometheus collectors: writes, compile time, and,
// read from s on scrape, the compiled revision, waiting sync polls and the store's health.
func (s *Server) Collectors() []prometheus.Collector {
	return []prometheus.Collector{metricWrites, metricCompile, &cpCollector{s: s,
		revision: prometheus.NewDesc("egw_controlplane_revision", "Store revision the snapshots are compiled at.", nil, nil),
		waiters:  prometheus.NewDesc("egw_controlplane_sync_waiters", "Sync long polls waiting for a changed snapshot.", nil, nil),
		up:       prometheus.NewDesc("egw_controlplane_store_up", "1 while the store takes writes (etcd reachable with a quorum), else 0.", []string{"backend"}, nil),
		conflicts: prometheus.NewDesc("egw_controlplane_store_conflicts_total",
			"Store transactions run again because another replica wrote first (etcd).", nil, nil),
	}}
}

type cpCollector struct {
	s                                *Server
	revision, waiters, up, conflicts *prometheus.Desc
}

func (c *cpCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.revision
	ch <- c.waiters
	ch <- c.up
	ch <- c.conflicts
}

func (c *cpCollector) Collect(ch chan<- prometheus.Metric) {
	c.s.mu.Lock()
	rev := c.s.compiledRev
	waiting := 0
	for _, l := range c.s.polls {
		waiting += len(l)
	}
	c.s.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(c.revision, prometheus.GaugeValue, float64(rev))
	ch <- prometheus.MustNewConstMetric(c.waiters, prometheus.GaugeValue, float64(waiting))
	h := c.s.StoreHealth()
	up := 0.0
	if h.Up {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up, h.Backend)
	var conflicts int64
	if eb, ok := c.s.store.Backend().(*EtcdBackend); ok {
		conflicts = eb.Conflicts()
	}
	ch <- prometheus.MustNewConstMetric(c.conflicts, prometheus.CounterValue, float64(conflicts))
}
