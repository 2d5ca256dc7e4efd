package manus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/manus-community/vault-plugin-secrets-manus/internal/standin"
)

// scrape is one parsed read of <mount>/metrics.
type scrape map[string]*dto.MetricFamily

// readMetrics reads <mount>/metrics, checks it is a raw text exposition
// response that parses and never carries the secret or an issued token, and
// returns the families by name.
func (e *testEnv) readMetrics() scrape {
	e.t.Helper()
	resp, err := e.request(logical.ReadOperation, metricsPath, nil)
	requireOK(e.t, resp, err)
	if resp.Secret != nil || resp.Auth != nil {
		e.t.Fatal("a raw response cannot carry a secret or auth")
	}
	if got := resp.Data[logical.HTTPStatusCode]; got != http.StatusOK {
		e.t.Fatalf("status code %v", got)
	}
	ct, _ := resp.Data[logical.HTTPContentType].(string)
	if expfmt.ResponseFormat(http.Header{"Content-Type": {ct}}).FormatType() != expfmt.TypeTextPlain {
		e.t.Fatalf("content type %q is not the text exposition format", ct)
	}
	body, ok := resp.Data[logical.HTTPRawBody].([]byte)
	if !ok {
		e.t.Fatalf("raw body is %T, want []byte", resp.Data[logical.HTTPRawBody])
	}
	if bytes.Contains(body, []byte(testClientSecret)) || bytes.Contains(body, []byte(testClientID)) {
		e.t.Fatal("the metrics show the client secret or ID")
	}
	for _, tok := range e.manus.Issued() {
		if bytes.Contains(body, []byte(tok)) {
			e.t.Fatal("the metrics show an access token")
		}
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		e.t.Fatalf("the exposition does not parse: %v\n%s", err, body)
	}
	for name, mf := range families {
		if !strings.HasPrefix(name, "vault_manus_") || mf.GetHelp() == "" {
			e.t.Errorf("series %s lacks the vault_manus_ prefix or help text", name)
		}
	}
	return families
}

