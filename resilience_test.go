package manus

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/manus-community/vault-plugin-secrets-manus/internal/standin"
)

func TestTransientFailuresAreRetried(t *testing.T) {
	e := newTestEnv(t)
	e.configure(map[string]any{"verify_credentials": false})
	e.manus.FailNext(standin.Unavailable(), standin.Fault{Status: 500, Body: `{"code":"INTERNAL"}`}, stall(0))
	resp := e.readToken()
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
	e.readToken()
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
		client: attempter, logger: hclog.NewNullLogger(), stats: &mountStats{mintDuration: newMintDurationHistogram()}, clock: wallClock,
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

func TestStaleWhileErrorServesCachedTokenUntilItCannot(t *testing.T) {
	for _, mode := range readModes {
		t.Run(mode.name, func(t *testing.T) { testStaleWhileError(t, mode) })
	}
}

func testStaleWhileError(t *testing.T, mode readMode) {
	e := newTestEnv(t)
	e.configure(mode.config())
	cached := e.manus.Issued()[0]
	e.clock.Advance(55 * time.Minute) // 5 minutes left: due for refresh
	e.manus.SetOutage(standin.Unavailable())

	// checkStale: the cached token, with its warning, held no longer than
	// the lease a leased read gets now (left minus the one-minute margin),
	// which in leased mode is exactly that lease.
	checkStale := func(resp *logical.Response, left time.Duration) {
		t.Helper()
		hold := mode.holdFor(t, resp)
		if accessTokenOf(resp) != cached || len(resp.Warnings) != 1 {
			t.Fatalf("%s left: token cached=%v, warnings %q", left, accessTokenOf(resp) == cached, resp.Warnings)
		}
		if hold > left-60*time.Second || (mode.leased && hold != left-60*time.Second) {
			t.Fatalf("%s left: the reader holds the token for %s", left, hold)
		}
	}
	resp := e.readToken()
	if !strings.Contains(resp.Warnings[0], "HTTP 503") || !strings.Contains(resp.Warnings[0], "cached token") {
		t.Fatalf("warnings = %q; want one saying the refresh failed and why", resp.Warnings)
	}
	checkStale(resp, 300*time.Second)

	// Keep reading through the outage: always the cached token, held for
	// less and less, until it can no longer back a lease.
	for left := 290 * time.Second; left > 61*time.Second; left -= 10 * time.Second {
		e.clock.Advance(10 * time.Second)
		checkStale(e.readToken(), left)
	}
	e.clock.Advance(10 * time.Second) // 51s left, inside the 60s margin
	status, msg := e.readTokenError()
	if status != http.StatusBadGateway || !strings.Contains(msg, "HTTP 503") {
		t.Fatalf("after the token ran out: %d %q; want the outage error", status, msg)
	}
	if got := e.b.stats.staleServes.Load(); got < 20 {
		t.Fatalf("stale serves counted = %d", got)
	}

	// Manus is back: once the back-off window passes, the next read mints.
	e.manus.ClearOutage()
	e.clock.Advance(maxFailureBackoff)
	resp = e.readToken()
	if accessTokenOf(resp) == cached || len(resp.Warnings) != 0 || mode.holdFor(t, resp) < 50*time.Minute {
		t.Fatal("after the outage the read did not mint a new token")
	}
}

func TestFailureBackoffLimitsRequestsDuringOutage(t *testing.T) {
	for _, mode := range readModes {
		t.Run(mode.name, func(t *testing.T) { testFailureBackoff(t, mode) })
	}
}

func testFailureBackoff(t *testing.T, mode readMode) {
	e := newTestEnv(t)
	e.configure(map[string]any{"verify_credentials": false, "leased_reads": mode.leased})
	e.manus.DeleteClient(testClientID) // every agent reads with a deleted credential

	const reads = 1000
	const step = 500 * time.Millisecond
	fastFailures := 0
	for range reads {
		status, msg := e.readTokenError()
		if status != http.StatusBadGateway || !strings.Contains(msg, "INVALID_CLIENT") {
			t.Fatalf("read during outage: %d %q", status, msg)
		}
		if strings.Contains(msg, "waits until") {
			fastFailures++ // answered from the back-off state, without asking Manus
		}
		e.clock.Advance(step)
	}

	// The schedule: windows of 1, 2, 4 ... 32s, then 60s each. Over 500s
	// that admits at most 1 + 6 + (500-63)/60 = 14 mints, one request each
	// (a rejection is never retried).
	allowed := 1
	elapsed, window := time.Duration(0), minFailureBackoff
	for {
		elapsed += window
		if elapsed > reads*step {
			break
		}
		allowed++
		window = min(2*window, maxFailureBackoff)
	}
	got := e.manus.Requests()
	if got > allowed || got < allowed-2 {
		t.Fatalf("%d reads made %d token requests; the back-off schedule allows %d", reads, got, allowed)
	}
	if fastFailures < reads-allowed {
		t.Fatalf("only %d reads failed fast", fastFailures)
	}
}

func TestConfigChangeResetsBackoff(t *testing.T) {
	e := newTestEnv(t)
	e.configure(map[string]any{"verify_credentials": false})
	e.manus.SetOutage(standin.Unavailable())
	for range 5 { // five failed mints: the window is now 16s
		e.readTokenError()
		e.clock.Advance(time.Minute)
	}
	e.readTokenError()
	before := e.manus.Requests()

	e.manus.ClearOutage()
	resp, err := e.writeConfig(map[string]any{"request_timeout": 5, "verify_credentials": false})
	requireOK(t, resp, err)
	e.readToken()
	if e.manus.Requests() != before+1 {
		t.Fatal("the config write did not reset the failure back-off")
	}
}

func TestSuccessfulMintResetsBackoff(t *testing.T) {
	e := newTestEnv(t)
	e.configure(map[string]any{"verify_credentials": false})
	e.manus.DeleteClient(testClientID)
	for range 4 { // four failed mints in the same cache: the window is 8s
		e.readTokenError()
		e.clock.Advance(time.Minute)
	}
	e.manus.AddClient(testClientID, testClientSecret) // credential restored
	e.readToken()

	// The next failure starts again at the shortest window.
	e.clock.Advance(55 * time.Minute)
	e.manus.DeleteClient(testClientID)
	e.readToken() // stale, after one failed mint
	requests := e.manus.Requests()
	e.clock.Advance(minFailureBackoff)
	e.readToken()
	if e.manus.Requests() != requests+1 {
		t.Fatal("a successful mint did not reset the back-off to its shortest window")
	}
}

func TestStalledUpstreamCostsAReadAtMostTheTimeout(t *testing.T) {
	stalled := newTestEnv(t)
	stalled.configure(map[string]any{"verify_credentials": false, "request_timeout": 1})
	stalled.manus.SetOutage(stall(time.Minute))

	healthy := stalled.secondMount()
	other := standin.New()
	other.AddClient(testClientID, testClientSecret)
	server := httptest.NewServer(other)
	defer server.Close()
	healthy.manus = other
	healthy.configure(map[string]any{"verify_credentials": false, "base_url": server.URL})

	var wg sync.WaitGroup
	var stalledTook time.Duration
	wg.Add(1)
	go func() {
		defer wg.Done()
		started := time.Now()
		status, _ := stalled.readTokenError()
		stalledTook = time.Since(started)
		if status != http.StatusGatewayTimeout {
			t.Errorf("stalled read: HTTP %d, want 504", status)
		}
	}()
	time.Sleep(100 * time.Millisecond) // the stalled read is now waiting
	started := time.Now()
	healthy.readToken()
	// The stalled read takes 1.5s; a healthy read held behind it would too.
	if took := time.Since(started); took > time.Second {
		t.Errorf("a stalled Manus on one mount slowed another mount's read to %s", took)
	}
	wg.Wait()
	// The documented bound (request_timeout + 0.5s), with room for a slow
	// machine; an unbounded wait would run into the minute-long stall.
	if bound := time.Second + readerWaitSlack + time.Second; stalledTook > bound {
		t.Fatalf("the stalled read took %s, over the %s bound", stalledTook, bound)
	}
}

// readOnlyStorage refuses writes like a performance standby does.
type readOnlyStorage struct{ logical.Storage }

func (readOnlyStorage) Put(context.Context, *logical.StorageEntry) error { return logical.ErrReadOnly }

func TestTokenIsPersistedAndRestored(t *testing.T) {
	for _, mode := range readModes {
		t.Run(mode.name, func(t *testing.T) { testTokenIsPersistedAndRestored(t, mode) })
	}
}

func testTokenIsPersistedAndRestored(t *testing.T, mode readMode) {
	e := newTestEnv(t)
	e.configure(mode.config())
	minted := accessTokenOf(e.readToken())

	st, err := readStoredToken(context.Background(), e.storage)
	cfg, _ := readConfig(context.Background(), e.storage)
	if err != nil || st == nil || st.AccessToken != minted || st.ConfigGeneration != cfg.Generation {
		t.Fatal("the minted token was not persisted with its config generation")
	}

	// A plugin reload, Vault restart or leader change: a new backend on the
	// same storage reuses the token without minting.
	e.b.Clean(context.Background())
	e.b = e.newBackend()
	e.clock.Advance(10 * time.Minute)
	resp := e.readToken()
	if accessTokenOf(resp) != minted || e.manus.Mints() != 1 {
		t.Fatalf("after a restart: same token %v, mints %d; want the persisted token and no mint", accessTokenOf(resp) == minted, e.manus.Mints())
	}
	// 50 minutes left: a lease of 49, or a re-read once the refresh
	// point (40 minutes away) and its spread of up to a minute have passed.
	switch hold := mode.holdFor(t, resp); {
	case mode.leased && hold != 49*time.Minute,
		!mode.leased && (hold < 40*time.Minute || hold > 41*time.Minute+2*time.Second):
		t.Fatalf("the restored token is held for %s", hold)
	}
	if c := e.b.tokens.Load(); c == nil || !c.restored {
		t.Fatal("the cache does not record that its token came from storage")
	}
}

func TestPersistedTokenOfOldConfigIsNotRestored(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	old := accessTokenOf(e.readToken())
	// Storage still holding a token from the previous credentials (say the
	// delete failed) must not be served under the new ones.
	stored, _ := readStoredToken(context.Background(), e.storage)
	resp, err := e.writeConfig(map[string]any{"request_timeout": 20, "verify_credentials": false})
	requireOK(t, resp, err)
	if err := writeStoredToken(context.Background(), e.storage, stored.token(), stored.ConfigGeneration); err != nil {
		t.Fatal(err)
	}
	e.b.Clean(context.Background())
	e.b = e.newBackend()
	if accessTokenOf(e.readToken()) == old {
		t.Fatal("a token of the previous config was restored")
	}
}

func TestConfigDeleteRemovesPersistedToken(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	if _, err := e.request(logical.DeleteOperation, "config", nil); err != nil {
		t.Fatal(err)
	}
	if st, _ := readStoredToken(context.Background(), e.storage); st != nil {
		t.Fatal("the token of a deleted config stayed in storage")
	}
}

func TestExpiredPersistedTokenIsNotRestored(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.b.Clean(context.Background())
	e.clock.Advance(time.Hour)
	e.b = e.newBackend()
	e.readToken()
	if e.manus.Mints() != 2 {
		t.Fatal("an expired persisted token was not replaced")
	}
}

func TestPersistFailureDoesNotFailRead(t *testing.T) {
	for name, breakStorage := range map[string]func(e *testEnv){
		"storage error": func(e *testEnv) { e.storage.(*logical.InmemStorage).Underlying().FailPut(true) },
		"read-only":     func(e *testEnv) { e.b.storage = readOnlyStorage{e.storage} },
	} {
		t.Run(name, func(t *testing.T) {
			e := newTestEnv(t)
			e.configure(map[string]any{"verify_credentials": false})
			breakStorage(e)
			resp := e.readToken()
			if !e.manus.IsValid(accessTokenOf(resp)) {
				t.Fatal("the read failed because the token could not be persisted")
			}
			if accessTokenOf(e.readToken()) != accessTokenOf(resp) || e.manus.Mints() != 1 {
				t.Fatal("the unpersisted token was not kept in memory")
			}
		})
	}
}

func TestInvalidateTokenReloadsOtherNodesToken(t *testing.T) {
	active := newTestEnv(t)
	active.configure(nil)
	// A standby sharing the storage has loaded the cache earlier.
	standby := *active
	standby.b = active.newBackend()
	first := accessTokenOf(standby.readToken())

	// The active node refreshes; replication invalidates the standby's key.
	active.clock.Advance(55 * time.Minute)
	second := accessTokenOf(active.readToken())
	if second == first {
		t.Fatal("the active node did not refresh")
	}
	active.waitForStoredToken(second) // persisted just after the readers are answered
	standby.b.InvalidateKey(context.Background(), tokenStorageKey)
	if got := accessTokenOf(standby.readToken()); got != second || active.manus.Mints() != 2 {
		t.Fatalf("the standby did not pick up the active node's token (mints=%d)", active.manus.Mints())
	}
	standby.b.Clean(context.Background())
}

func TestReaderGetsMintInProgressWhileUpstreamIsSlow(t *testing.T) {
	e := newTestEnv(t)
	e.configure(map[string]any{"verify_credentials": false, "request_timeout": 1})
	e.manus.SetOutage(stall(3 * time.Second))
	status, msg := e.readTokenError()
	if status != http.StatusGatewayTimeout || !strings.Contains(msg, "goes on in the background") || !strings.Contains(msg, "1s") {
		t.Fatalf("got %d %q; want a 504 saying the request goes on", status, msg)
	}
}

// waitForStoredToken waits until the persisted token is want: a mint
// persists its token right after answering its readers.
func (e *testEnv) waitForStoredToken(want string) {
	e.t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if st, _ := readStoredToken(context.Background(), e.storage); st != nil && st.AccessToken == want {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	e.t.Fatal("the minted token was not persisted")
}

func TestColdReadsAfterReloadShareOneCacheAndMint(t *testing.T) {
	e := newTestEnv(t)
	e.configure(map[string]any{"verify_credentials": false})
	e.b.Clean(context.Background()) // as after a plugin reload: nothing loaded
	e.b = e.newBackend()
	e.manus.FailNext(stall(200 * time.Millisecond))

	e.concurrentReads(100)
	if e.manus.Requests() != 1 {
		t.Fatalf("100 cold reads on a fresh backend made %d token requests, want 1", e.manus.Requests())
	}
}

// TestDroppedCacheTellsWaitingReadersWhy: a plugin reload, a mount disable
// or a config delete cancels a mint in flight, and the readers waiting on it
// are told what happened and what to do, not that the config changed.
func TestDroppedCacheTellsWaitingReadersWhy(t *testing.T) {
	cases := []struct {
		name string
		drop func(e *testEnv)
		want string
	}{
		{"plugin reload or mount disable", func(e *testEnv) { e.b.Clean(context.Background()) }, "the plugin was reloaded, or the mount disabled"},
		{"config delete", func(e *testEnv) {
			if _, err := e.request(logical.DeleteOperation, "config", nil); err != nil {
				t.Fatal(err)
			}
		}, "config was deleted"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t)
			e.configure(map[string]any{"verify_credentials": false})
			e.manus.SetOutage(stall(10 * time.Second))
			done := make(chan error, 1)
			go func() {
				_, err := e.request(logical.ReadOperation, "token", nil)
				done <- err
			}()
			waitFor(t, func() bool { return e.manus.Requests() == 1 }) // the mint is in flight
			started := time.Now()
			tc.drop(e)
			select {
			case err := <-done:
				var coded logical.HTTPCodedError
				if !errors.As(err, &coded) || coded.Code() != http.StatusServiceUnavailable || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("reader got %v; want a 503 saying %q", err, tc.want)
				}
				if strings.Contains(err.Error(), "config changed") {
					t.Fatalf("reader was told the config changed: %v", err)
				}
				if time.Since(started) > time.Second {
					t.Fatal("dropping the cache did not cancel the mint promptly")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the reader is still waiting on a mint that should have been cancelled")
			}
		})
	}
}

