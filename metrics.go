package manus

import (
	"bytes"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// metricsNamespace prefixes every series the metrics path serves.
const metricsNamespace = "vault_manus"

// metricsFormat is the Prometheus text format, which every Prometheus
// scrapes; Vault does not pass the scraper's Accept header to plugins.
var metricsFormat = expfmt.NewFormat(expfmt.TypeTextPlain)

// mountMetrics is one mount's Prometheus registry: one plugin process
// serves every mount, so nothing is registered globally.
type mountMetrics struct {
	registry   *prometheus.Registry
	collectors []prometheus.Collector
}

// newMountMetrics registers the facts of view (mount_facts.go) and the
// series kept in Prometheus's own types.
func newMountMetrics(version string, view func() mountView, native ...prometheus.Collector) *mountMetrics {
	m := &mountMetrics{
		registry:   prometheus.NewPedanticRegistry(),
		collectors: append([]prometheus.Collector{newFactCollector(version, view)}, native...),
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

// factCollector reads the mount's facts when scraped; it keeps no copy, so
// it can never disagree with the status path.
type factCollector struct {
	version   string
	view      func() mountView
	buildInfo *prometheus.Desc
	descs     map[string]*prometheus.Desc
}

func newFactCollector(version string, view func() mountView) *factCollector {
	c := &factCollector{
		version:   version,
		view:      view,
		buildInfo: prometheus.NewDesc(metricsNamespace+"_build_info", "Always 1; the version label is the plugin version serving this mount.", []string{"version"}, nil),
		descs:     map[string]*prometheus.Desc{},
	}
	for _, f := range facts {
		if f.metric == "" || c.descs[f.metric] != nil {
			continue
		}
		help, labels := f.help, []string(nil)
		if family, ok := metricFamilies[f.metric]; ok {
			help, labels = family.help, []string{family.label}
		}
		c.descs[f.metric] = prometheus.NewDesc(metricsNamespace+"_"+f.metric, help, labels, nil)
	}
	return c
}

func (c *factCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.buildInfo
	for _, d := range c.descs {
		ch <- d
	}
}

func (c *factCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.buildInfo, prometheus.GaugeValue, 1, c.version)
	v := c.view()
	for _, f := range facts {
		if f.metric == "" {
			continue
		}
		value, ok := seriesValue(f, &v)
		if !ok {
			continue
		}
		kind, labels := prometheus.GaugeValue, []string(nil)
		if strings.HasSuffix(f.metric, "_total") {
			kind = prometheus.CounterValue
		}
		if f.label != "" {
			labels = []string{f.label}
		}
		ch <- prometheus.MustNewConstMetric(c.descs[f.metric], kind, value, labels...)
	}
}

// seriesValue is a fact as a number: 0 or 1 for a flag, Unix seconds for a
// time (or seconds until it, f.dueIn).
func seriesValue(f fact, v *mountView) (float64, bool) {
	switch x := f.value(v).(type) {
	case nil:
		return 0, f.zero
	case bool:
		if x {
			return 1, true
		}
		return 0, true
	case int64:
		return float64(x), true
	case time.Time:
		if f.dueIn {
			return x.Sub(v.now).Seconds(), true
		}
		return float64(x.UnixNano()) / 1e9, true
	}
	return 0, false
}

// mintDurationBuckets are the histogram buckets, in seconds, for how long a
// successful mint took, retries included; the last is the budget of a whole
// mint, which no mint outlasts.
var mintDurationBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, defaultRetryPolicy.budget.Seconds()}

func newMintDurationHistogram() prometheus.Histogram {
	return prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: metricsNamespace,
		Name:      "token_mint_duration_seconds",
		Help:      "How long successful mints took, retries included, in seconds.",
		Buckets:   mintDurationBuckets,
	})
}

// newTokenRequestsCounter counts token requests by outcome and Manus code
// (requestOutcome); the successful series exists from the first scrape.
func newTokenRequestsCounter() *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNamespace,
		Name:      "token_requests_total",
		Help:      "Requests to the Manus token endpoint by outcome and Manus error code (none: no code; other: a code not documented by Manus). Counts from zero when the plugin process starts.",
	}, []string{"outcome", "manus_code"})
	c.WithLabelValues("success", "none")
	return c
}

// requestKey labels one token request's outcome.
type requestKey struct{ outcome, code string }

// requestOutcome is the label pair for a token request's result. The code
// label takes only documented codes, so an upstream cannot grow the series
// without bound or put arbitrary text in a label.
func requestOutcome(err error) requestKey {
	if err == nil {
		return requestKey{outcome: "success", code: "none"}
	}
	upErr, ok := asUpstreamError(err)
	if !ok {
		return requestKey{outcome: "error", code: "none"}
	}
	return requestKey{outcome: failureOutcomes[upErr.kind], code: knownCode(upErr.code)}
}

var failureOutcomes = map[failureKind]string{
	failRejected:    "rejected",
	failRateLimited: "rate_limited",
	failUnavailable: "unavailable",
	failTimeout:     "timeout",
	failConnection:  "unreachable",
	failBadResponse: "bad_response",
	failRedirect:    "redirect",
}

// documentedCodes are the error codes the Manus API documents (token
// endpoint and gRPC-style codes) and the OAuth2 ones of RFC 6749 5.2.
var documentedCodes = map[string]bool{
	codeInvalidClient: true, codeInvalidRequest: true, codeInvalidGrantType: true,
	"INVALID_ARGUMENT": true, "NOT_FOUND": true, "PERMISSION_DENIED": true, "FAILED_PRECONDITION": true,
	"INTERNAL": true, "UNAVAILABLE": true, "DEADLINE_EXCEEDED": true, "RESOURCE_EXHAUSTED": true,
	"UNAUTHENTICATED": true, "INVALID_GRANT": true, "UNAUTHORIZED_CLIENT": true,
	"UNSUPPORTED_GRANT_TYPE": true, "INVALID_SCOPE": true, "TEMPORARILY_UNAVAILABLE": true, "SERVER_ERROR": true,
}

func knownCode(code string) string {
	switch {
	case code == "":
		return "none"
	case documentedCodes[code]:
		return code
	}
	return "other"
}
