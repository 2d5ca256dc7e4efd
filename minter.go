package manus

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/hashicorp/go-hclog"
)

// retryPolicy bounds how hard one mint tries. The budget keeps a mint,
// retries included, well inside Vault's default 90s request limit.
type retryPolicy struct {
	attempts  int           // total attempts per mint
	baseDelay time.Duration // before the second attempt, doubled after
	maxDelay  time.Duration // cap on one back-off delay
	budget    time.Duration // cap on the whole mint

	// sleep waits d or until ctx ends; tests replace it.
	sleep func(ctx context.Context, d time.Duration) error
}

var defaultRetryPolicy = retryPolicy{
	attempts:  4,
	baseDelay: 500 * time.Millisecond,
	maxDelay:  8 * time.Second,
	budget:    45 * time.Second,
	sleep:     sleepContext,
}

// delay is the jittered exponential back-off before attempt n+1 (n >= 1):
// a random point in the upper half of base*2^(n-1), capped at maxDelay.
func (p retryPolicy) delay(n int) time.Duration {
	d := cappedDoubling(p.baseDelay, p.maxDelay, n-1)
	return d/2 + rand.N(d/2+1) //nolint:gosec // G404: jitter needs spread, not unpredictability
}

func sleepContext(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// minter mints a token for the cache: it retries transient failures, logs
// each mint and failure, and counts them. It never logs a token or secret.
type minter struct {
	client   tokenMinter // one attempt
	clientID string      // as safe to log
	logger   hclog.Logger
	stats    *mountStats
	policy   retryPolicy
	clock    func() time.Time
}

func (m *minter) mintToken(ctx context.Context) (*accessToken, error) {
	ctx, cancel := context.WithTimeout(ctx, m.policy.budget)
	defer cancel()
	started := time.Now()
	for attempt := 1; ; attempt++ {
		tok, err := m.client.mintToken(ctx)
		m.stats.recordRequest(err)
		if err == nil {
			m.stats.mints.Add(1)
			m.stats.mintDuration.Observe(time.Since(started).Seconds())
			m.logger.Info("minted a Manus access token", "client_id", m.clientID,
				"expires_at", tok.expiresAtText(), "lifetime", tok.lifetime().String(),
				"attempts", attempt, "took", since(started))
			return tok, nil
		}
		m.stats.failedAttempts.Add(1)
		m.stats.recordFailure(err, m.clock())
		delay, retry := m.nextDelay(ctx, err, attempt)
		if !retry {
			m.stats.mintFailures.Add(1)
			m.logger.Warn("minting a Manus access token failed", append(failureFields(err),
				"client_id", m.clientID, "attempts", attempt, "took", since(started))...)
			return nil, err
		}
		m.stats.retries.Add(1)
		m.logger.Debug("token request failed; retrying", append(failureFields(err),
			"client_id", m.clientID, "attempt", attempt, "retry_in", delay.Round(time.Millisecond).String())...)
		if m.policy.sleep(ctx, delay) != nil {
			m.stats.mintFailures.Add(1)
			return nil, err
		}
	}
}

// nextDelay decides whether attempt n's failure is worth another attempt and
// how long to wait first. Only transient failures are retried, never an
// answer that says the request or credentials are wrong.
func (m *minter) nextDelay(ctx context.Context, err error, attempt int) (time.Duration, bool) {
	upErr, ok := asUpstreamError(err)
	if attempt >= m.policy.attempts || !ok || !upErr.retryable() || ctx.Err() != nil {
		return 0, false
	}
	// A Retry-After longer than our own longest pause ends this mint; the
	// failure back-off then keeps reads from asking again too soon.
	if upErr.retryAfter > m.policy.maxDelay {
		return 0, false
	}
	delay := max(m.policy.delay(attempt), upErr.retryAfter)
	// Give up rather than start an attempt the budget cannot finish.
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < delay+time.Second {
		return 0, false
	}
	return delay, true
}

// since is the time elapsed since t for a log line. Durations are logged as
// strings: through the plugin's JSON log stream Vault would show numbers of
// nanoseconds.
func since(t time.Time) string { return time.Since(t).Round(time.Millisecond).String() }

// failureFields describes an error for a structured log line.
func failureFields(err error) []any {
	upErr, ok := asUpstreamError(err)
	if !ok {
		return []any{"error", err.Error()}
	}
	fields := []any{"error", upErr.Error()}
	if upErr.status != 0 {
		fields = append(fields, "http_status", upErr.status)
	}
	if upErr.code != "" {
		fields = append(fields, "manus_code", upErr.code)
	}
	return fields
}

// cappedDoubling is first doubled n times (n <= 0: first), at most limit.
// The loop stops at the limit, so no n can overflow it.
func cappedDoubling(first, limit time.Duration, n int) time.Duration {
	d := first
	for ; n > 0 && d < limit; n-- {
		d *= 2
	}
	return min(d, limit)
}
