package gateway

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// collector exports a node's counters to Prometheus. It reads them on scrape; nothing is
// added to the packet path.
type collector struct {
	n *Node

	packets, bytes, drops, leases, handshakeAge, peerRx, peerTx, revision, syncLatency, dnsQ *prometheus.Desc
	pathDirect, pathPackets, relayPackets, relayDrops                                        *prometheus.Desc
}

func newCollector(n *Node) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("egw_"+name, help, labels, prometheus.Labels{"gateway": n.cfg.Name})
	}
	return &collector{
		n:            n,
		packets:      d("packets_total", "Packets through the gateway by direction.", "direction"),
		bytes:        d("bytes_total", "Bytes through the gateway by direction.", "direction"),
		drops:        d("drops_total", "Packets dropped by reason.", "reason"),
		leases:       d("leases", "Lease pool use: used and size per pool.", "pool", "kind"),
		handshakeAge: d("peer_handshake_age_seconds", "Seconds since the last WireGuard handshake with a peer (-1: never).", "peer"),
		peerRx:       d("peer_rx_bytes_total", "Bytes received from a WireGuard peer.", "peer"),
		peerTx:       d("peer_tx_bytes_total", "Bytes sent to a WireGuard peer.", "peer"),
		revision:     d("applied_revision", "Revision of the applied snapshot."),
		syncLatency:  d("sync_latency_seconds", "Duration of the last sync poll that delivered a snapshot."),
		dnsQ:         d("dns_queries_total", "DNS queries by outcome.", "outcome"),
		pathDirect:   d("path_direct", "1 while a linked gateway is reached on a proven direct path, 0 while relayed.", "peer"),
		pathPackets:  d("path_packets_total", "Datagrams sent to linked gateways, by path (direct, relayed, no_path).", "path"),
		relayPackets: d("relay_packets_total", "Datagrams the hub relay forwarded between linked gateways."),
		relayDrops:   d("relay_drops_total", "Datagrams the hub relay dropped, by reason.", "reason"),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.packets, c.bytes, c.drops, c.leases, c.handshakeAge, c.peerRx, c.peerTx, c.revision, c.syncLatency, c.dnsQ, c.pathDirect, c.pathPackets, c.relayPackets, c.relayDrops} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	ws := c.n.ov.Wrapper().Stats()
	counter(c.packets, ws.FromSitePackets, "from_site")
	counter(c.packets, ws.ToOverlayPackets, "to_overlay")
	counter(c.packets, ws.FromOverlayPackets, "from_overlay")
	counter(c.packets, ws.ToSitePackets, "to_site")
	counter(c.bytes, ws.FromSiteBytes, "from_site")
	counter(c.bytes, ws.ToOverlayBytes, "to_overlay")
	counter(c.bytes, ws.FromOverlayBytes, "from_overlay")
	counter(c.bytes, ws.ToSiteBytes, "to_site")
	for reason, v := range ws.Drops {
		counter(c.drops, v, reason)
	}
	es := c.n.engine.Stats()
	gauge(c.leases, float64(es.ClientPool.InUse), "client", "used")
	gauge(c.leases, float64(es.ClientPool.Size), "client", "size")
	gauge(c.leases, float64(es.PresencePool.InUse), "presence", "used")
	gauge(c.leases, float64(es.PresencePool.Size), "presence", "size")
	if peers, err := c.n.ov.PeerStats(); err == nil {
		now := time.Now()
		for _, p := range peers {
			name := p.PublicKey.String()
			age := -1.0
			if !p.LastHandshake.IsZero() {
				age = now.Sub(p.LastHandshake).Seconds()
			}
			gauge(c.handshakeAge, age, name)
			counter(c.peerRx, p.RxBytes, name)
			counter(c.peerTx, p.TxBytes, name)
		}
	}
	if s := c.n.applied.Load(); s != nil {
		gauge(c.revision, float64(s.Revision))
	}
	if rs, ok := c.n.ov.RelayStats(); ok {
		counter(c.relayPackets, rs.Forwarded)
		for reason, v := range rs.Drops {
			counter(c.relayDrops, v, reason)
		}
	} else {
		for _, p := range c.n.ov.Paths() {
			v := 0.0
			if p.Mode == "direct" {
				v = 1
			}
			gauge(c.pathDirect, v, p.Peer)
		}
		bs := c.n.ov.Bind().Stats()
		counter(c.pathPackets, bs.SentDirect, "direct")
		counter(c.pathPackets, bs.SentRelayed, "relayed")
		counter(c.pathPackets, bs.NoPath, "no_path")
	}
	gauge(c.syncLatency, time.Duration(c.n.syncLatency.Load()).Seconds())
	if c.n.dns != nil {
		d := c.n.dns.Stats()
		for outcome, v := range map[string]uint64{"answer": d.Answers, "nodata": d.NoData, "nxdomain": d.NXDomain,
			"refused": d.Refused, "forwarded": d.Forwarded, "servfail": d.ServFail, "formerr": d.FormErr,
			"notimp": d.NotImp, "dropped": d.Dropped} {
			counter(c.dnsQ, v, outcome)
		}
	}
}

// ServeMetrics serves Prometheus metrics on addr (e.g. 127.0.0.1:9469) until ctx ends.
// An empty addr serves nothing.
func (n *Node) ServeMetrics(ctx context.Context, addr string, extra ...prometheus.Collector) error {
	if addr == "" {
		return nil
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(newCollector(n))
	for _, c := range extra {
		reg.MustRegister(c)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Warn("metrics server stopped", "err", err)
		}
	}()
	n.log.Info("serving metrics", "addr", ln.Addr().String(), "path", "/metrics")
	return nil
}
