package manus

import (
	"testing"
	"time"
)

// The token's own arithmetic, judged at instants the tests choose: no
// backend, no cache, no clock but the one passed in.

// hourToken is a one-hour token minted at a fixed instant.
func hourToken() *accessToken {
	return newAccessToken("t", time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC), time.Hour)
}

func TestNewAccessTokenKeepsOnlyTheWallClock(t *testing.T) {
	tok := newAccessToken("t", time.Now(), time.Hour) // time.Now carries a monotonic reading
	if hasMonotonicReading(tok.MintedAt) || hasMonotonicReading(tok.ExpiresAt) {
		t.Fatalf("minted %s, expires %s: a monotonic reading survived", tok.MintedAt, tok.ExpiresAt)
	}
	if tok.lifetime() != time.Hour {
		t.Fatalf("lifetime = %s", tok.lifetime())
	}
}

func TestExpiresInCountsWholeSecondsAndNeverGoesNegative(t *testing.T) {
	tok := hourToken()
	for _, tc := range []struct {
		elapsed time.Duration
		want    int64
	}{{0, 3600}, {1500 * time.Millisecond, 3598}, {time.Hour, 0}, {2 * time.Hour, 0}} {
		if got := tok.expiresIn(tok.MintedAt.Add(tc.elapsed)); got != tc.want {
			t.Errorf("after %s: expires_in = %d, want %d", tc.elapsed, got, tc.want)
		}
	}
	if got := tok.expiresAtText(); got != "2026-11-29T13:00:00Z" {
		t.Errorf("expires_at = %q", got)
	}
}

// TestLeaseTTLOfAnHourToken: the lease ends the safety margin (a minute for
// an hour token) before the token, in whole seconds, and is zero once less
// than a second of lease is left.
func TestLeaseTTLOfAnHourToken(t *testing.T) {
	tok := hourToken()
	for _, tc := range []struct {
		elapsed, want time.Duration
	}{
		{0, 59 * time.Minute},
		{40 * time.Minute, 19 * time.Minute},
		{58*time.Minute + 58*time.Second, 2 * time.Second},
		{58*time.Minute + 59*time.Second, time.Second},
		{58*time.Minute + 59*time.Second + 400*time.Millisecond, time.Second}, // 0.6 s rounds up
		{58*time.Minute + 59*time.Second + 600*time.Millisecond, 0},
		{time.Hour, 0},
	} {
		if got := tok.leaseTTL(tok.MintedAt.Add(tc.elapsed)); got != tc.want {
			t.Errorf("after %s: lease = %s, want %s", tc.elapsed, got, tc.want)
		}
	}
}

// TestRefreshPointAndFreshness: a token is fresh until its remaining life
// reaches the refresh threshold, which is capped at half the lifetime and
// lifted to the least life that can still be served.
func TestRefreshPointAndFreshness(t *testing.T) {
	for _, tc := range []struct {
		name               string
		lifetime           time.Duration
		threshold          time.Duration
		wantRefreshAfter   time.Duration // from the mint
		wantRotationPeriod time.Duration
	}{
		{"default threshold", time.Hour, defaultRefreshThreshold, 50 * time.Minute, 50 * time.Minute},
		{"threshold above half the life", 20 * time.Minute, 15 * time.Minute, 10 * time.Minute, 10 * time.Minute},
		{"threshold above half an hour", time.Hour, 45 * time.Minute, 30 * time.Minute, 30 * time.Minute},
		// 1 s threshold: the least servable life (1 s slack + 1 m margin
		// + 0.5 s) wins.
		{"threshold below the servable life", time.Hour, time.Second, time.Hour - 61500*time.Millisecond, time.Hour - 61500*time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := newAccessToken("t", time.Unix(1_700_000_000, 0), tc.lifetime)
			refreshAt := tok.refreshAt(tc.threshold)
			if got := refreshAt.Sub(tok.MintedAt); got != tc.wantRefreshAfter {
				t.Fatalf("refresh point %s after the mint, want %s", got, tc.wantRefreshAfter)
			}
			if got := tok.rotationPeriod(tc.threshold); got != tc.wantRotationPeriod {
				t.Fatalf("rotation period = %s, want %s", got, tc.wantRotationPeriod)
			}
			if !tok.isFresh(refreshAt.Add(-time.Nanosecond), tc.threshold) || tok.isFresh(refreshAt, tc.threshold) {
				t.Fatal("freshness does not end exactly at the refresh point")
			}
			if !tok.servableAt(refreshAt) {
				t.Fatal("a token at its refresh point can no longer be served: the stale fallback has nothing to serve")
			}
		})
	}
}

// TestServableUntilTheLastLeasableSecond: a stale token is served while a
// response built a second later still gets a lease of a second.
func TestServableUntilTheLastLeasableSecond(t *testing.T) {
	tok := hourToken()
	last := tok.ExpiresAt.Add(-tok.minServableLife())
	if !tok.servableAt(last) {
		t.Fatalf("not servable with %s left", tok.minServableLife())
	}
	if tok.servableAt(last.Add(time.Second)) {
		t.Fatalf("servable with %s left", tok.minServableLife()-time.Second)
	}
	if tok.leaseTTL(last.Add(responseSlack)) < time.Second {
		t.Fatal("the last servable response would get no lease")
	}
}