func TestConfigDeleteDuringMintLeavesNoStoredToken(t *testing.T) {
	e := newTestEnv(t)
	e.configure(map[string]any{"verify_credentials": false})
	e.manus.FailNext(stall(300 * time.Millisecond))
	go func() { _, _ = e.request(logical.ReadOperation, "token", nil) }()
	time.Sleep(100 * time.Millisecond) // the mint is in flight
	if _, err := e.request(logical.DeleteOperation, "config", nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // the old mint has finished by now
	if st, _ := readStoredToken(context.Background(), e.storage); st != nil {
		t.Fatal("a mint of the deleted config wrote its token to storage")
	}
}

func TestTooShortLifetimeIsRefused(t *testing.T) {
	e := newTestEnv(t)
	e.manus.SetLifetime(3 * time.Second)
	e.configure(map[string]any{"verify_credentials": false})
	status, msg := e.readTokenError()
	if status != http.StatusBadGateway || !strings.Contains(msg, "too short to serve") {
		t.Fatalf("got %d %q", status, msg)
	}
}

func TestTokenTooCloseToExpiryIsNotLeased(t *testing.T) {
	e := newTestEnv(t)
	e.b.clock = wallClock // the mint's own duration must count
	e.manus.SetLifetime(5 * time.Second)
	e.configure(map[string]any{"verify_credentials": false})
	e.manus.FailNext(stall(4700 * time.Millisecond)) // answered with 0.3s of life left
	status, msg := e.readTokenError()
	if status != http.StatusBadGateway || !strings.Contains(msg, "too soon to lease") {
		t.Fatalf("got %d %q; want a refusal rather than a lease past the token's expiry", status, msg)
	}
}

func TestConfigWriteDuringRefreshNeverServesOldToken(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	old := e.manus.Issued()[0]
	e.clock.Advance(55 * time.Minute) // due for refresh, still servable
	e.manus.FailNext(stall(500 * time.Millisecond))

	got := make(chan *logical.Response, 1)
	go func() {
		resp, _ := e.request(logical.ReadOperation, "token", nil)
		got <- resp
	}()
	time.Sleep(100 * time.Millisecond) // the refresh is in flight
	resp, err := e.writeConfig(map[string]any{"request_timeout": 5, "verify_credentials": false})
	requireOK(t, resp, err)

	read := <-got
	if read == nil || read.IsError() {
		t.Fatal("the read cut short by the config change failed; it should read again from the new config")
	}
	if accessTokenOf(read) == old || len(read.Warnings) != 0 {
		t.Fatal("a read finished after the config change was served the old credentials' token")
	}
}

func TestInvalidateTokenKeepsMintInFlight(t *testing.T) {
	e := newTestEnv(t)
	e.configure(map[string]any{"verify_credentials": false})
	e.readToken() // loads the cache
	e.clock.Advance(55 * time.Minute)
	e.manus.FailNext(stall(300 * time.Millisecond))
	requests := e.manus.Requests()

	got := make(chan error, 1)
	go func() {
		_, err := e.request(logical.ReadOperation, "token", nil)
		got <- err
	}()
	time.Sleep(100 * time.Millisecond)
	e.b.InvalidateKey(context.Background(), tokenStorageKey) // another node wrote a token
	if err := <-got; err != nil {
		t.Fatalf("the read failed: %v", err)
	}
	if e.manus.Requests() != requests+1 {
		t.Fatalf("%d token requests; the invalidation cancelled the mint in flight", e.manus.Requests()-requests)
	}
}

func TestTokenOfReplacedConfigIsNeverPersisted(t *testing.T) {
	e := newTestEnv(t)
	e.configure(map[string]any{"verify_credentials": false})
	cache, err := e.b.tokenCache(context.Background(), &logical.Request{Storage: e.storage, MountPoint: "manus/"})
	if err != nil {
		t.Fatal(err)
	}
	// Hold the mint's persist back until the config is gone: the order in
	// which only the generation check can keep the token out of storage.
	entered, release, persisted := make(chan struct{}), make(chan struct{}), make(chan struct{})
	persist := cache.persist
	cache.persist = func(tok *accessToken) {
		close(entered)
		<-release
		persist(tok)
		close(persisted)
	}
	e.readToken()
	// The mint persists after waking its readers; wait until it has
	// started to, or a slow scheduler lets the delete cancel it first.
	<-entered
	if _, err := e.request(logical.DeleteOperation, "config", nil); err != nil {
		t.Fatal(err)
	}
	close(release)
	<-persisted
	if st, _ := readStoredToken(context.Background(), e.storage); st != nil {
		t.Fatal("a token of a deleted config was persisted")
	}
}
