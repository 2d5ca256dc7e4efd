package manus

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

func TestTokenReadReturnsLeasedToken(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	resp := e.mustReadToken()

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
	resp := e.mustReadToken()
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

	resp := e.mustReadToken()
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
	if accessTokenOf(e.mustReadToken()) != e.manus.Issued()[0] {
		t.Fatal("a 20s token was re-minted after 9s")
	}
	e.clock.Advance(2 * time.Second)
	if accessTokenOf(e.mustReadToken()) == e.manus.Issued()[0] || e.manus.Mints() != 2 {
		t.Fatal("a 20s token with 9s left was not replaced")
	}
}

func TestRefreshThresholdDefault(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.clock.Advance(3600*time.Second - 601*time.Second)
	if accessTokenOf(e.mustReadToken()) != e.manus.Issued()[0] {
		t.Fatal("token with 601s left was replaced; the default threshold is 600s")
	}
	e.clock.Advance(2 * time.Second)
	resp := e.mustReadToken()
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
	e.mustReadToken()
	if e.manus.Mints() != 1 {
		t.Fatal("re-minted above the configured threshold")
	}
	e.clock.Advance(2 * time.Minute) // 19 minutes left
	e.mustReadToken()
	if e.manus.Mints() != 2 {
		t.Fatal("did not re-mint below the configured threshold")
	}
}

func TestRevokeIsNoOpAndSucceeds(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	resp := e.mustReadToken()
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
	if accessTokenOf(e.mustReadToken()) != accessTokenOf(resp) {
		t.Fatal("revoking a lease dropped the shared token")
	}
}

func TestRenewIsUnsupported(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	resp := e.mustReadToken()
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

// TestTokenTooCloseToExpiryIsNotLeased: a token that arrives too close to
// its expiry to back a lease of a second fails a leased read (a lease past
// the expiry, or a TTL of 0, Vault's 768h default, would be worse); a
// non-leased read, which has no lease, gets it with its expires_in and a
// ttl that brings the reader back at once. Either way the read is counted.
func TestTokenTooCloseToExpiryIsNotLeased(t *testing.T) {
	for _, mode := range readModes {
		t.Run(mode.name, func(t *testing.T) {
			e := newTestEnv(t)
			e.b.clock = wallClock // the mint's own duration must count
			e.manus.SetLifetime(5 * time.Second)
			e.configure(map[string]any{"verify_credentials": false, "leased_reads": mode.leased})
			e.manus.FailNext(stall(4700 * time.Millisecond)) // answered with 0.3s of life left
			if mode.leased {
				status, msg := e.readTokenError()
				if status != http.StatusBadGateway || !strings.Contains(msg, "too soon to lease") {
					t.Fatalf("got %d %q; want a refusal rather than a lease past the token's expiry", status, msg)
				}
				expectStatus(t, e.readStatus(false), map[string]any{"reads_failed": 1, "reads_minted": 0})
				return
			}
			resp := e.mustReadToken()
			if resp.Data["expires_in"] != int64(0) || rereadTTL(t, resp) != 1 {
				t.Fatalf("expires_in %v, ttl %v; want 0 and 1", resp.Data["expires_in"], resp.Data["ttl"])
			}
			expectStatus(t, e.readStatus(false), map[string]any{"reads_failed": 0, "reads_minted": 1})
		})
	}
}
