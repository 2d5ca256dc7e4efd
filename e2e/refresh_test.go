//go:build e2e

package e2e

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/manus-community/vault-plugin-secrets-manus/internal/standin"
)

// refresh runs `vault write -f manus/token/refresh` and decodes its answer.
func (v *vaultServer) refresh() (map[string]any, error) {
	out, err := v.vault("write", "-format=json", "-f", "manus/token/refresh")
	if err != nil {
		return nil, err
	}
	var resp secretResponse
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		return nil, err
	}
	return resp.Data, nil
}

// TestRefreshDuringBackoffMintsAtOnce: while a failure back-off holds reads
// off Manus, the refresh operation, once Manus is back, mints at once and
// answers when the new token expires, not the token.
func TestRefreshDuringBackoffMintsAtOnce(t *testing.T) {
	t.Parallel()
	v := startVault(t)
	manus := startManus(t)
	v.mountConfigured(manus, "verify_credentials=false")
	manus.SetOutage(standin.Unavailable())
	if _, err := v.readToken("manus"); err == nil {
		t.Fatal("a read during the outage succeeded")
	}
	if _, err := v.readToken("manus"); err == nil || !strings.Contains(err.Error(), "waits until") {
		t.Fatalf("no failure back-off in force: %v", err)
	}
	manus.ClearOutage()
	data, err := v.refresh()
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if manus.Mints() != 1 {
		t.Fatalf("%d mints after the refresh, want 1", manus.Mints())
	}
	token := manus.Issued()[0]
	for k, value := range data {
		if s, _ := value.(string); strings.Contains(s, token) {
			t.Fatalf("the refresh answer's %s carries the token", k)
		}
	}
	if data["expires_at"] != manus.ExpiresAt(token).UTC().Format(time.RFC3339) {
		t.Fatalf("expires_at %v, want the new token's %s", data["expires_at"], manus.ExpiresAt(token))
	}
	if got := v.mustReadToken("manus").Data["access_token"]; got != token || manus.Mints() != 1 {
		t.Fatal("the next read did not get the refreshed token without a mint")
	}
}

// TestConcurrentRefreshesAndReadsMintOnce: two refreshes and 50 reads at
// once cost one mint.
func TestConcurrentRefreshesAndReadsMintOnce(t *testing.T) {
	t.Parallel()
	v := startVault(t)
	manus := startManus(t)
	v.mountConfigured(manus, "verify_credentials=false") // no token yet: a refresh mints
	manus.FailNext(standin.Fault{Stall: time.Second})    // the refresh's mint is slow
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := v.refresh()
			errs <- err
		}()
	}
	time.Sleep(300 * time.Millisecond) // both refreshes are waiting on the mint
	_, readErrs := v.parallelReads("manus/token", 50)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("refresh: %v", err)
		}
	}
	for _, err := range readErrs {
		if err != nil {
			t.Fatalf("read: %v", err)
		}
	}
	if manus.Mints() != 1 {
		t.Fatalf("%d mints, want 1 for both refreshes and the reads", manus.Mints())
	}
}

// TestRevokedTokensAreReplacedAfterTheProbe: Manus stops accepting every
// token it issued; the status probe reports the 401, and the next read
// returns a token Manus accepts, with one mint.
func TestRevokedTokensAreReplacedAfterTheProbe(t *testing.T) {
	t.Parallel()
	v := startVault(t)
	manus := startManus(t)
	v.mountConfigured(manus)
	dead := v.mustReadToken("manus").Data["access_token"].(string)
	manus.RevokeTokensOf(testClientID)

	var status secretResponse
	v.vaultJSON(&status, "read", "manus/status", "probe=true")
	if status.Data["probe_ok"] != false || status.Data["probe_http_status"] != float64(401) {
		t.Fatalf("probe: ok %v, status %v; want the users API's 401", status.Data["probe_ok"], status.Data["probe_http_status"])
	}
	got := v.mustReadToken("manus").Data["access_token"].(string)
	if got == dead || !manus.IsValid(got) || manus.Mints() != 2 {
		t.Fatalf("after the probe: new token %v, accepted %v, mints %d; want one new, accepted token", got != dead, manus.IsValid(got), manus.Mints())
	}
}

// TestSameConfigWrittenTwiceMintsNothing: re-applying the stored config (a
// Terraform apply, a configuration-management run) keeps the token.
func TestSameConfigWrittenTwiceMintsNothing(t *testing.T) {
	t.Parallel()
	v := startVault(t)
	manus := startManus(t)
	v.mountConfigured(manus)
	token := v.mustReadToken("manus").Data["access_token"]
	v.configure("manus", manus)
	v.configure("manus", manus)
	if manus.Mints() != 1 || v.mustReadToken("manus").Data["access_token"] != token {
		t.Fatalf("%d mints after writing the same config twice, want 1 and the same token", manus.Mints())
	}
}

// TestRefreshBelongsToTheOperatorPolicy: the consumer policy cannot replace
// the token; the operator policy can.
func TestRefreshBelongsToTheOperatorPolicy(t *testing.T) {
	t.Parallel()
	v := startVault(t)
	manus := startManus(t)
	v.mountConfigured(manus, "verify_credentials=false") // no token yet: a refresh mints
	for _, name := range []string{"manus-consumer", "manus-operator"} {
		v.mustVault("policy", "write", name, filepath.Join(repoRoot, "docs", "policies", name+".hcl"))
	}
	if out, err := v.vaultAs(v.tokenWithPolicy("manus-consumer"), "write", "-f", "manus/token/refresh"); err == nil || !strings.Contains(out, "permission denied") {
		t.Fatalf("the consumer policy could refresh: %v", err)
	}
	if manus.Mints() != 0 {
		t.Fatal("a denied refresh minted")
	}
	if _, err := v.vaultAs(v.tokenWithPolicy("manus-operator"), "write", "-f", "manus/token/refresh"); err != nil {
		t.Fatalf("the operator policy cannot refresh: %v", err)
	}
	if manus.Mints() != 1 {
		t.Fatalf("%d mints after the operator's refresh, want 1", manus.Mints())
	}
}

// TestRefreshLoopMintsOnce: an automation calling token/refresh in a loop
// costs one mint, not one per call: within a minute of a mint the refresh
// keeps that token and says so.
func TestRefreshLoopMintsOnce(t *testing.T) {
	t.Parallel()
	v := startVault(t)
	manus := startManus(t)
	v.mountConfigured(manus, "verify_credentials=false")
	for i := range 25 {
		data, err := v.refresh()
		if err != nil {
			t.Fatalf("refresh %d: %v", i, err)
		}
		if data["replaced"] != (i == 0) {
			t.Fatalf("refresh %d: replaced %v", i, data["replaced"])
		}
	}
	if manus.Mints() != 1 {
		t.Fatalf("25 refreshes in a row made %d mints, want 1", manus.Mints())
	}
}
