//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Agent behaviour that differs between the Vault versions docs/upgrading.md
// claims; each test checks what the Vault under test must do.

// TestVaultAgentLeaseRenewalThreshold checks when a real Vault Agent re-reads
// manus/token, a non-renewable lease, with template_config's
// lease_renewal_threshold set to 0.5. Vault 1.17 added that setting
// (GH-25212): the Agent then re-reads after 45 to 55 % of the lease. Vault
// 1.16's Agent ignores it and keeps consul-template's default of 85 to 95 %.
// The suite checks whichever the Vault under test must do.
func TestVaultAgentLeaseRenewalThreshold(t *testing.T) {
	t.Parallel()
	v := startVault(t)
	manus := startManus(t)
	manus.SetLifetime(60 * time.Second)
	v.mountConfigured(manus)

	lo, hi := 0.80, 1.02 // 0.90 ± 0.05 staggering, plus polling slack
	if vaultAtLeast(t, 1, 17) {
		lo, hi = 0.40, 0.62 // 0.50 ± 0.05
	}

	before := v.tokenReads()
	startAgent(t, v, filepath.Join(v.dir, "manus-token"),
		"template_config {\n  lease_renewal_threshold = 0.5\n}\n")
	firstRead := time.Now() // the render is polled every 100ms
	if got := v.tokenReads(); got != before+1 {
		t.Fatalf("%d token reads for the first render, want 1", got-before)
	}
	lease := time.Duration(v.statusInt("token_lease_ttl")) * time.Second
	if lease < 50*time.Second {
		t.Fatalf("the first read's lease is %s; want about a minute for the test to tell the thresholds apart", lease)
	}

	deadline := firstRead.Add(lease + 10*time.Second)
	for v.tokenReads() == before+1 {
		if time.Now().After(deadline) {
			t.Fatalf("the Agent did not re-read manus/token within its %s lease", lease)
		}
		time.Sleep(100 * time.Millisecond)
	}
	fraction := float64(time.Since(firstRead)) / float64(lease)
	t.Logf("the Agent re-read after %.2f of a %s lease", fraction, lease)
	if fraction < lo || fraction > hi {
		t.Fatalf("the Agent re-read after %.2f of the lease; want %.2f to %.2f on this Vault", fraction, lo, hi)
	}
}

// TestVaultAgentTemplateRestartBackOff: when reads of manus/token keep
// failing (here an unconfigured mount; in production a Manus outage that
// outlasts the cached token) and the Agent's retries are spent, the Agent
// restarts its template runner. Vault 1.17 made that restart wait an
// exponential back-off from 1s (GH-25497); 1.16 restarts at once, so its
// Agent re-reads several times a second.
func TestVaultAgentTemplateRestartBackOff(t *testing.T) {
	t.Parallel()
	const watchFor = 20 * time.Second
	v := startVault(t)
	v.registerPlugin()
	v.mount("manus")

	exited, logPath := launchAgent(t, v,
		agentConfig(t, v, "  retry {\n    num_retries = 1\n  }\n", filepath.Join(v.dir, "manus-token")))
	select {
	case err := <-exited:
		exited <- err
		t.Fatalf("vault agent exited: %v", err)
	case <-time.After(watchFor):
	}
	data, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	log := string(data)
	failures := strings.Count(log, "template server error")
	backOffs := strings.Count(log, "template server restart: retry attempt after")
	t.Logf("in %s: %d template runner failures, %d back-off waits", watchFor, failures, backOffs)
	if failures < 2 {
		t.Fatalf("%d template runner failures in %s; the test needs the runner to fail repeatedly", failures, watchFor)
	}
	if vaultAtLeast(t, 1, 17) {
		// 1s, 2s, 4s, 8s... (jittered): at most about five restarts in 20s.
		if backOffs < 2 || failures > 7 {
			t.Fatalf("want the runner restarted after back-offs: %d failures, %d back-off waits in %s", failures, backOffs, watchFor)
		}
	} else if backOffs != 0 || failures < 10 {
		t.Fatalf("want Vault 1.16's immediate restarts: %d failures, %d back-off waits in %s", failures, backOffs, watchFor)
	}
}

// tokenReads counts the reads of manus/token the plugin has answered,
// minted or from its cache.
func (v *vaultServer) tokenReads() int {
	v.t.Helper()
	return v.statusInt("mints") + v.statusInt("reads_from_cache")
}

// statusInt reads one number from manus/status.
func (v *vaultServer) statusInt(field string) int {
	v.t.Helper()
	status, resp, err := v.httpGet("manus/status")
	if err != nil || status != 200 {
		v.t.Fatalf("reading manus/status: HTTP %d: %v", status, err)
	}
	n, ok := resp.Data[field].(float64)
	if !ok {
		v.t.Fatalf("manus/status has no number %q: %v", field, resp.Data)
	}
	return int(n)
}
