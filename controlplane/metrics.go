package controlplane

import "github.com/prometheus/client_golang/prometheus"

// Collector returns a Prometheus collector of the control plane's work (Server.Work) and
// fleet size: register it beside the data plane's.
func (s *Server) Collector() prometheus.Collector { return &collector{s: s} }

type collector struct{ s *Server }

var (
	descWrites = prometheus.NewDesc("egw_controlplane_writes_total",
		"Committed writes (object changes, endpoint changes) compiled into snapshots.", nil, nil)
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
