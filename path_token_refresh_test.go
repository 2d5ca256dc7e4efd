package manus

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/manus-community/vault-plugin-secrets-manus/internal/standin"
)

func (e *testEnv) refresh() (*logical.Response, error) {
	return e.request(logical.UpdateOperation, "token/refresh", nil)
}

// TestRefreshEndsBackoffAndMintsOnce: during a failure back-off, with Manus
// back, a refresh mints at once and reads get the new token.
func TestRefreshEndsBackoffAndMintsOnce(t *testing.T) {
	e := newTestEnv(t)
	e.configure(map[string]any{"verify_credentials": false})
	e.manus.SetOutage(standin.Unavailable())
	if status, _ := e.readTokenError(); status != http.StatusBadGateway {
		t.Fatalf("read during the outage: %d", status)
	}
	if _, msg := e.readTokenError(); !strings.Contains(msg, "waits until") {
		t.Fatalf("no failure back-off in force: %q", msg)
	}
	e.manus.ClearOutage()
	mints := e.manus.Mints()
	resp, err := e.refresh()
	requireOK(t, resp, err)
	if e.manus.Mints() != mints+1 {
		t.Fatalf("%d mints, want one", e.manus.Mints()-mints)
	}
	newest := e.manus.Issued()[len(e.manus.Issued())-1]
	if accessTokenOf(e.mustReadToken()) != newest || e.manus.Mints() != mints+1 {
		t.Fatal("after the refresh a read did not get its token without a mint")
	}
}

// TestRefreshAnswersWhatHappenedNotTheToken: the answer says when the new
// token expires and never carries it; the new token replaces the cached and
// the persisted one.
func TestRefreshAnswersWhatHappenedNotTheToken(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	old := e.manus.Issued()[0]
	e.clock.Advance(5 * time.Minute)
	resp, err := e.refresh()
	requireOK(t, resp, err)
	newest := e.manus.Issued()[1]
	for k, v := range resp.Data {
		if s := fmt.Sprint(v); strings.Contains(s, newest) || strings.Contains(s, old) {
			t.Fatalf("the refresh answer's %s carries a token", k)
		}
	}
	if want := formatTime(e.clock.Now().Add(time.Hour)); resp.Data["expires_at"] != want || resp.Data["expires_in"] != int64(3600) {
		t.Fatalf("expires_at %v, expires_in %v; want %s and 3600", resp.Data["expires_at"], resp.Data["expires_in"], want)
	}
	if accessTokenOf(e.mustReadToken()) != newest {
		t.Fatal("reads still get the replaced token")
	}
	e.waitForStoredToken(newest)
}

