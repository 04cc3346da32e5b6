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
		Help: "Writes through the control plane by result (ok, invalid, conflict, notfound, toolarge, exhausted, forbidden, internal, unavailable, badrequest, error).",
	}, []string{"result"})
	metricCompile = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "egw_controlplane_compile_seconds",
		Help:    "Time to compile the snapshots a change affects (every snapshot after a full load).",
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
				CodeInvalid: "invalid", CodeTooLarge: "toolarge", CodeExhausted: "exhausted", CodeForbidden: "forbidden", CodeInternal: "internal", CodeUnavailable: "unavailable"}[e.Code]
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

// Collectors returns the control plane's Prometheus collectors: writes, compile time, the
// work counters (Collector), and, read from s on scrape, the compiled revision, waiting sync polls and the store's health.
func (s *Server) Collectors() []prometheus.Collector {
	return []prometheus.Collector{metricWrites, metricCompile, s.Collector(), &cpCollector{s: s,
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

// Collector returns a Prometheus collector of the control plane's work (Server.Work) and
// fleet size: register it beside the data plane's.
func (s *Server) Collector() prometheus.Collector { return &collector{s: s} }

type collector struct{ s *Server }

var (
	descWrites = prometheus.NewDesc("egw_controlplane_compiled_writes_total",
		"Committed writes (object changes, endpoint changes, this replica's or another's) compiled into snapshots.", nil, nil)
	descCompiled = prometheus.NewDesc("egw_controlplane_snapshots_compiled_total",
		"Gateway snapshots compiled (the hub's when reassembled).", nil, nil)
	descValidated = prometheus.NewDesc("egw_controlplane_objects_validated_total",
		"Objects the writes' cross-object validation looked at.", nil, nil)
	descLastCompiled = prometheus.NewDesc("egw_controlplane_last_write_snapshots_compiled",
		"Gateway snapshots the latest refresh compiled.", nil, nil)
	descLastValidated = prometheus.NewDesc("egw_controlplane_last_write_objects_validated",
		"Objects the latest refresh's writes validated.", nil, nil)
	descLastSites = prometheus.NewDesc("egw_controlplane_last_write_sites_affected",
		"Sites whose snapshots the latest refresh recompiled.", nil, nil)
	descGateways = prometheus.NewDesc("egw_controlplane_gateways",
		"Gateways with a compiled snapshot.", nil, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descWrites, descCompiled, descValidated, descLastCompiled, descLastValidated, descLastSites, descGateways} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	w := c.s.Work()
	ch <- prometheus.MustNewConstMetric(descWrites, prometheus.CounterValue, float64(w.Writes))
	ch <- prometheus.MustNewConstMetric(descCompiled, prometheus.CounterValue, float64(w.SnapshotsCompiled))
	ch <- prometheus.MustNewConstMetric(descValidated, prometheus.CounterValue, float64(w.ObjectsValidated))
	ch <- prometheus.MustNewConstMetric(descLastCompiled, prometheus.GaugeValue, float64(w.LastSnapshotsCompiled))
	ch <- prometheus.MustNewConstMetric(descLastValidated, prometheus.GaugeValue, float64(w.LastObjectsValidated))
	ch <- prometheus.MustNewConstMetric(descLastSites, prometheus.GaugeValue, float64(w.LastSitesAffected))
	c.s.mu.Lock()
	n := len(c.s.snaps)
	c.s.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(descGateways, prometheus.GaugeValue, float64(n))
}