// TestRereadInOfAFreshToken: a non-leased reader comes back after the
// refresh point, within a tenth of the threshold (at most a minute), while
// the token could still back a lease.
func TestRereadInOfAFreshToken(t *testing.T) {
	tok := hourToken()
	now := tok.MintedAt.Add(7 * time.Minute)
	refreshIn := tok.refreshAt(defaultRefreshThreshold).Sub(now) // 43 min
	seen := map[time.Duration]bool{}
	for range 500 {
		wait := tok.freshRereadIn(now, defaultRefreshThreshold)
		if wait%time.Second != 0 || wait < refreshIn || wait > refreshIn+maxRereadSpread {
			t.Fatalf("reread in %s, want whole seconds in [%s, %s]", wait, refreshIn, refreshIn+maxRereadSpread)
		}
		seen[wait] = true
	}
	if len(seen) < 30 {
		t.Fatalf("500 readers got only %d distinct waits: the fleet is not spread", len(seen))
	}
	// Near expiry the lease, not the refresh point, bounds the wait.
	late := tok.ExpiresAt.Add(-90 * time.Second)
	if wait := tok.freshRereadIn(late, 30*time.Minute); wait != time.Second {
		t.Fatalf("reread in %s with 90 s of life left and the refresh point passed, want 1 s", wait)
	}
}

// TestStaleRereadInEndsWithTheBackoff: a reader served a stale token comes
// back when the failure back-off ends, never past the lease, and not sooner
// than a second.
func TestStaleRereadInEndsWithTheBackoff(t *testing.T) {
	tok := hourToken()
	now := tok.MintedAt.Add(52 * time.Minute) // past the refresh point, 8 min left
	for _, tc := range []struct {
		backoffEnd time.Time
		want       time.Duration
	}{
		{now.Add(4 * time.Second), 4 * time.Second},
		{now.Add(4*time.Second + time.Millisecond), 5 * time.Second}, // rounded up
		{now.Add(-time.Second), time.Second},                         // already over
		{time.Time{}, time.Second},                                   // none
		{now.Add(time.Hour), 7*time.Minute - 3*time.Second},          // capped by the lease minus 3 s
	} {
		if got := tok.staleRereadIn(now, tc.backoffEnd); got != tc.want {
			t.Errorf("back-off ending %s from now: reread in %s, want %s", tc.backoffEnd.Sub(now), got, tc.want)
		}
	}
}

func TestLeaseNeverOutlivesToken(t *testing.T) {
	for _, lifetime := range []time.Duration{5 * time.Second, 20 * time.Second, time.Minute, time.Hour, 24 * time.Hour} {
		tok := &accessToken{MintedAt: time.Unix(0, 0), ExpiresAt: time.Unix(0, 0).Add(lifetime)}
		for elapsed := time.Duration(0); elapsed < lifetime; elapsed += lifetime / 97 {
			now := tok.MintedAt.Add(elapsed)
			ttl := tok.leaseTTL(now)
			if ttl != 0 && (ttl < time.Second || now.Add(ttl).After(tok.ExpiresAt)) {
				t.Fatalf("lifetime %s, elapsed %s: lease %s ends after the token", lifetime, elapsed, ttl)
			}
			if ttl%time.Second != 0 {
				t.Fatalf("lease %s is not whole seconds", ttl)
			}
		}
	}
}

func TestSafetyMarginScalesWithLifetime(t *testing.T) {
	cases := map[time.Duration]time.Duration{
		time.Hour:        time.Minute,
		2 * time.Hour:    time.Minute, // capped
		30 * time.Minute: 30 * time.Second,
		20 * time.Second: 333333333 * time.Nanosecond,
	}
	for lifetime, want := range cases {
		tok := &accessToken{MintedAt: time.Unix(0, 0), ExpiresAt: time.Unix(0, 0).Add(lifetime)}
		if got := tok.safetyMargin(); got != want {
			t.Errorf("safety margin for %s = %s, want %s", lifetime, got, want)
		}
	}
}

// TestAgentRereadAlwaysGetsNewToken checks the arithmetic of
// docs/caching-and-leases.md: Vault Agent re-reads a non-renewable lease at
// 85-95% of its duration, and with the default threshold that read always
// finds the token due for refresh.
func TestAgentRereadAlwaysGetsNewToken(t *testing.T) {
	for _, age := range []time.Duration{0, 10 * time.Minute, 49 * time.Minute} {
		for _, fraction := range []float64{0.85, 0.90, 0.95} {
			tok := &accessToken{MintedAt: time.Unix(0, 0), ExpiresAt: time.Unix(0, 0).Add(time.Hour)}
			readAt := tok.MintedAt.Add(age)
			if !tok.isFresh(readAt, defaultRefreshThreshold) {
				continue // this read would have minted itself
			}
			lease := tok.leaseTTL(readAt)
			rereadAt := readAt.Add(time.Duration(float64(lease) * fraction))
			if tok.isFresh(rereadAt, defaultRefreshThreshold) {
				t.Errorf("token read at age %s (lease %s) is still served at the Agent's re-read (%.0f%%)", age, lease, fraction*100)
			}
		}
	}
}