// TestConcurrentRefreshesAndReadsShareOneMint: refreshes that overlap share
// one mint, and reads meanwhile mint nothing.
func TestConcurrentRefreshesAndReadsShareOneMint(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.clock.Advance(minRefreshInterval) // a refresh sooner keeps the config's token
	e.manus.FailNext(stall(300 * time.Millisecond))
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := e.refresh()
			if err != nil || resp.IsError() {
				t.Errorf("refresh failed: %v", err)
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	e.concurrentReads(50)
	wg.Wait()
	if e.manus.Mints() != 2 {
		t.Fatalf("%d mints, want 2: the config's and one for both refreshes", e.manus.Mints())
	}
}

// TestFailedRefreshKeepsServingTheFreshToken: a refresh Manus refuses
// answers as a failed read would, and readers keep the old token while it
// is fresh.
func TestFailedRefreshKeepsServingTheFreshToken(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	old := e.manus.Issued()[0]
	e.clock.Advance(minRefreshInterval)
	e.manus.SetOutage(standin.Unavailable())
	resp, err := e.refresh()
	status, msg := failureOf(t, resp, err)
	if status != http.StatusBadGateway || !strings.Contains(msg, "UNAVAILABLE") {
		t.Fatalf("failed refresh: %d %q; want a 502 with the Manus code", status, msg)
	}
	if resp := e.mustReadToken(); accessTokenOf(resp) != old || len(resp.Warnings) != 0 {
		t.Fatal("after a failed refresh the fresh token was not served as before")
	}
}

func TestRefreshOfUnconfiguredMountSaysToWriteConfig(t *testing.T) {
	e := newTestEnv(t)
	resp, err := e.refresh()
	status, msg := failureOf(t, resp, err)
	if status != http.StatusBadRequest || !strings.Contains(msg, "client_id") {
		t.Fatalf("got %d %q", status, msg)
	}
}

// TestRejectedTokenIsDroppedAndReplaced: when the status probe learns that
// Manus rejects the cached token, no reader gets it again: the next read
// mints, once, a token Manus accepts.
func TestRejectedTokenIsDroppedAndReplaced(t *testing.T) {
	for _, mode := range readModes {
		t.Run(mode.name, func(t *testing.T) {
			e := newTestEnv(t)
			e.configure(mode.config())
			dead := e.manus.Issued()[0]
			e.manus.RevokeTokensOf(testClientID)
			status := e.readStatus(true)
			if status["probe_ok"] != false || status["probe_http_status"] != http.StatusUnauthorized {
				t.Fatalf("probe: ok %v, status %v; want a 401", status["probe_ok"], status["probe_http_status"])
			}
			if status["token_cached"] != false || status["token_rejections"] != int64(1) {
				t.Fatalf("after the 401: token_cached %v, token_rejections %v", status["token_cached"], status["token_rejections"])
			}
			got := e.concurrentReads(20)
			for _, tok := range got {
				if tok == dead || !e.manus.IsValid(tok) {
					t.Fatal("a reader got the rejected token, or one Manus does not accept")
				}
			}
			if e.manus.Mints() != 2 {
				t.Fatalf("%d mints, want 2: the first token and its one replacement", e.manus.Mints())
			}
			if st := e.readStatus(true); st["probe_ok"] != true || st["token_rejections"] != int64(0) {
				t.Fatalf("the replacement was not accepted: %v", st["probe_http_status"])
			}
		})
	}
}

// TestRejectedTokenIsDroppedOnEveryNode: the rejection is stored, so a
// standby drops the token on Invalidate and a restarted node never restores
// it.
func TestRejectedTokenIsDroppedOnEveryNode(t *testing.T) {
	active := newTestEnv(t)
	active.configure(map[string]any{"leased_reads": false})
	dead := active.manus.Issued()[0]
	standby := active.standby()
	if accessTokenOf(standby.mustReadToken()) != dead {
		t.Fatal("the standby does not serve the active node's token")
	}
	active.manus.RevokeTokensOf(testClientID)
	active.readStatus(true)
	standby.b.InvalidateKey(context.Background(), tokenStorageKey)
	if resp, err := standby.request(logical.ReadOperation, "token", nil); !forwarded(err) {
		t.Fatalf("the standby answered %v after the token was rejected; want the read forwarded", resp)
	}
	restarted := active.standby()
	if _, err := restarted.request(logical.ReadOperation, "token", nil); !forwarded(err) {
		t.Fatal("a node starting afresh restored the rejected token")
	}
}

// TestRejectionRemintsAreBounded: a users API that rejects every token, and
// an operator (or a script) probing every minute for an hour, cost at most
// one mint per rejection at first and then one per maxRejectionRemintWait:
// never a mint storm. Readers in the wait get an error that says why, never
// a dead token.
func TestRejectionRemintsAreBounded(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.manus.RejectAllTokens(true)
	for minute := 0; minute < 60; minute++ {
		e.readStatus(true) // drops whatever token is cached: all are rejected
		probed := e.manus.Mints()
		resp, err := e.request(logical.ReadOperation, "token", nil)
		if err == nil && !resp.IsError() {
			if e.manus.Mints() != probed+1 {
				t.Fatal("a reader got a token the probe had rejected")
			}
		} else if _, msg := failureOf(t, resp, err); !strings.Contains(msg, "rejected") {
			t.Fatalf("a read held back after rejections says %q", msg)
		}
		e.clock.Advance(time.Minute)
	}
	// 1 + the waits 0, 1, 2, 4, 8, 16, 30 minutes fit seven more in an hour.
	if mints := e.manus.Mints(); mints > 8 {
		t.Fatalf("%d mints in an hour of rejected tokens", mints)
	}
}

func TestRejectionRemintWait(t *testing.T) {
	want := []time.Duration{0, 0, time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 16 * time.Minute, 30 * time.Minute, 30 * time.Minute}
	for n, w := range want {
		if got := rejectionRemintWait(n); got != w {
			t.Errorf("rejectionRemintWait(%d) = %s, want %s", n, got, w)
		}
	}
	if got := rejectionRemintWait(1 << 20); got != maxRejectionRemintWait {
		t.Errorf("a very long run of rejections waits %s", got)
	}
}

// TestRefreshIsBounded: an automation looping on token/refresh, or a policy
// with a manus/token* glob, cannot run the credential into Manus's rate
// limit. Within minRefreshInterval of a mint a refresh keeps the token and
// answers its times; while Manus's Retry-After is in force it answers the
// back-off (a 502, as a read would) and sends nothing.
func TestRefreshIsBounded(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.clock.Advance(minRefreshInterval)
	for i := range 25 {
		resp, err := e.refresh()
		requireOK(t, resp, err)
		if replaced := resp.Data["replaced"]; replaced != (i == 0) || (i > 0) != (len(resp.Warnings) == 1) {
			t.Fatalf("refresh %d: replaced %v, warnings %q", i, replaced, resp.Warnings)
		}
	}
	if e.manus.Mints() != 2 {
		t.Fatalf("25 refreshes in a row made %d mints, want 1", e.manus.Mints()-1)
	}

	e.clock.Advance(minRefreshInterval)
	e.manus.SetOutage(standin.Fault{Status: http.StatusTooManyRequests, Body: `{"code":"RESOURCE_EXHAUSTED","message":"slow down"}`, Header: map[string]string{"Retry-After": "300"}})
	requests := e.manus.Requests()
	for i := range 10 {
		resp, err := e.refresh()
		status, msg := failureOf(t, resp, err)
		if status != http.StatusBadGateway || (i > 0 && !strings.Contains(msg, "Manus asked")) {
			t.Fatalf("refresh %d during a Retry-After: %d %q", i, status, msg)
		}
	}
	if n := e.manus.Requests() - requests; n != 1 {
		t.Fatalf("10 refreshes during a Retry-After of 300 s sent %d token requests, want 1", n)
	}
	e.manus.ClearOutage()
	e.clock.Advance(300 * time.Second)
	resp, err := e.refresh()
	requireOK(t, resp, err)
	if resp.Data["replaced"] != true {
		t.Fatal("once the Retry-After was over, a refresh did not mint")
	}
}
