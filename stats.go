package manus

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// mountStats counts what one mount's backend has done since the process
// started serving it; fields are named after their series' labels.
type mountStats struct {
	mints          atomic.Int64 // token_mints_total{outcome="success"}
	mintFailures   atomic.Int64 // token_mints_total{outcome="failure"}
	failedAttempts atomic.Int64 // token requests that failed
	retries        atomic.Int64 // token requests that were retries
	reads          readCounts
	forwarded      forwardCounts
	rejected       atomic.Int64 // cached tokens Manus rejected

	requests     *prometheus.CounterVec // token requests by outcome and Manus code
	mintDuration prometheus.Histogram   // how long successful mints took

	mu        sync.Mutex
	lastError *failureRecord
}

type readCounts struct {
	cache, minted, stale, failed atomic.Int64
}

type forwardCounts struct {
	mint, lease atomic.Int64
}

func newMountStats() *mountStats {
	return &mountStats{requests: newTokenRequestsCounter(), mintDuration: newMintDurationHistogram()}
}

// countRead counts one token read by how it was answered.
func (s *mountStats) countRead(outcome string, err error) {
	switch reason := forwardReason(err); {
	case reason == forwardForMint:
		s.forwarded.mint.Add(1)
	case reason == forwardForLease:
		s.forwarded.lease.Add(1)
	case err != nil:
		s.reads.failed.Add(1)
	case outcome == readMinted:
		s.reads.minted.Add(1)
	case outcome == readStale:
		s.reads.stale.Add(1)
	default:
		s.reads.cache.Add(1)
	}
}

func (s *mountStats) recordRequest(err error) {
	key := requestOutcome(err)
	s.requests.WithLabelValues(key.outcome, key.code).Inc()
}

// failureRecord is the last failure, in the plugin's own words.
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
	s.setLastFailure(rec)
}

// recordRejection counts a token the users API rejected (how: "HTTP 401
// ...") and makes it the last failure.
func (s *mountStats) recordRejection(result probeResult, how string, at time.Time) {
	s.rejected.Add(1)
	s.setLastFailure(&failureRecord{
		message:    "the users API rejected the cached token (" + how + "); it was dropped on every node",
		code:       result.code,
		httpStatus: result.httpStatus,
		at:         at,
	})
}

func (s *mountStats) setLastFailure(rec *failureRecord) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastError = rec
}

func (s *mountStats) lastFailure() *failureRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastError
}