// value is the value of the series name{labels} (a histogram's sample
// count); ok is false when the series is absent.
func (s scrape) value(name string, labels ...string) (float64, bool) {
	mf, ok := s[name]
	if !ok {
		return 0, false
	}
	for _, m := range mf.GetMetric() {
		if !labelsMatch(m, labels) {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func labelsMatch(m *dto.Metric, labels []string) bool {
	have := map[string]string{}
	for _, lp := range m.GetLabel() {
		have[lp.GetName()] = lp.GetValue()
	}
	for i := 0; i+1 < len(labels); i += 2 {
		if have[labels[i]] != labels[i+1] {
			return false
		}
	}
	return true
}

// expect compares series values; a nil want means "absent".
func (s scrape) expect(t *testing.T, want map[string]any) {
	t.Helper()
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		name, labels := parseSeries(key)
		got, ok := s.value(name, labels...)
		switch w := want[key]; {
		case w == nil && ok:
			t.Errorf("%s = %v, want it absent", key, got)
		case w == nil:
		case !ok:
			t.Errorf("%s is missing", key)
		case fmt.Sprint(got) != fmt.Sprint(w):
			t.Errorf("%s = %v, want %v", key, got, w)
		}
	}
}

// parseSeries splits `name{a="x",b="y"}` into the name and label pairs.
func parseSeries(key string) (string, []string) {
	name, rest, ok := strings.Cut(key, "{")
	if !ok {
		return name, nil
	}
	var labels []string
	for _, pair := range strings.Split(strings.TrimSuffix(rest, "}"), ",") {
		k, v, _ := strings.Cut(pair, "=")
		labels = append(labels, k, strings.Trim(v, `"`))
	}
	return name, labels
}

func TestMetricsUnconfigured(t *testing.T) {
	e := newTestEnv(t)
	e.readMetrics().expect(t, map[string]any{
		`vault_manus_build_info{version="` + Version + `"}`:                         1,
		`vault_manus_token_mints_total{outcome="success"}`:                          0,
		`vault_manus_token_mints_total{outcome="failure"}`:                          0,
		`vault_manus_token_requests_total{outcome="success",manus_code="none"}`:     0,
		`vault_manus_token_reads_total{outcome="cache"}`:                            0,
		`vault_manus_token_cached`:                                                  0,
		`vault_manus_token_expires_in_seconds`:                                      0,
		`vault_manus_failure_backoff`:                                               0,
		`vault_manus_token_refresh_due_in_seconds`:                                  nil,
		`vault_manus_last_successful_mint_timestamp_seconds`:                        nil,
		`vault_manus_token_mint_duration_seconds`:                                   0,
		`vault_manus_failure_backoff_end_timestamp_seconds`:                         nil,
		`vault_manus_last_failed_request_timestamp_seconds`:                         nil,
		`vault_manus_consecutive_failed_mints`:                                      0,
		`vault_manus_token_request_retries_total`:                                   0,
		`vault_manus_token_reads_total{outcome="failed"}`:                           0,
		`vault_manus_token_requests_total{outcome="unavailable",manus_code="none"}`: nil,
	})
	e.readTokenError()
	e.readMetrics().expect(t, map[string]any{`vault_manus_token_reads_total{outcome="failed"}`: 1})
}

// TestMetricsFollowEvents walks a mount through a mint, cache hits, an
// outage with stale serves and a back-off, and a recovery, checking each
// series after each step.
func TestMetricsFollowEvents(t *testing.T) {
	e := newTestEnv(t)
	e.configure(map[string]any{"verify_credentials": false})
	start := e.clock.Now()

	e.mustReadToken() // mint
	e.mustReadToken() // cache
	e.readMetrics().expect(t, map[string]any{
		`vault_manus_token_mints_total{outcome="success"}`:                      1,
		`vault_manus_token_requests_total{outcome="success",manus_code="none"}`: 1,
		`vault_manus_token_reads_total{outcome="minted"}`:                       1,
		`vault_manus_token_reads_total{outcome="cache"}`:                        1,
		`vault_manus_token_reads_total{outcome="stale"}`:                        0,
		`vault_manus_token_cached`:                                              1,
		`vault_manus_token_expires_in_seconds`:                                  3600,
		`vault_manus_token_refresh_due_in_seconds`:                              3000,
		`vault_manus_last_successful_mint_timestamp_seconds`:                    float64(start.Unix()),
		`vault_manus_token_mint_duration_seconds`:                               1,
	})

	// An outage after the refresh is due: four failed attempts, one failed
	// mint, a stale serve and a back-off.
	e.clock.Advance(55 * time.Minute)
	e.manus.SetOutage(standin.Unavailable())
	e.mustReadToken()
	now := e.clock.Now()
	e.readMetrics().expect(t, map[string]any{
		`vault_manus_token_mints_total{outcome="success"}`:                                 1,
		`vault_manus_token_mints_total{outcome="failure"}`:                                 1,
		`vault_manus_token_requests_total{outcome="unavailable",manus_code="UNAVAILABLE"}`: 4,
		`vault_manus_token_request_retries_total`:                                          3,
		`vault_manus_token_reads_total{outcome="stale"}`:                                   1,
		`vault_manus_failure_backoff`:                                                      1,
		`vault_manus_failure_backoff_end_timestamp_seconds`:                                float64(now.Add(time.Second).Unix()),
		`vault_manus_consecutive_failed_mints`:                                             1,
		`vault_manus_token_expires_in_seconds`:                                             300,
		`vault_manus_token_refresh_due_in_seconds`:                                         -300,
		`vault_manus_last_failed_request_timestamp_seconds`:                                float64(now.Unix()),
	})

	// The back-off window passes; the failure streak stays until a mint.
	e.clock.Advance(2 * time.Second)
	e.readMetrics().expect(t, map[string]any{
		`vault_manus_failure_backoff`:                       0,
		`vault_manus_failure_backoff_end_timestamp_seconds`: nil,
		`vault_manus_consecutive_failed_mints`:              1,
	})

	// Recovery: the next read mints.
	e.manus.ClearOutage()
	e.mustReadToken()
	e.readMetrics().expect(t, map[string]any{
		`vault_manus_token_mints_total{outcome="success"}`: 2,
		`vault_manus_token_reads_total{outcome="minted"}`:  2,
		`vault_manus_consecutive_failed_mints`:             0,
		`vault_manus_token_expires_in_seconds`:             3600,
		`vault_manus_token_mint_duration_seconds`:          2,
	})
}

func TestMetricsCountRejectionsByCode(t *testing.T) {
	e := newTestEnv(t)
	e.configure(map[string]any{"verify_credentials": false})
	e.manus.DeleteClient(testClientID)
	e.readTokenError()
	e.manus.FailNext(standin.Fault{Status: http.StatusBadRequest, Body: `{"code":"SOMETHING_NEW","message":"x"}`})
	e.clock.Advance(2 * time.Second)
	e.readTokenError()
	e.readMetrics().expect(t, map[string]any{
		`vault_manus_token_requests_total{outcome="rejected",manus_code="INVALID_CLIENT"}`: 1,
		`vault_manus_token_requests_total{outcome="rejected",manus_code="other"}`:          1,
		`vault_manus_token_mints_total{outcome="failure"}`:                                 2,
		`vault_manus_token_reads_total{outcome="failed"}`:                                  2,
		`vault_manus_token_request_retries_total`:                                          0,
	})
}

// TestMetricsAfterReloadReportPersistedToken: a new backend (a plugin
// reload) starts its counters at zero but reports the persisted token from
// its first scrape, without minting.
func TestMetricsAfterReloadReportPersistedToken(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.mustReadToken()
	e.b.Clean(context.Background())
	e.b = e.newBackend()
	e.readMetrics().expect(t, map[string]any{
		`vault_manus_token_mints_total{outcome="success"}`:   0,
		`vault_manus_token_cached`:                           1,
		`vault_manus_token_expires_in_seconds`:               3600,
		`vault_manus_last_successful_mint_timestamp_seconds`: float64(e.clock.Now().Unix()),
	})
	if e.manus.Mints() != 1 {
		t.Fatalf("scraping minted: %d mints", e.manus.Mints())
	}
}

func TestMetricsMountsAreIndependent(t *testing.T) {
	e := newTestEnv(t)
	other := e.secondMount()
	e.configure(nil)
	e.mustReadToken()
	e.readMetrics().expect(t, map[string]any{`vault_manus_token_mints_total{outcome="success"}`: 1})
	other.readMetrics().expect(t, map[string]any{
		`vault_manus_token_mints_total{outcome="success"}`: 0,
		`vault_manus_token_cached`:                         0,
	})
}

func TestMetricsDroppedWithMount(t *testing.T) {
	e := newTestEnv(t)
	e.b.Clean(context.Background())
	families, err := e.b.metrics.registry.Gather()
	if err != nil || len(families) != 0 {
		t.Fatalf("after Clean the registry still gathers %d families (%v)", len(families), err)
	}
}

func TestRequestOutcomeLabels(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want requestKey
	}{
		{nil, requestKey{"success", "none"}},
		{&upstreamError{kind: failTimeout}, requestKey{"timeout", "none"}},
		{&upstreamError{kind: failConnection}, requestKey{"unreachable", "none"}},
		{&upstreamError{kind: failRateLimited, status: 429}, requestKey{"rate_limited", "none"}},
		{&upstreamError{kind: failRejected, code: "INVALID_CLIENT"}, requestKey{"rejected", "INVALID_CLIENT"}},
		{&upstreamError{kind: failRejected, code: strings.ToUpper(testClientSecret[:40])}, requestKey{"rejected", "other"}},
		{&upstreamError{kind: failBadResponse}, requestKey{"bad_response", "none"}},
		{&upstreamError{kind: failRedirect}, requestKey{"redirect", "none"}},
		{errors.New("boom"), requestKey{"error", "none"}},
	} {
		if got := requestOutcome(tc.err); got != tc.want {
			t.Errorf("requestOutcome(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestDurationHistogramBuckets(t *testing.T) {
	h := newMintDurationHistogram()
	h.Observe((30 * time.Millisecond).Seconds())
	h.Observe((700 * time.Millisecond).Seconds())
	h.Observe(time.Minute.Seconds()) // past the last bucket: only in +Inf
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatal(err)
	}
	count, sum := m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
	buckets := map[float64]uint64{}
	for _, b := range m.GetHistogram().GetBucket() {
		buckets[b.GetUpperBound()] = b.GetCumulativeCount()
	}
	if count != 3 || sum < 60.7 || sum > 60.8 {
		t.Fatalf("count %d sum %v", count, sum)
	}
	if buckets[0.05] != 1 || buckets[0.5] != 1 || buckets[1] != 2 || buckets[45] != 2 {
		t.Fatalf("cumulative buckets %v", buckets)
	}
}

// TestMetricsScrapeDuringReads scrapes while reads mint and hit the cache,
// for the race detector; the counts add up afterwards.
func TestMetricsScrapeDuringReads(t *testing.T) {
	e := newTestEnv(t)
	e.configure(map[string]any{"verify_credentials": false})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 20 {
			resp, err := e.request(logical.ReadOperation, metricsPath, nil)
			if err != nil || resp.Data[logical.HTTPStatusCode] != http.StatusOK {
				t.Errorf("scrape during reads: %v", err)
				return
			}
		}
	}()
	e.concurrentReads(16)
	<-done
	s := e.readMetrics()
	cache, _ := s.value("vault_manus_token_reads_total", "outcome", "cache")
	minted, _ := s.value("vault_manus_token_reads_total", "outcome", "minted")
	if cache+minted != 16 || e.manus.Mints() != 1 {
		t.Fatalf("reads from cache %v + minted %v != 16, or %d mints", cache, minted, e.manus.Mints())
	}
}

// TestMetricsShowTheReadMode: vault_manus_leased_reads follows the config,
// a mode-only write included, and is absent before the config is loaded.
func TestMetricsShowTheReadMode(t *testing.T) {
	e := newTestEnv(t)
	e.readMetrics().expect(t, map[string]any{`vault_manus_leased_reads`: nil})
	e.configure(nil)
	e.readMetrics().expect(t, map[string]any{`vault_manus_leased_reads`: 1})
	for _, leased := range []bool{false, true} {
		resp, err := e.writeConfig(map[string]any{"leased_reads": leased})
		requireOK(t, resp, err)
		want := map[bool]int{false: 0, true: 1}[leased]
		e.readMetrics().expect(t, map[string]any{`vault_manus_leased_reads`: want})
	}
}
