package manus

import (
	"bytes"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// metricsFormat is the exposition format the metrics path answers in: the
// Prometheus text format, which every Prometheus version scrapes. Vault does
// not pass the scraper's Accept header to plugins, so there is nothing to
// negotiate.
var metricsFormat = expfmt.NewFormat(expfmt.TypeTextPlain)

// mountMetrics is one mount's Prometheus registry. The plugin serves every
// mount from one process, so nothing is registered globally: each backend
// owns its registry and its collector reads that backend's state only.
type mountMetrics struct {
	registry   *prometheus.Registry
	collectors []prometheus.Collector
}

func newMountMetrics(b *backend) *mountMetrics {
	m := &mountMetrics{
		registry:   prometheus.NewPedanticRegistry(),
		collectors: []prometheus.Collector{newMountCollector(b), b.stats.requests, b.stats.mintDuration},
	}
	m.registry.MustRegister(m.collectors...)
	return m
}

// drop unregisters the collectors when the mount goes away, so a scrape
// racing an unmount reports nothing rather than a dropped backend.
func (m *mountMetrics) drop() {
	for _, c := range m.collectors {
		m.registry.Unregister(c)
	}
}

// exposition gathers the mount's series in the text exposition format.
func (m *mountMetrics) exposition() ([]byte, error) {
	families, err := m.registry.Gather()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, metricsFormat)
	for _, mf := range families {
		if err := enc.Encode(mf); err != nil {
			return nil, err
		}
	}
	return buf.Bytes(), nil
}

// metricDescs describes every series the collector emits. A new series is a
// field here, a line in describe and a line in collect.
type metricDescs struct {
	buildInfo         *prometheus.Desc
	mints             *prometheus.Desc
	retries           *prometheus.Desc
	reads             *prometheus.Desc
	backoff           *prometheus.Desc
	backoffEnd        *prometheus.Desc
	consecutiveFailed *prometheus.Desc
	tokenCached       *prometheus.Desc
	tokenExpiresIn    *prometheus.Desc
	tokenRefreshDueIn *prometheus.Desc
	lastMintTimestamp *prometheus.Desc
	lastFailureAt     *prometheus.Desc
	leasedReads       *prometheus.Desc
	forwarded         *prometheus.Desc
	rejected          *prometheus.Desc
	nodeCanMint       *prometheus.Desc
}

func newMetricDescs() metricDescs {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(metricsNamespace+"_"+name, help, labels, nil)
	}
	return metricDescs{
		buildInfo:         desc("build_info", "Always 1; the version label is the plugin version serving this mount.", "version"),
		mints:             desc("token_mints_total", "Token mints by outcome (success, failure); one mint is all the attempts, retries included, made to get one token. Counts from zero when the plugin process starts.", "outcome"),
		retries:           desc("token_request_retries_total", "Token requests that were retries of a failed one. Counts from zero when the plugin process starts."),
		reads:             desc("token_reads_total", "Token reads by how they were answered: cache (the cached token, no mint), minted (after waiting for a new token), stale (the cached token after its refresh failed), failed (an error). Status probes count as reads. Counts from zero when the plugin process starts.", "outcome"),
		backoff:           desc("failure_backoff", "1 while a failure back-off is in force (reads do not ask Manus for a token), else 0."),
		backoffEnd:        desc("failure_backoff_end_timestamp_seconds", "When the failure back-off in force ends, in Unix seconds; absent when none is."),
		consecutiveFailed: desc("consecutive_failed_mints", "Mints that failed in a row, all attempts spent; 0 after a successful mint or a config write."),
		tokenCached:       desc("token_cached", "1 when the mount holds a cached token, else 0."),
		tokenExpiresIn:    desc("token_expires_in_seconds", "Seconds until Manus stops accepting the cached token; 0 when none is cached or it has expired."),
		tokenRefreshDueIn: desc("token_refresh_due_in_seconds", "Seconds until the cached token is due for refresh (the next read then mints); negative when overdue; absent when no token is cached."),
		lastMintTimestamp: desc("last_successful_mint_timestamp_seconds", "When the cached token was minted, in Unix seconds (a token restored from storage keeps its mint time); absent when no token is cached."),
		lastFailureAt:     desc("last_failed_request_timestamp_seconds", "When the last token request failed, in Unix seconds; absent until one has."),
		leasedReads:       desc("leased_reads", "The read mode: 1 when token reads return a leased secret (leased_reads=true), 0 when they return the token without a lease; absent until the mount's config is loaded."),
		forwarded:         desc("token_reads_forwarded_total", "Token reads this node could not answer and handed to the node that can, by reason: mint (the token was due and only that node mints) or lease (only that node registers leases). Counts from zero when the plugin process starts.", "reason"),
		rejected:          desc("token_rejections_total", "Cached tokens Manus rejected (the status probe's HTTP 401), each dropped at once. Counts from zero when the plugin process starts."),
		nodeCanMint:       desc("node_can_mint", "1 on a node that may write the mount's storage and so mints, 0 on a standby or secondary that forwards mints."),
	}
}

