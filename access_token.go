package manus

import (
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// The lease arithmetic below is documented, with worked examples, in
// docs/caching-and-leases.md; docs_numbers_test.go keeps the two in step.
const (
	// safetyMarginFraction and maxSafetyMargin set the gap between a
	// lease's end and the token's expiry: a sixtieth of the token's
	// lifetime, at most a minute, so that Vault and the lease holder stop
	// using a one-hour token a minute before Manus would reject it.
	safetyMarginFraction = 60
	maxSafetyMargin      = time.Minute

	// responseSlack is how long a read may take between judging the token
	// fresh and computing its lease.
	responseSlack = time.Second

	// maxRereadSpread caps the window over which non-leased readers are
	// told to come back after the refresh point.
	maxRereadSpread = time.Minute
)

// accessToken is one bearer token minted from Manus and the arithmetic of
// serving it: its lease, its refresh point, when a reader should come back.
// It is never modified once cached: readers share it without locks. Every
// method takes the instant it judges at, so tests drive it with a fake clock.
type accessToken struct {
	AccessToken string
	MintedAt    time.Time
	ExpiresAt   time.Time

	// expiresAtRFC3339 caches the formatted expiry every read returns.
	expiresAtRFC3339 atomic.Pointer[string]
}

// newAccessToken is a token minted at mintedAt that lives lifetime. Both
// instants are wall-clock only (see wallClock), whatever clock mintedAt was
// read from.
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

// expiresIn is the whole seconds of life the token has left at now, never
// negative.
func (t *accessToken) expiresIn(now time.Time) int64 {
	return max(int64(t.ExpiresAt.Sub(now)/time.Second), 0)
}

func (t *accessToken) lifetime() time.Duration { return t.ExpiresAt.Sub(t.MintedAt) }

// safetyMargin is kept between a lease's end and the token's expiry: a
// sixtieth of the lifetime, at most a minute.
func (t *accessToken) safetyMargin() time.Duration {
	return min(maxSafetyMargin, t.lifetime()/safetyMarginFraction)
}

// leaseTTL is the Vault lease for a read at now: the remaining life minus the
// safety margin, rounded to whole seconds yet never past the expiry. It is
// zero when the token cannot back a lease of at least one second.
func (t *accessToken) leaseTTL(now time.Time) time.Duration {
	remaining := t.ExpiresAt.Sub(now)
	ttl := min((remaining - t.safetyMargin()).Round(time.Second), remaining.Truncate(time.Second))
	if ttl < time.Second {
		return 0
	}
	return ttl
}

// effectiveRefreshThreshold is the remaining life below which the token is
// replaced: the configured threshold, but never more than half the
// lifetime, so short tokens are still reused.
func (t *accessToken) effectiveRefreshThreshold(configured time.Duration) time.Duration {
	return min(configured, t.lifetime()/2)
}

// servableAt reports whether a response built at now (or up to
// responseSlack later) can still give the token a lease of a second.
func (t *accessToken) servableAt(now time.Time) bool {
	return t.leaseTTL(now.Add(responseSlack)) > 0
}

// minServableLife is the least remaining life that still gives a lease of
// a second (leaseTTL > 0) to a response built up to responseSlack later.
// leaseTTL rounds the life left after the margin to the nearest second, so
// the margin plus half a second is the least that rounds up to a second;
// leaseTTL also never passes the remaining life truncated, so the life left
// must be a whole second at least.
func (t *accessToken) minServableLife() time.Duration {
	return responseSlack + max(t.safetyMargin()+time.Second/2, time.Second)
}

// refreshAt is when the token is due for replacement: when its remaining
// life reaches the refresh threshold, or the least it can be served with,
// whichever comes first.
func (t *accessToken) refreshAt(configuredThreshold time.Duration) time.Time {
	return t.ExpiresAt.Add(-max(t.effectiveRefreshThreshold(configuredThreshold), t.minServableLife()))
}

// isFresh reports whether the token should be served without minting.
func (t *accessToken) isFresh(now time.Time, configuredThreshold time.Duration) bool {
	return now.Before(t.refreshAt(configuredThreshold))
}

// rotationPeriod is the time between a token's mint and its refresh point:
// how often a reader sees the token change.
func (t *accessToken) rotationPeriod(configuredThreshold time.Duration) time.Duration {
	return t.refreshAt(configuredThreshold).Sub(t.MintedAt)
}

// freshRereadIn is how long a non-leased reader served this fresh token at
// now should keep it before reading again (the rotating-secret contract's ttl;
// Vault Agent reads again exactly one second after it).
//
// Until the refresh point, plus a random whole number of seconds up to a
// tenth of the refresh threshold (at most maxRereadSpread), so a fleet that
// read together does not come back in the same second. Every re-read then
// lands at or after the refresh point and gets a new token; since the
// threshold is at least ten spreads, the old token still has most of its
// threshold left. Never past servableUntil, and at least a second.
func (t *accessToken) freshRereadIn(now time.Time, configuredThreshold time.Duration) time.Duration {
	refreshAt := t.refreshAt(configuredThreshold)
	until := refreshAt.Add(rereadJitter(t.effectiveRefreshThreshold(configuredThreshold)))
	// Only a threshold below the least servable life leaves no room
	// between the two; then the refresh point wins, as the reader must
	// come back to a new token.
	return wholeSecondsUntil(now, latest(earliest(until, t.servableUntil(now)), refreshAt))
}

// staleRereadIn is freshRereadIn's counterpart for a token served after its refresh failed:
// until the failure back-off ends at backoffEnd, when a mint may be tried
// again, never past servableUntil, and at least a second.
func (t *accessToken) staleRereadIn(now, backoffEnd time.Time) time.Duration {
	return wholeSecondsUntil(now, earliest(backoffEnd, t.servableUntil(now)))
}

// servableUntil is the last instant a non-leased reader served at now should
// come back by: the reader comes back ttl+1 seconds later, ttl is the wait
// rounded up, and a read serves a token only while it can back a lease of a
// second after responseSlack (servableAt), so three seconds under the lease a
// leased read would get has the reader back while this token can still be
// served.
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

// rereadJitter is a random whole number of seconds from 0 to a tenth of
// threshold, capped at maxRereadSpread.
func rereadJitter(threshold time.Duration) time.Duration {
	spread := min(threshold/10, maxRereadSpread) / time.Second
	return time.Duration(rand.N(int64(spread)+1)) * time.Second //nolint:gosec // G404: spreading load needs no unpredictability
}
