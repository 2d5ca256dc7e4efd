package manus

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/manus-community/vault-plugin-secrets-manus/internal/standin"
)

// expectStatus compares the given fields; a nil want means "absent".
func expectStatus(t *testing.T, got map[string]any, want map[string]any) {
	t.Helper()
	for k, w := range want {
		g, ok := got[k]
		if w == nil {
			if ok {
				t.Errorf("status %s = %v, want it absent", k, g)
			}
			continue
		}
		if fmt.Sprint(g) != fmt.Sprint(w) {
			t.Errorf("status %s = %v, want %v", k, g, w)
		}
	}
}

func TestStatusUnconfigured(t *testing.T) {
	e := newTestEnv(t)
	expectStatus(t, e.readStatus(false), map[string]any{
		"configured": false, "client_id": nil, "token_cached": nil, "mints": 0, "last_error": nil,
	})
}

func TestStatusThroughStateChanges(t *testing.T) {
	e := newTestEnv(t)
	e.configure(map[string]any{"verify_credentials": false})
	start := e.clock.Now()

	// Cold: configured, nothing cached yet.
	expectStatus(t, e.readStatus(false), map[string]any{
		"configured": true, "client_id": testClientID, "base_url": e.baseURL,
		"token_cached": false, "token_expires_at": nil, "mints": 0, "minting": false, "backoff_until": nil,
	})

	// Fresh: one mint, then a read from cache.
	e.mustReadToken()
	e.mustReadToken()
	expectStatus(t, e.readStatus(false), map[string]any{
		"token_cached": true, "token_restored": false,
		"token_minted_at":  formatTime(start),
		"token_expires_at": formatTime(start.Add(time.Hour)),
		"token_expires_in": 3600, "token_lease_ttl": 3540,
		"token_refresh_at": formatTime(start.Add(50 * time.Minute)),
		"mints":            1, "reads_from_cache": 1, "failed_attempts": 0, "reads_stale": 0,
	})

	// Aging.
	e.clock.Advance(40 * time.Minute)
	expectStatus(t, e.readStatus(false), map[string]any{"token_expires_in": 1200, "token_lease_ttl": 1140})

	// Stale during an outage: four failed attempts, one failed mint, and
	// a back-off window.
	e.clock.Advance(15 * time.Minute)
	e.manus.SetOutage(standin.Unavailable())
	e.mustReadToken()
	now := e.clock.Now()
	st := e.readStatus(false)
	expectStatus(t, st, map[string]any{
		"reads_stale": 1, "failed_attempts": 4, "retries": 3, "mints": 1,
		"last_error_code": "UNAVAILABLE", "last_error_http_status": 503, "last_error_at": formatTime(now),
		"consecutive_failed_mints": 1, "backoff_until": formatTime(now.Add(time.Second)),
		"token_expires_in": 300, "token_lease_ttl": 240,
	})
	if msg, _ := st["last_error"].(string); !strings.Contains(msg, "HTTP 503 UNAVAILABLE") {
		t.Errorf("last_error = %q", msg)
	}

	// The back-off window passes.
	e.clock.Advance(2 * time.Second)
	expectStatus(t, e.readStatus(false), map[string]any{"backoff_until": nil, "consecutive_failed_mints": 1})

	// After a config change: a new cache, counters kept.
	e.manus.ClearOutage()
	e.configure(map[string]any{"request_timeout": 5})
	expectStatus(t, e.readStatus(false), map[string]any{
		"token_cached": true, "consecutive_failed_mints": 0, "backoff_until": nil,
		"mints": 2, "failed_attempts": 4, "last_error_code": "UNAVAILABLE",
		"token_expires_in": 3600,
	})
}

func TestStatusShowsRestoredToken(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.b.Clean(context.Background())
	e.b = e.newBackend()
	expectStatus(t, e.readStatus(false), map[string]any{"token_cached": true, "token_restored": true, "mints": 0})
	e.clock.Advance(55 * time.Minute)
	e.mustReadToken() // a refresh replaces the restored token
	expectStatus(t, e.readStatus(false), map[string]any{"token_restored": false, "mints": 1})
}

