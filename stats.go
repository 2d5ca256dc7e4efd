package manus

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// mountStats counts what one mount's backend has done since the plugin
// process started serving it. The status path and the metrics path
// (metrics.go) read it; it knows neither. Two of its series are kept in
// Prometheus's own types, which the metrics path registers as they are.
type mountStats struct {
	mints          atomic.Int64 // tokens minted
	failedAttempts atomic.Int64 // token requests that failed
	retries        atomic.Int64 // token requests that were retries
	cacheHits      atomic.Int64 // reads served the cached token without minting
	staleServes    atomic.Int64 // reads served a cached token after a refresh failed
	mintFailures   atomic.Int64 // mints that failed, all attempts spent
	readsMinted    atomic.Int64 // reads that waited for a mint and got its token
	readsFailed    atomic.Int64 // token reads answered with an error
	rejected       atomic.Int64 // cached tokens Manus rejected (status probe)
	// forwarded counts token reads this node handed to the node that can
	// mint (forwardForMint) or register a lease (forwardForLease).
	forwardedForMint  atomic.Int64
	forwardedForLease atomic.Int64

	requests     *prometheus.CounterVec // token requests by outcome and Manus code (newTokenRequestsCounter)
	mintDuration prometheus.Histogram   // how long successful mints took, retries included (newMintDurationHistogram)

	mu        sync.Mutex
	lastError *failureRecord
}

// newMountStats is a mount's counters at zero.
func newMountStats() *mountStats {
	return &mountStats{requests: newTokenRequestsCounter(), mintDuration: newMintDurationHistogram()}
}

// recordForward counts a token read forwarded for reason (cluster.go).
func (s *mountStats) recordForward(reason string) {
	if reason == forwardForLease {
		s.forwardedForLease.Add(1)
	} else {
		s.forwardedForMint.Add(1)
	}
}

// recordRequest counts one token request that ended with err (nil: a token).
func (s *mountStats) recordRequest(err error) {
	key := requestOutcome(err)
	s.requests.WithLabelValues(key.outcome, key.code).Inc()
}

// failureRecord is the last failed token request, as safe to show: the
// message is the plugin's own, built from vetted parts.
type failureRecord struct {
	message    string
	code       string
	httpStatus int
	at         time.Time
}

func (s *mountStats) recordFailure(err error, at time.Time) {
	rec := &failureRecord{message: err.Error(), at: at}
	if upErr, ok := asUpstreamError(err); ok {
		rec.code, rec.httpStatus = upErr.code, upErr.status
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastError = rec
}

func (s *mountStats) lastFailure() *failureRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastError
}

// metricsNamespace prefixes every series the metrics path serves, the two
// kept here included.
const metricsNamespace = "vault_manus"

// mintDurationBuckets are the histogram buckets, in seconds, for how long a
// successful mint took, retries included; the last is the budget of a whole
// mint (defaultRetryPolicy), which no mint outlasts.
var mintDurationBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, defaultRetryPolicy.budget.Seconds()}

// newMintDurationHistogram is one mount's mint-latency histogram. The
// minter observes it; the metrics path registers it in the mount's own
// registry beside its collector.
func newMintDurationHistogram() prometheus.Histogram {
	return prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: metricsNamespace,
		Name:      "token_mint_duration_seconds",
		Help:      "How long successful mints took, retries included, in seconds.",
		Buckets:   mintDurationBuckets,
	})
}

// newTokenRequestsCounter is one mount's count of token requests by outcome
// and Manus code (requestOutcome). The successful series is created at once,
// so it exists from the first scrape.
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
// label takes only codes Manus or OAuth2 document, so an upstream cannot
// grow the series without bound or put arbitrary text in a label.
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
