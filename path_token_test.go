package manus

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/manus-community/vault-plugin-secrets-manus/internal/standin"
)

func stall(d time.Duration) standin.Fault { return standin.Fault{Stall: d} }

func TestTokenReadReturnsLeasedToken(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	resp := e.readToken()

	if got := accessTokenOf(resp); !e.manus.IsValid(got) {
		t.Fatal("access_token is not a token Manus issued")
	}
	if resp.Data["token_type"] != "Bearer" {
		t.Fatalf("token_type = %v", resp.Data["token_type"])
	}
	wantExpiry := e.clock.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	if resp.Data["expires_at"] != wantExpiry {
		t.Fatalf("expires_at = %v, want %s", resp.Data["expires_at"], wantExpiry)
	}
	if resp.Data["expires_in"] != int64(3600) {
		t.Fatalf("expires_in = %v, want 3600", resp.Data["expires_in"])
	}
	if resp.Secret.Renewable {
		t.Fatal("the lease is renewable")
	}
	if ttl := resp.Secret.TTL; ttl < 3540*time.Second || ttl > 3600*time.Second {
		t.Fatalf("lease TTL = %s, want between 3540s and 3600s", ttl)
	}
	if resp.Secret.MaxTTL != resp.Secret.TTL {
		t.Fatalf("MaxTTL %s != TTL %s", resp.Secret.MaxTTL, resp.Secret.TTL)
	}
	if resp.Secret.InternalData["secret_type"] != secretTypeAccessToken {
		t.Fatalf("secret type = %v", resp.Secret.InternalData["secret_type"])
	}
}

func TestLeaseFollowsRemainingLife(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.clock.Advance(40 * time.Minute) // 1200s left, above the 600s threshold
	resp := e.readToken()
	if e.manus.Mints() != 1 {
		t.Fatal("an aging token above the threshold was re-minted")
	}
	if resp.Secret.TTL != 1140*time.Second { // 1200s left minus the 60s margin
		t.Fatalf("lease TTL = %s, want 1140s", resp.Secret.TTL)
	}
	if resp.Data["expires_in"] != int64(1200) {
		t.Fatalf("expires_in = %v, want 1200", resp.Data["expires_in"])
	}
}

func TestShortLivedTokenLeaseAndReuse(t *testing.T) {
	e := newTestEnv(t)
	e.manus.SetLifetime(20 * time.Second)
	e.configure(nil)

	resp := e.readToken()
	// margin = 20s/60 = 333ms; 19.67s rounds to 20s, capped below expiry.
	if resp.Secret.TTL != 19*time.Second && resp.Secret.TTL != 20*time.Second {
		t.Fatalf("lease TTL = %s for a 20s token", resp.Secret.TTL)
	}
	if resp.Secret.TTL > 20*time.Second {
		t.Fatal("lease outlives the token")
	}

	// Threshold is capped at half the lifetime (10s), not the default 600s,
	// so the token is reused for its first half.
	e.clock.Advance(9 * time.Second)
	if accessTokenOf(e.readToken()) != e.manus.Issued()[0] {
		t.Fatal("a 20s token was re-minted after 9s")
	}
	e.clock.Advance(2 * time.Second)
	if accessTokenOf(e.readToken()) == e.manus.Issued()[0] || e.manus.Mints() != 2 {
		t.Fatal("a 20s token with 9s left was not replaced")
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

func TestRefreshThresholdDefault(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.clock.Advance(3600*time.Second - 601*time.Second)
	if accessTokenOf(e.readToken()) != e.manus.Issued()[0] {
		t.Fatal("token with 601s left was replaced; the default threshold is 600s")
	}
	e.clock.Advance(2 * time.Second)
	resp := e.readToken()
	if accessTokenOf(resp) == e.manus.Issued()[0] || e.manus.Mints() != 2 {
		t.Fatal("token with 599s left was not replaced")
	}
	if resp.Secret.TTL < 3540*time.Second {
		t.Fatalf("lease on the new token = %s", resp.Secret.TTL)
	}
}

func TestRefreshThresholdConfigurable(t *testing.T) {
	e := newTestEnv(t)
	e.configure(map[string]any{"refresh_threshold": "20m"})
	e.clock.Advance(39 * time.Minute) // 21 minutes left
	e.readToken()
	if e.manus.Mints() != 1 {
		t.Fatal("re-minted above the configured threshold")
	}
	e.clock.Advance(2 * time.Minute) // 19 minutes left
	e.readToken()
	if e.manus.Mints() != 2 {
		t.Fatal("did not re-mint below the configured threshold")
	}
}

// TestAgentRereadAlwaysGetsNewToken checks the README's arithmetic: Vault
// Agent re-reads a non-renewable lease at 85-95% of its duration, and with
// the default threshold that read always finds the token due for refresh.
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
	e.readToken()
	if e.manus.Requests() != 1 {
		t.Fatalf("token requests = %d, want the single shared mint", e.manus.Requests())
	}
}

func TestRevokeIsNoOpAndSucceeds(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	resp := e.readToken()
	revoke, err := e.b.HandleRequest(context.Background(), &logical.Request{
		Operation: logical.RevokeOperation,
		Secret:    resp.Secret,
		Storage:   e.storage,
		Data:      resp.Data,
	})
	requireOK(t, revoke, err)
	if e.manus.Requests() != 1 {
		t.Fatal("revoking a lease called Manus")
	}
	if accessTokenOf(e.readToken()) != accessTokenOf(resp) {
		t.Fatal("revoking a lease dropped the shared token")
	}
}

func TestRenewIsUnsupported(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	resp := e.readToken()
	_, err := e.b.HandleRequest(context.Background(), &logical.Request{
		Operation: logical.RenewOperation,
		Secret:    resp.Secret,
		Storage:   e.storage,
	})
	if !errors.Is(err, logical.ErrUnsupportedOperation) {
		t.Fatalf("renewing a token lease: %v; want unsupported (no Renew)", err)
	}
}

func TestTokenReadFailureIsGatewayError(t *testing.T) {
	e := newTestEnv(t)
	e.configure(map[string]any{"verify_credentials": false})
	e.manus.DeleteClient(testClientID)
	status, msg := e.readTokenError()
	if status != http.StatusBadGateway || !strings.Contains(msg, "INVALID_CLIENT") || !strings.Contains(msg, "config") {
		t.Fatalf("got %d %q; want 502 with INVALID_CLIENT and a hint to update config", status, msg)
	}
	if e.manus.Requests() != 1 {
		t.Fatalf("a rejected credential was retried: %d requests", e.manus.Requests())
	}
}

func standinBody(status int, body string) standin.Fault {
	return standin.Fault{Status: status, Body: body}
}
