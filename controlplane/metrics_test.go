package controlplane

import (
	"testing"

	"github.com/egw-project/egw/api"
	"github.com/prometheus/client_golang/prometheus"
)

// gather returns every sample of reg as "name{label=value,...}" -> value (histograms: their
// sample count).
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			k := mf.GetName()
			for _, l := range m.GetLabel() {
				k += "{" + l.GetName() + "=" + l.GetValue() + "}"
			}
			switch {
			case m.Gauge != nil:
				out[k] = m.GetGauge().GetValue()
			case m.Counter != nil:
				out[k] = m.GetCounter().GetValue()
			case m.Histogram != nil:
				out[k] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

func TestMetrics(t *testing.T) {
	srv := newServer(t, t.TempDir(), testConfig(), Options{})
	reg := prometheus.NewRegistry()
	reg.MustRegister(srv.Collectors()...)
	before := gather(t, reg) // the counters are process-wide: compare differences

	mustApply(t, srv, twoSites)
	site, _ := api.New(api.KindESite)
	site.GetMeta().Name = "site-a"
	site.GetMeta().Labels = map[string]string{"x": "y"}
	if _, err := srv.Update(site, 99); !IsConflict(err) {
		t.Fatalf("stale update: %v", err)
	}
	if _, _, err := srv.Apply(decode(t, `{"kind":"EGateway","metadata":{"name":"gw-a2"},"virtualPresenceIPcidr":"192.168.1.0/24","eSiteName":"site-a"}`)); codeOf(err) != CodeInvalid {
		t.Fatalf("invalid apply: %v", err)
	}
	after := gather(t, reg)
	for k, want := range map[string]float64{
		"egw_controlplane_writes_total{result=ok}":       1,
		"egw_controlplane_writes_total{result=conflict}": 1,
		"egw_controlplane_writes_total{result=invalid}":  1,
		"egw_controlplane_compile_seconds":               1,
	} {
		if d := after[k] - before[k]; d != want {
			t.Errorf("%s moved by %v, want %v", k, d, want)
		}
	}
	for k, want := range map[string]float64{
		"egw_controlplane_revision":                1,
		"egw_controlplane_sync_waiters":            0,
		"egw_controlplane_store_up{backend=bbolt}": 1,
		"egw_controlplane_store_conflicts_total":   0,
	} {
		if got, ok := after[k]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, want)
		}
	}
}