func TestStatusProbeWithWorkingCredential(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	st := e.readStatus(true)
	expectStatus(t, st, map[string]any{"probe_ok": true, "probe_http_status": 200, "probe_manus_code": "", "probe_error": nil})
	if e.manus.UserCalls() != 1 {
		t.Fatalf("the probe made %d users API calls", e.manus.UserCalls())
	}
	if _, ok := st["probe_round_trip_ms"]; !ok {
		t.Error("no round-trip time")
	}
	if e.manus.Mints() != 1 {
		t.Error("the probe minted although a token was cached")
	}
}

func TestStatusProbeWithDeletedCredential(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.manus.DeleteClient(testClientID)
	e.manus.RevokeTokensOf(testClientID)
	expectStatus(t, e.readStatus(true), map[string]any{
		"probe_ok": false, "probe_http_status": 401, "probe_manus_code": "UNAUTHENTICATED",
	})
	if e.manus.UserCalls() != 1 {
		t.Fatal("the probe did not call the users API")
	}
}

func TestStatusProbeWithoutToken(t *testing.T) {
	e := newTestEnv(t)
	e.configure(map[string]any{"verify_credentials": false})
	e.manus.DeleteClient(testClientID)
	st := e.readStatus(true)
	expectStatus(t, st, map[string]any{"probe_ok": false, "probe_http_status": nil})
	if msg, _ := st["probe_error"].(string); !strings.Contains(msg, "INVALID_CLIENT") {
		t.Fatalf("probe_error = %q; want the mint failure", msg)
	}
	if e.manus.UserCalls() != 0 {
		t.Fatal("the probe called the users API without a token")
	}
}

func TestStatusProbeUnreachable(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.seedForProbe(closedLoopbackURL(t), "seeded-token")
	if msg, _ := e.readStatus(true)["probe_error"].(string); !strings.Contains(msg, "could not reach") {
		t.Fatalf("probe_error = %q", msg)
	}
}

// TestLogLinesNameMountAndCode checks each event is one structured line with
// the mount, the Manus code and a duration, at the documented level.
func TestLogLinesNameMountAndCode(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)                  // config change + mint
	e.clock.Advance(55 * time.Minute) // stale from here on
	e.manus.DeleteClient(testClientID)
	e.mustReadToken() // failure, back-off start, stale serve
	e.manus.AddClient(testClientID, testClientSecret)
	e.clock.Advance(2 * time.Second)
	e.mustReadToken() // mint, back-off end

	logs := e.logs.String()
	for _, want := range []struct{ level, msg string }{
		{"[INFO]", "config written"},
		{"[INFO]", "minted a Manus access token"},
		{"[WARN]", "minting a Manus access token failed"},
		{"[WARN]", "failure back-off"},
		{"[WARN]", "serving the cached token after a failed refresh"},
		{"[INFO]", "failure back-off ended"},
	} {
		line := lineWith(logs, want.msg)
		if line == "" {
			t.Errorf("no log line %q", want.msg)
			continue
		}
		if !strings.Contains(line, want.level) || !strings.Contains(line, "mount=manus/") {
			t.Errorf("log line lacks level %s or mount: %s", want.level, line)
		}
	}
	if line := lineWith(logs, "minting a Manus access token failed"); !strings.Contains(line, "manus_code=INVALID_CLIENT") || !strings.Contains(line, "took=") {
		t.Errorf("failure line lacks the code or duration: %s", line)
	}
	if line := lineWith(logs, "minted a Manus access token"); !strings.Contains(line, "took=") || !strings.Contains(line, "expires_at=") {
		t.Errorf("mint line lacks duration or expiry: %s", line)
	}
}

func lineWith(logs, msg string) string {
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, msg) {
			return line
		}
	}
	return ""
}

func TestStatusShowsMintInFlight(t *testing.T) {
	e := newTestEnv(t)
	e.configure(map[string]any{"verify_credentials": false})
	e.manus.FailNext(stall(500 * time.Millisecond))
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = e.request(logical.ReadOperation, "token", nil) // its outcome shows in the status below
	}()
	time.Sleep(100 * time.Millisecond)
	expectStatus(t, e.readStatus(false), map[string]any{"minting": true, "token_cached": false})
	<-done
	expectStatus(t, e.readStatus(false), map[string]any{"minting": false, "token_cached": true, "mints": 1})
}

