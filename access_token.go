package manus

import (
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// The arithmetic below, with worked examples: docs/caching-and-leases.md.
const (
	// safetyMarginFraction and maxSafetyMargin: a lease ends a sixtieth of
	// the token's lifetime, at most a minute, before Manus rejects it.
	safetyMarginFraction = 60
	maxSafetyMargin      = time.Minute

	// responseSlack is how long a read may take between judging the token
	// fresh and computing its lease.
	responseSlack = time.Second

	// maxRereadSpread caps the spread of non-leased readers' re-reads.
	maxRereadSpread = time.Minute
)

// accessToken is one bearer token and the arithmetic of serving it. It is
// never modified once cached, so readers share it without locks; every
// method takes the instant it judges at.
type accessToken struct {
	AccessToken string
	MintedAt    time.Time
	ExpiresAt   time.Time

	// expiresAtRFC3339 caches the formatted expiry every read returns.
	expiresAtRFC3339 atomic.Pointer[string]
}

// newAccessToken is a token minted at mintedAt that lives lifetime, on the
// wall clock only (see wallClock).
func newAccessToken(value string, mintedAt time.Time, lifetime time.Duration) *accessToken {
	mintedAt = mintedAt.Round(0)
	return &accessToken{AccessToken: value, MintedAt: mintedAt, ExpiresAt: mintedAt.Add(lifetime)}
}

// expiresAtText is ExpiresAt as every read shows it, formatted once.
func (t *accessToken) expiresAtText() string {
	if s := t.expiresAtRFC3339.Load(); s != nil {
		return *s
	}
	s := formatTime(t.ExpiresAt)
	t.expiresAtRFC3339.Store(&s)
	return s
}

// formatTime is how the plugin shows an instant: RFC 3339 in UTC.
func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// expiresIn is the whole seconds of life left at now, never negative.
func (t *accessToken) expiresIn(now time.Time) int64 {
	return max(int64(t.ExpiresAt.Sub(now)/time.Second), 0)
}

func (t *accessToken) lifetime() time.Duration { return t.ExpiresAt.Sub(t.MintedAt) }

func (t *accessToken) safetyMargin() time.Duration {
	return min(maxSafetyMargin, t.lifetime()/safetyMarginFraction)
}

// leaseTTL is the lease for a read at now: the life left less the safety
// margin, in whole seconds, never past the expiry; 0 below a second.
func (t *accessToken) leaseTTL(now time.Time) time.Duration {
	remaining := t.ExpiresAt.Sub(now)
	ttl := min((remaining - t.safetyMargin()).Round(time.Second), remaining.Truncate(time.Second))
	if ttl < time.Second {
		return 0
	}
	return ttl
}

// effectiveRefreshThreshold is capped at half the lifetime, so short tokens
// are still reused.
func (t *accessToken) effectiveRefreshThreshold(configured time.Duration) time.Duration {
	return min(configured, t.lifetime()/2)
}

// servableAt reports whether a response built up to responseSlack after now
// can still give the token a lease of a second.
func (t *accessToken) servableAt(now time.Time) bool {
	return t.leaseTTL(now.Add(responseSlack)) > 0
}

// minServableLife is the least life left for which servableAt holds:
// leaseTTL rounds the life past the margin, so margin + 0.5 s, and at least
// a whole second.
func (t *accessToken) minServableLife() time.Duration {
	return responseSlack + max(t.safetyMargin()+time.Second/2, time.Second)
}

// refreshAt is when the token is due for replacement: at the refresh
// threshold, or the least life it can be served with, whichever is first.
func (t *accessToken) refreshAt(configuredThreshold time.Duration) time.Time {
	return t.ExpiresAt.Add(-max(t.effectiveRefreshThreshold(configuredThreshold), t.minServableLife()))
}

func (t *accessToken) isFresh(now time.Time, configuredThreshold time.Duration) bool {
	return now.Before(t.refreshAt(configuredThreshold))
}

// rotationPeriod is how often a reader sees the token change.
func (t *accessToken) rotationPeriod(configuredThreshold time.Duration) time.Duration {
	return t.refreshAt(configuredThreshold).Sub(t.MintedAt)
}

// freshRereadIn is the ttl a non-leased reader of this fresh token gets:
// until the refresh point plus a jitter, so a fleet that read together does
// not come back together and every re-read finds a new token; never past
// servableUntil, at least a second.
func (t *accessToken) freshRereadIn(now time.Time, configuredThreshold time.Duration) time.Duration {
	refreshAt := t.refreshAt(configuredThreshold)
	until := refreshAt.Add(rereadJitter(t.effectiveRefreshThreshold(configuredThreshold)))
	// A threshold below the least servable life leaves no room between
	// the two: the refresh point wins.
	return wholeSecondsUntil(now, latest(earliest(until, t.servableUntil(now)), refreshAt))
}

// staleRereadIn is the ttl of a token served after its refresh failed: until
// the back-off ends, never past servableUntil, at least a second.
func (t *accessToken) staleRereadIn(now, backoffEnd time.Time) time.Duration {
	return wholeSecondsUntil(now, earliest(backoffEnd, t.servableUntil(now)))
}

// servableUntil is when a non-leased reader must be back to still find this
// token servable: Vault Agent comes back ttl+1 s later, ttl rounded up, and
// servableAt wants a second after responseSlack; hence 3 s under the lease.
func (t *accessToken) servableUntil(now time.Time) time.Time {
	return now.Add(t.leaseTTL(now) - 3*time.Second)
}

// wholeSecondsUntil is the wait from now to until rounded up to whole
// seconds, at least one: a ttl of 0 makes older Agents re-read every second.
func wholeSecondsUntil(now, until time.Time) time.Duration {
	return max((until.Sub(now) + time.Second - 1).Truncate(time.Second), time.Second)
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// rereadJitter is 0 to a tenth of threshold, capped, in whole seconds.
func rereadJitter(threshold time.Duration) time.Duration {
	spread := min(threshold/10, maxRereadSpread) / time.Second
	return time.Duration(rand.N(int64(spread)+1)) * time.Second //nolint:gosec // G404: spreading load needs no unpredictability
}
