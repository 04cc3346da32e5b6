//go:build linux

package harness

// Reading a daemon's Prometheus metrics (text exposition format) from inside its namespace.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Sample is one line of a metrics page.
type Sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// Metrics is one scrape of a metrics page.
type Metrics struct {
	// Families are the metric names the page declares (# TYPE lines) or has samples of.
	Families map[string]bool
	Samples  []Sample
}

// Has reports whether the page declares family name.
func (m *Metrics) Has(name string) bool { return m.Families[name] }

// Sum adds the samples of name whose labels include every pair of match, and says whether
// there was any.
func (m *Metrics) Sum(name string, match map[string]string) (float64, bool) {
	var sum float64
	found := false
	for _, s := range m.Samples {
		if s.Name != name || !labelsMatch(s.Labels, match) {
			continue
		}
		sum += s.Value
		found = true
	}
	return sum, found
}

// ByLabel sums the samples of name by the value of label.
func (m *Metrics) ByLabel(name, label string) map[string]float64 {
	out := map[string]float64{}
	for _, s := range m.Samples {
		if v, ok := s.Labels[label]; ok && s.Name == name {
			out[v] += s.Value
		}
	}
	return out
}

func labelsMatch(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// MetricsAddr is where the harness has every gateway serve its metrics (in its namespace).
const MetricsAddr = "127.0.0.1:9469"

// Metrics scrapes a node's metrics page from inside its namespace.
func (e *EGW) Metrics(ctx context.Context, n *Node) (*Metrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+MetricsAddr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := e.Lab.HTTPClient(n.Site.GWNS, 5*time.Second).Do(req)
	if err != nil {
		return nil, fmt.Errorf("metrics of %s: %w", n.Site.Gateway, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics of %s: %s", n.Site.Gateway, resp.Status)
	}
	m, err := ParseMetrics(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("metrics of %s: %w", n.Site.Gateway, err)
	}
	return m, nil
}

// ParseMetrics reads the Prometheus text format.
func ParseMetrics(r io.Reader) (*Metrics, error) {
	m := &Metrics{Families: map[string]bool{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				m.Families[f[0]] = true
			}
			continue
		}
		if line[0] == '#' {
			continue
		}
		s, err := parseSample(line)
		if err != nil {
			return nil, err
		}
		m.Families[s.Name] = true
		m.Samples = append(m.Samples, s)
	}
	return m, sc.Err()
}

func parseSample(line string) (Sample, error) {
	s := Sample{Labels: map[string]string{}}
	i := strings.IndexAny(line, "{ ")
	if i < 0 {
		return s, fmt.Errorf("metrics line %q: no value", line)
	}
	s.Name, line = line[:i], line[i:]
	if line[0] == '{' {
		line = line[1:]
		for {
			line = strings.TrimLeft(line, ", ")
			if strings.HasPrefix(line, "}") {
				line = line[1:]
				break
			}
			k, rest, ok := strings.Cut(line, `="`)
			if !ok {
				return s, fmt.Errorf("metrics line of %s: bad labels", s.Name)
			}
			var v strings.Builder
			j := 0
			for ; j < len(rest) && rest[j] != '"'; j++ {
				if rest[j] == '\\' && j+1 < len(rest) {
					j++
					if rest[j] == 'n' {
						v.WriteByte('\n')
						continue
					}
				}
				v.WriteByte(rest[j])
			}
			if j == len(rest) {
				return s, fmt.Errorf("metrics line of %s: unterminated label", s.Name)
			}
			s.Labels[k] = v.String()
			line = rest[j+1:]
		}
	}
	f := strings.Fields(line)
	if len(f) == 0 {
		return s, fmt.Errorf("metrics line of %s: no value", s.Name)
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return s, fmt.Errorf("metrics line of %s: %w", s.Name, err)
	}
	s.Value = v
	return s, nil
}
