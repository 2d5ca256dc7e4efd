package manus

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/hashicorp/go-hclog"
)

// tokenMinter makes a token: one request (*manusClient) or with retries
// (*minter).
type tokenMinter interface {
	mintToken(ctx context.Context) (*accessToken, error)
}

// retryPolicy bounds one mint, whose budget keeps it inside Vault's 90 s
// request limit.
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

// delay is the jittered back-off before attempt n+1: the upper half of
// base*2^(n-1), capped.
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

// minter retries transient failures, and logs and counts each mint.
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

// nextDelay decides whether a transient failure gets another attempt, and
// after how long.
func (m *minter) nextDelay(ctx context.Context, err error, attempt int) (time.Duration, bool) {
	upErr, ok := asUpstreamError(err)
	if attempt >= m.policy.attempts || !ok || !upErr.retryable() || ctx.Err() != nil {
		return 0, false
	}
	// A longer Retry-After ends the mint; the failure back-off honours it.
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

// since is a log line's duration, as a string: through the plugin's JSON
// log stream Vault would show nanoseconds.
func since(t time.Time) string { return time.Since(t).Round(time.Millisecond).String() }

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
