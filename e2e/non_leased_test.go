//go:build e2e

package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/manus-community/vault-plugin-secrets-manus/internal/standin"
)

// TestNonLeasedReadsRegisterNoLease: with leased_reads=false a token read
// through the CLI has no lease and carries the rotating-secret fields as
// numbers; 200 concurrent reads through the HTTP API leave no lease in Vault
// and cost at most one mint; switching back gives leased reads again without
// a mint.
func TestNonLeasedReadsRegisterNoLease(t *testing.T) {
	t.Parallel()
	v := startVault(t)
	manus := startManus(t)
	v.mountConfigured(manus, "verify_credentials=false", "leased_reads=false")
	manus.FailNext(standin.Fault{Stall: 300 * time.Millisecond}) // every reader arrives while the mint is in flight

	responses, errs := v.parallelReads("manus/token", 200)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
	}
	if got := manus.Mints(); got > 1 {
		t.Fatalf("200 concurrent non-leased reads cost %d mints, want at most 1", got)
	}
	for _, r := range responses {
		if r.LeaseID != "" || r.LeaseDuration != 0 || r.Data["access_token"] != manus.Issued()[0] {
			t.Fatalf("a non-leased read: lease %q for %ds, same token %v", r.LeaseID, r.LeaseDuration, r.Data["access_token"] == manus.Issued()[0])
		}
	}
	if n := v.leaseCount("manus/token/"); n != 0 {
		t.Fatalf("%d leases under manus/token/ after 200 non-leased reads, want 0", n)
	}

	var resp secretResponse
	v.vaultJSON(&resp, "read", "manus/token")
	if resp.LeaseID != "" || resp.LeaseDuration != 0 {
		t.Fatalf("CLI read: lease_id %q, lease_duration %d; want none", resp.LeaseID, resp.LeaseDuration)
	}
	ttl, ttlIsNumber := resp.Data["ttl"].(float64)
	period, periodIsNumber := resp.Data["rotation_period"].(float64)
	if !ttlIsNumber || !periodIsNumber || ttl < 1 || period != 3000 || ttl > period+61 {
		t.Fatalf("ttl %#v, rotation_period %#v; want JSON numbers, ttl >= 1 within the rotation period plus its spread, period 3000", resp.Data["ttl"], resp.Data["rotation_period"])
	}
	if _, err := time.Parse(time.RFC3339, resp.Data["last_vault_rotation"].(string)); err != nil {
		t.Fatalf("last_vault_rotation %v: %v", resp.Data["last_vault_rotation"], err)
	}

	// Back to leased reads: the next read is leased, from the same token.
	v.mustVault("write", "manus/config", "leased_reads=true")
	v.vaultJSON(&resp, "read", "manus/token")
	if resp.LeaseID == "" || resp.LeaseDuration < 3500 || resp.Data["access_token"] != manus.Issued()[0] || manus.Mints() != 1 {
		t.Fatalf("after leased_reads=true: lease %q for %ds, mints %d; want a lease on the cached token and no mint", resp.LeaseID, resp.LeaseDuration, manus.Mints())
	}
	if n := v.leaseCount("manus/token/"); n != 1 {
		t.Fatalf("%d leases after one leased read, want 1 (the count is what proves the 0 above)", n)
	}
}

// leaseCount is the number of leases Vault holds under prefix.
func (v *vaultServer) leaseCount(prefix string) int {
	v.t.Helper()
	out, err := v.vault("list", "-format=json", "sys/leases/lookup/"+prefix)
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 2 {
		return 0 // the CLI's "No value found"
	}
	if err != nil {
		v.t.Fatalf("listing leases: %v: %s", err, out)
	}
	var ids []string
	if err := json.Unmarshal([]byte(out), &ids); err != nil {
		v.t.Fatalf("decoding the lease list %q: %v", out, err)
	}
	return len(ids)
}

// TestVaultAgentNonLeasedMode runs a real Vault Agent against a mount with
// leased_reads=false and 20-second tokens for over a minute: the rendered
// file moves on to each new token, is never empty and never holds a token
// Manus considers expired, and the Agent reads about once per token, as the
// rotating-secret ttl tells it to (counted in the audit log).
func TestVaultAgentNonLeasedMode(t *testing.T) {
	t.Parallel()
	const lifetime = 20 * time.Second
	const watchFor = 65 * time.Second

	v := startVault(t)
	manus := startManus(t)
	manus.SetLifetime(lifetime)
	auditPath := filepath.Join(v.dir, "audit.log")
	v.mustVault("audit", "enable", "file", "file_path="+auditPath)
	v.mountConfigured(manus, "leased_reads=false")

	rendered := filepath.Join(v.dir, "manus-token")
	startAgent(t, v, rendered)
	readsAtStart := tokenReadsIn(t, auditPath)

	order, _ := watchRenderedToken(t, rendered, manus, watchFor, true)
	reads := tokenReadsIn(t, auditPath) - readsAtStart

	// 20 s tokens are due after 10 s, and the Agent comes back 1 to 2 s
	// later: about six new tokens in 65 s.
	if len(order) < 4 {
		t.Fatalf("the rendered file showed %d distinct tokens in %s of %s tokens; want at least 4", len(order), watchFor, lifetime)
	}
	if reads > len(order)+1 {
		t.Fatalf("the Agent read manus/token %d times for %d tokens; the ttl should bring it back once per token", reads, len(order))
	}
	if mints := manus.Mints(); mints > len(order)+2 {
		t.Fatalf("%d mints for %d rendered tokens", mints, len(order))
	}
	if n := v.leaseCount("manus/token/"); n != 0 {
		t.Fatalf("the Agent's reads left %d leases", n)
	}
}

// tokenReadsIn counts the successful manus/token responses in a file audit
// log.
func tokenReadsIn(t *testing.T, auditPath string) int {
	t.Helper()
	f, err := os.Open(auditPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	reads := 0
	scanner := bufio.NewScanner(f)
	scanner.Buffer(make([]byte, 1<<20), 1<<20)
	for scanner.Scan() {
		var entry struct {
			Type    string `json:"type"`
			Request struct {
				Path      string `json:"path"`
				Operation string `json:"operation"`
			} `json:"request"`
			Error string `json:"error"`
		}
		if json.Unmarshal(scanner.Bytes(), &entry) != nil {
			continue
		}
		if entry.Type == "response" && entry.Request.Path == "manus/token" && entry.Request.Operation == "read" && entry.Error == "" {
			reads++
		}
	}
	return reads
}