func (d *metricDescs) describe(ch chan<- *prometheus.Desc) {
	for _, desc := range []*prometheus.Desc{
		d.buildInfo, d.mints, d.retries, d.reads,
		d.backoff, d.backoffEnd, d.consecutiveFailed, d.tokenCached,
		d.tokenExpiresIn, d.tokenRefreshDueIn, d.lastMintTimestamp, d.lastFailureAt,
		d.leasedReads, d.forwarded, d.rejected, d.nodeCanMint,
	} {
		ch <- desc
	}
}

// mountCollector reads a backend's counters and token cache when scraped; it
// keeps no copy of either, so it can never disagree with the status path.
type mountCollector struct {
	b     *backend
	descs metricDescs
}

func newMountCollector(b *backend) *mountCollector {
	return &mountCollector{b: b, descs: newMetricDescs()}
}

func (c *mountCollector) Describe(ch chan<- *prometheus.Desc) { c.descs.describe(ch) }

func (c *mountCollector) Collect(ch chan<- prometheus.Metric) {
	c.collectCounters(ch)
	c.collectCache(ch)
}

// collectCounters emits the build info and the counters in mountStats
// (the token requests and the mint latency are Prometheus types of their
// own, registered beside the collector).
func (c *mountCollector) collectCounters(ch chan<- prometheus.Metric) {
	d, s := &c.descs, c.b.stats
	counter := func(desc *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(v), labels...)
	}
	ch <- prometheus.MustNewConstMetric(d.buildInfo, prometheus.GaugeValue, 1, c.b.RunningVersion)
	counter(d.mints, s.mints.Load(), "success")
	counter(d.mints, s.mintFailures.Load(), "failure")
	counter(d.retries, s.retries.Load())
	counter(d.reads, s.cacheHits.Load(), "cache")
	counter(d.reads, s.readsMinted.Load(), "minted")
	counter(d.reads, s.staleServes.Load(), "stale")
	counter(d.reads, s.readsFailed.Load(), "failed")
	counter(d.forwarded, s.forwardedForMint.Load(), forwardForMint)
	counter(d.forwarded, s.forwardedForLease.Load(), forwardForLease)
	counter(d.rejected, s.rejected.Load())
	if last := s.lastFailure(); last != nil {
		ch <- prometheus.MustNewConstMetric(d.lastFailureAt, prometheus.GaugeValue, unixSeconds(last.at))
	}
}

// collectCache emits the token cache's state as the status path reads it.
// A mount not (yet) loaded, or not configured, reports no cached token.
func (c *mountCollector) collectCache(ch chan<- prometheus.Metric) {
	d := &c.descs
	gauge := func(desc *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v)
	}
	gauge(d.nodeCanMint, boolValue(c.b.node.mayWrite()))
	var st cacheState
	if cache := c.b.tokens.Load(); cache != nil {
		st = cache.snapshot()
		gauge(d.leasedReads, boolValue(cache.config().LeasedReads))
	}
	now := c.b.clock()
	gauge(d.backoff, boolValue(!st.backoffUntil.IsZero()))
	if !st.backoffUntil.IsZero() {
		gauge(d.backoffEnd, unixSeconds(st.backoffUntil))
	}
	gauge(d.consecutiveFailed, float64(st.failedMints))
	gauge(d.tokenCached, boolValue(st.token != nil))
	if st.token == nil {
		gauge(d.tokenExpiresIn, 0)
		return
	}
	gauge(d.tokenExpiresIn, float64(st.token.expiresIn(now)))
	gauge(d.tokenRefreshDueIn, st.refreshAt.Sub(now).Seconds())
	gauge(d.lastMintTimestamp, unixSeconds(st.token.MintedAt))
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
