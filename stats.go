package manus

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// mountStats counts what one mount's backend has done since the plugin
// process started serving it, for the status path.
type mountStats struct {
	mints          atomic.Int64 // tokens minted
	failedAttempts atomic.Int64 // token requests that failed
	retries        atomic.Int64 // token requests that were retries
	cacheHits      atomic.Int64 // reads served the cached token without minting
	staleServes    atomic.Int64 // reads served a cached token after a refresh failed

	// For the metrics path (metrics.go).
	mintFailures atomic.Int64           // mints that failed, all attempts spent
	readsMinted  atomic.Int64           // reads that waited for a mint and got its token
	readsFailed  atomic.Int64           // token reads answered with an error
	requests     *prometheus.CounterVec // token requests by outcome and Manus code (newTokenRequestsCounter)
	mintDuration prometheus.Histogram   // how long successful mints took, retries included (newMintDurationHistogram)

	mu        sync.Mutex
	lastError *failureRecord
}

// newMountStats is a mount's counters at zero, with the two series the
// minter records straight into Prometheus types (metrics.go).
func newMountStats() *mountStats {
	return &mountStats{requests: newTokenRequestsCounter(), mintDuration: newMintDurationHistogram()}
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
	var upErr *upstreamError
	if errors.As(err, &upErr) {
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