// seedForProbe points the mount at baseURL without verifying and caches
// token, so the probe sends it there.
func (e *testEnv) seedForProbe(baseURL, token string) {
	e.t.Helper()
	resp, err := e.writeConfig(map[string]any{"base_url": baseURL, "client_secret": testClientSecret, "verify_credentials": false})
	requireOK(e.t, resp, err)
	cache, err := e.b.loadTokenCache(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	cache.seed(&accessToken{AccessToken: token, MintedAt: e.clock.Now(), ExpiresAt: e.clock.Now().Add(time.Hour)})
}

// TestStatusProbeNeverShowsToken: a users endpoint that echoes the bearer
// token into a malformed status line or into its error code must not get
// it into the status response, which operators may read without the token.
func TestStatusProbeNeverShowsToken(t *testing.T) {
	const token = "TOK_SEEDED_BEARER_0123456789"
	echoStatusLine := formEchoServer(t, 0)
	echoCode := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = fmt.Fprintf(w, `{"code":%q,"message":"bad token %s"}`, strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "), r.Header.Get("Authorization"))
	}))
	defer echoCode.Close()

	for name, baseURL := range map[string]string{"status line": echoStatusLine, "error code": echoCode.URL} {
		t.Run(name, func(t *testing.T) {
			e := newTestEnv(t)
			e.configure(nil)
			e.seedForProbe(baseURL, token)
			st := e.readStatus(true)
			for k, v := range st {
				if strings.Contains(strings.ToUpper(fmt.Sprint(v)), token) {
					t.Fatalf("status field %s shows the access token: %v", k, v)
				}
			}
			if st["probe_ok"] != false {
				t.Fatal("the probe did not fail")
			}
		})
	}
}

// seed puts tok in the cache as if it had been minted.
func (c *tokenCache) seed(tok *accessToken) {
	c.current.Store(tok)
}

// TestStatusShowsTheLeaseVaultGrants: with the mount tuned to a max lease
// TTL below the token's life, status shows the lease a reader gets, after
// Vault's cap, not the plugin's request.
func TestStatusShowsTheLeaseVaultGrants(t *testing.T) {
	for _, maxTTL := range []time.Duration{30 * time.Second, 30 * time.Minute} {
		t.Run(maxTTL.String(), func(t *testing.T) {
			e := newTestEnv(t)
			e.withSystemView(&logical.StaticSystemView{DefaultLeaseTTLVal: 768 * time.Hour, MaxLeaseTTLVal: maxTTL})
			e.configure(nil)
			requested := e.mustReadToken().Secret.TTL
			granted, _, err := framework.CalculateTTL(e.b.System(), 0, requested, 0, requested, 0, time.Time{})
			if err != nil || granted != maxTTL {
				t.Fatalf("Vault would grant %s (%v); the test expects the mount cap %s", granted, err, maxTTL)
			}
			expectStatus(t, e.readStatus(false), map[string]any{"token_lease_ttl": int64(maxTTL / time.Second)})
		})
	}
	t.Run("below the cap the token's life rules", func(t *testing.T) {
		e := newTestEnv(t)
		e.withSystemView(&logical.StaticSystemView{DefaultLeaseTTLVal: 768 * time.Hour, MaxLeaseTTLVal: 30 * time.Minute})
		e.configure(nil)
		e.clock.Advance(40 * time.Minute) // 20 minutes left: a lease of 19
		expectStatus(t, e.readStatus(false), map[string]any{"token_lease_ttl": 19 * 60})
	})
}

// TestFailedProbeCountsAsAFailedRead: the probe reads the token as a read
// does, and its failure is counted as one, in status and in the metrics,
// as token_reads_total's help says.
func TestFailedProbeCountsAsAFailedRead(t *testing.T) {
	e := newTestEnv(t)
	e.configure(map[string]any{"verify_credentials": false})
	e.manus.SetOutage(standin.Unavailable())
	status := e.readStatus(true)
	if status["probe_ok"] != false || status["probe_error"] == nil {
		t.Fatalf("the probe did not fail: %v", status)
	}
	expectStatus(t, e.readStatus(false), map[string]any{"reads_failed": 1})
	e.readMetrics().expect(t, map[string]any{`vault_manus_token_reads_total{outcome="failed"}`: 1})
}
