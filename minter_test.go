package manus

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/manus-community/vault-plugin-secrets-manus/internal/standin"
)

func TestTransientFailuresAreRetried(t *testing.T) {
	e := newTestEnv(t)
	e.configure(map[string]any{"verify_credentials": false})
	e.manus.FailNext(standin.Unavailable(), standin.Fault{Status: 500, Body: `{"code":"INTERNAL"}`}, stall(0))
	resp := e.mustReadToken()
	if !e.manus.IsValid(accessTokenOf(resp)) || e.manus.Requests() != 3 {
		t.Fatalf("requests = %d; want two failures retried into a third, successful attempt", e.manus.Requests())
	}
	if got := e.b.stats.retries.Load(); got != 2 {
		t.Fatalf("retries counted = %d, want 2", got)
	}
}

// recordingSleeps returns a retry policy whose sleeps return at once and are
// recorded.
func recordingSleeps(maxDelay time.Duration) (retryPolicy, func() []time.Duration) {
	var mu sync.Mutex
	var slept []time.Duration
	p := testRetryPolicy
	p.maxDelay = maxDelay
	p.sleep = func(_ context.Context, d time.Duration) error {
		mu.Lock()
		defer mu.Unlock()
		slept = append(slept, d)
		return nil
	}
	return p, func() []time.Duration {
		mu.Lock()
		defer mu.Unlock()
		return append([]time.Duration(nil), slept...)
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	e := newTestEnv(t)
	policy, slept := recordingSleeps(8 * time.Second)
	e.b.retry = policy
	e.configure(map[string]any{"verify_credentials": false})
	e.manus.FailNext(standin.Fault{Status: 429, Header: map[string]string{"Retry-After": "3"}})
	e.mustReadToken()
	if got := slept(); len(got) != 1 || got[0] != 3*time.Second {
		t.Fatalf("slept %v before retrying; want the 3s Retry-After", got)
	}
}

func TestLongRetryAfterEndsMintAndStretchesBackoff(t *testing.T) {
	e := newTestEnv(t)
	policy, slept := recordingSleeps(8 * time.Second)
	e.b.retry = policy
	e.configure(map[string]any{"verify_credentials": false})
	e.manus.SetOutage(standin.Fault{Status: 429, Header: map[string]string{"Retry-After": "120"}})
	status, msg := e.readTokenError()
	if status != http.StatusBadGateway || !strings.Contains(msg, "2m0s") {
		t.Fatalf("got %d %q", status, msg)
	}
	if len(slept()) != 0 || e.manus.Requests() != 1 {
		t.Fatal("the plugin waited out a 2-minute Retry-After inside one read")
	}
	e.clock.Advance(119 * time.Second)
	e.readTokenError()
	if e.manus.Requests() != 1 {
		t.Fatal("asked Manus again before its Retry-After passed")
	}
	e.clock.Advance(2 * time.Second)
	e.readTokenError()
	if e.manus.Requests() != 2 {
		t.Fatalf("requests = %d; want one new attempt after Retry-After", e.manus.Requests())
	}
}

func TestRetryDelaysAreJitteredExponential(t *testing.T) {
	p := defaultRetryPolicy
	for n := 1; n <= 6; n++ {
		full := min(p.baseDelay<<(n-1), p.maxDelay)
		for range 50 {
			if d := p.delay(n); d < full/2 || d > full {
				t.Fatalf("delay(%d) = %s, want within [%s, %s]", n, d, full/2, full)
			}
		}
	}
}

// fakeAttempter fails every attempt with err.
type fakeAttempter struct {
	mu    sync.Mutex
	calls int
	err   error
}

func (f *fakeAttempter) mintToken(ctx context.Context) (*accessToken, error) {
	f.mu.Lock()
	f.calls++
	f.mu.Unlock()
	return nil, f.err
}

func TestMintStaysWithinBudget(t *testing.T) {
	attempter := &fakeAttempter{err: &upstreamError{kind: failUnavailable, status: 503}}
	m := &minter{
		client: attempter, logger: hclog.NewNullLogger(), stats: newMountStats(), clock: wallClock,
		policy: retryPolicy{attempts: 100, baseDelay: 200 * time.Millisecond, maxDelay: 400 * time.Millisecond, budget: 2 * time.Second, sleep: sleepContext},
	}
	started := time.Now()
	if _, err := m.mintToken(context.Background()); err == nil {
		t.Fatal("mint succeeded")
	}
	if took := time.Since(started); took > 2*time.Second {
		t.Fatalf("mint took %s, over its 2s budget", took)
	}
	if attempter.calls < 2 || attempter.calls >= 100 {
		t.Fatalf("%d attempts; want retries cut short by the budget", attempter.calls)
	}
}

func TestDefaultMintBoundIsInsideVaultRequestTimeout(t *testing.T) {
	// Vault ends a request after 90s by default (max_request_duration).
	worst := defaultRetryPolicy.budget
	if worst > 90*time.Second/2 {
		t.Fatalf("mint budget %s is not well inside Vault's 90s request limit", worst)
	}
	if maxRequestTimeout+readerWaitSlack >= worst {
		t.Fatal("a read could wait longer than a whole mint")
	}
}

// TestDefaultPolicyAsDocumented: a transient failure gets
// defaultRetryPolicy.attempts attempts in all, and a Retry-After of up to
// maxDelay is waited out while a longer one ends the mint at once
// (docs/failure-behaviour.md#retries).
func TestDefaultPolicyAsDocumented(t *testing.T) {
	for _, tc := range []struct {
		retryAfter time.Duration
		attempts   int
	}{
		{0, defaultRetryPolicy.attempts},
		{defaultRetryPolicy.maxDelay, defaultRetryPolicy.attempts},
		{defaultRetryPolicy.maxDelay + time.Second, 1},
	} {
		var slept []time.Duration
		policy := defaultRetryPolicy
		policy.sleep = func(_ context.Context, d time.Duration) error { slept = append(slept, d); return nil }
		attempter := &fakeAttempter{err: &upstreamError{kind: failRateLimited, status: 429, retryAfter: tc.retryAfter}}
		m := &minter{client: attempter, logger: hclog.NewNullLogger(), stats: newMountStats(), clock: wallClock, policy: policy}
		if _, err := m.mintToken(context.Background()); err == nil || attempter.calls != tc.attempts {
			t.Fatalf("Retry-After %s: %d attempts (%v), want %d", tc.retryAfter, attempter.calls, err, tc.attempts)
		}
		for n, d := range slept {
			if d > max(tc.retryAfter, defaultRetryPolicy.maxDelay) || d < tc.retryAfter {
				t.Errorf("Retry-After %s: waited %s before attempt %d", tc.retryAfter, d, n+2)
			}
		}
	}
}
