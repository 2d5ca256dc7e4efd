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

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/manus-community/vault-plugin-secrets-manus/internal/standin"
)

func TestConcurrentColdReadsShareOneMint(t *testing.T) {
	e := newTestEnv(t)
	e.configure(map[string]any{"verify_credentials": false})
	e.manus.FailNext(stall(200 * time.Millisecond)) // hold the mint so every reader piles up behind it

	const readers = 100
	tokens := e.concurrentReads(readers)
	if got := e.manus.Requests(); got != 1 {
		t.Fatalf("%d concurrent reads made %d token requests, want 1", readers, got)
	}
	for i, tok := range tokens {
		if tok != tokens[0] {
			t.Fatalf("reader %d got a different token", i)
		}
	}
}

func TestConcurrentStaleReadsShareOneMint(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.clock.Advance(55 * time.Minute) // below the threshold: every read wants a refresh
	e.manus.FailNext(stall(200 * time.Millisecond))

	e.concurrentReads(100)
	if got := e.manus.Requests(); got != 2 { // verification + one refresh
		t.Fatalf("token requests = %d, want 2", got)
	}
}

func TestReaderThatGivesUpDoesNotCancelSharedMint(t *testing.T) {
	e := newTestEnv(t)
	e.configure(map[string]any{"verify_credentials": false})
	e.manus.FailNext(stall(300 * time.Millisecond))

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := e.b.HandleRequest(ctx, &logical.Request{Operation: logical.ReadOperation, Path: "token", Storage: e.storage})
	if err == nil {
		t.Fatal("the impatient reader did not see its own deadline")
	}
	// A patient reader joins the same mint and gets its token.
	e.mustReadToken()
	if e.manus.Requests() != 1 {
		t.Fatalf("token requests = %d, want the single shared mint", e.manus.Requests())
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
	resp := e.mustReadToken()
	if !strings.Contains(resp.Warnings[0], "HTTP 503") || !strings.Contains(resp.Warnings[0], "cached token") {
		t.Fatalf("warnings = %q; want one saying the refresh failed and why", resp.Warnings)
	}
	checkStale(resp, 300*time.Second)

	// Keep reading through the outage: always the cached token, held for
	// less and less, until it can no longer back a lease.
	for left := 290 * time.Second; left > 61*time.Second; left -= 10 * time.Second {
		e.clock.Advance(10 * time.Second)
		checkStale(e.mustReadToken(), left)
	}
	e.clock.Advance(10 * time.Second) // 51s left, inside the 60s margin
	status, msg := e.readTokenError()
	if status != http.StatusBadGateway || !strings.Contains(msg, "HTTP 503") {
		t.Fatalf("after the token ran out: %d %q; want the outage error", status, msg)
	}
	if got := e.b.stats.reads.stale.Load(); got < 20 {
		t.Fatalf("stale serves counted = %d", got)
	}

	// Manus is back: once the back-off window passes, the next read mints.
	e.manus.ClearOutage()
	e.clock.Advance(maxFailureBackoff)
	resp = e.mustReadToken()
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

// TestFailureBackoffDoublesUpToItsCap: the window after the nth failed mint
// doubles from minFailureBackoff to maxFailureBackoff, however many
// failures, and a Retry-After stretches it up to maxHonouredRetryAfter
// (docs/failure-behaviour.md#failure-back-off).
func TestFailureBackoffDoublesUpToItsCap(t *testing.T) {
	for _, tc := range []struct {
		failures   int
		retryAfter time.Duration
		want       time.Duration
	}{
		{1, 0, minFailureBackoff},
		{2, 0, 2 * minFailureBackoff},
		{3, 0, 4 * minFailureBackoff},
		{30, 0, maxFailureBackoff},
		{1 << 20, 0, maxFailureBackoff}, // no overflow however long the outage
		{1, 3 * minFailureBackoff, 3 * minFailureBackoff},
		{30, maxFailureBackoff + time.Second, maxFailureBackoff + time.Second},
		{1, 24 * time.Hour, maxHonouredRetryAfter},
	} {
		if got := failureBackoff(tc.failures, tc.retryAfter); got != tc.want {
			t.Errorf("failureBackoff(%d, %s) = %s, want %s", tc.failures, tc.retryAfter, got, tc.want)
		}
	}
	for n := 1; failureBackoff(n, 0) < maxFailureBackoff; n++ {
		if next := failureBackoff(n+1, 0); next != min(2*failureBackoff(n, 0), maxFailureBackoff) {
			t.Fatalf("the window after %d failures is %s, after %d %s: not doubled", n, failureBackoff(n, 0), n+1, next)
		}
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
	e.mustReadToken()
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
	e.mustReadToken()

	// The next failure starts again at the shortest window.
	e.clock.Advance(55 * time.Minute)
	e.manus.DeleteClient(testClientID)
	e.mustReadToken() // stale, after one failed mint
	requests := e.manus.Requests()
	e.clock.Advance(minFailureBackoff)
	e.mustReadToken()
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
	healthy.mustReadToken()
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

func TestReaderGetsMintInProgressWhileUpstreamIsSlow(t *testing.T) {
	e := newTestEnv(t)
	e.configure(map[string]any{"verify_credentials": false, "request_timeout": 1})
	e.manus.SetOutage(stall(3 * time.Second))
	status, msg := e.readTokenError()
	if status != http.StatusGatewayTimeout || !strings.Contains(msg, "goes on in the background") || !strings.Contains(msg, "1s") {
		t.Fatalf("got %d %q; want a 504 saying the request goes on", status, msg)
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
