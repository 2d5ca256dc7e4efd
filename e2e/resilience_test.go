//go:build e2e

package e2e

import (
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/manus-community/vault-plugin-secrets-manus/internal/standin"
)

// TestOutageServesCachedTokenThenRecovers: with a token cached, Manus goes
// down. Reads keep succeeding with a warning until the token can no longer
// back a lease, then fail with a clear error; when Manus is back, the next
// read after the back-off window mints.
func TestOutageServesCachedTokenThenRecovers(t *testing.T) {
	t.Parallel()
	v := startVault(t)
	manus := startManus(t)
	manus.SetLifetime(20 * time.Second)
	v.mountConfigured(manus)
	cached := manus.Issued()[0]
	expiresAt := manus.ExpiresAt(cached)
	manus.SetOutage(standin.Unavailable())

	sawWarning, sawFailure := false, false
	for time.Now().Before(expiresAt.Add(2 * time.Second)) {
		resp, err := v.readToken("manus")
		now := time.Now()
		if err == nil {
			if sawFailure {
				t.Fatal("a read succeeded after reads had started failing, with Manus still down")
			}
			if resp.Data["access_token"] != cached || !manus.IsValid(cached) {
				t.Fatal("during the outage a read returned something other than the valid cached token")
			}
			if now.Add(time.Duration(resp.LeaseDuration) * time.Second).After(expiresAt) {
				t.Fatalf("lease of %ds outlives the token", resp.LeaseDuration)
			}
			if len(resp.Warnings) > 0 {
				if !strings.Contains(strings.Join(resp.Warnings, " "), "HTTP 503") {
					t.Fatalf("warning does not say why the refresh failed: %q", resp.Warnings)
				}
				sawWarning = true
			}
		} else {
			if !strings.Contains(err.Error(), "HTTP 503") || !strings.Contains(err.Error(), "UNAVAILABLE") {
				t.Fatalf("failure does not explain the outage: %v", err)
			}
			if until := expiresAt.Sub(now); until > 3*time.Second {
				t.Fatalf("a read failed with the cached token still valid for %s", until)
			}
			sawFailure = true
		}
		time.Sleep(500 * time.Millisecond)
	}
	if !sawWarning || !sawFailure {
		t.Fatalf("saw warning=%v failure=%v; want stale serves, then failures", sawWarning, sawFailure)
	}

	manus.ClearOutage()
	mints := manus.Mints()
	deadline := time.Now().Add(70 * time.Second) // the back-off window is at most a minute
	for {
		resp, err := v.readToken("manus")
		if err == nil {
			if resp.Data["access_token"] == cached || manus.Mints() != mints+1 {
				t.Fatal("after the outage the read did not get a newly minted token")
			}
			break
		}
		if !strings.Contains(err.Error(), "waits until") {
			t.Fatalf("with Manus back, a read failed other than by the back-off window: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("no token within a minute of Manus coming back")
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// TestPluginReloadReusesToken: `vault plugin reload` starts a new plugin
// process; it must reuse the persisted token instead of minting.
func TestPluginReloadReusesToken(t *testing.T) {
	t.Parallel()
	v := startVault(t)
	manus := startManus(t)
	v.mountConfigured(manus)
	before := v.mustReadToken("manus").Data["access_token"]
	pid := v.pluginPID()

	v.reloadPlugin()
	after := v.mustReadToken("manus").Data["access_token"]
	if v.pluginPID() == pid {
		t.Fatal("the reload did not restart the plugin process; the test would prove nothing")
	}
	if after != before || manus.Mints() != 1 {
		t.Fatalf("after a plugin reload: same token %v, mints %d; want the persisted token", after == before, manus.Mints())
	}
}

// TestVaultRestartReusesToken: a Vault restart on file storage reuses the
// persisted token.
func TestVaultRestartReusesToken(t *testing.T) {
	t.Parallel()
	v := startFileVault(t)
	manus := startManus(t)
	v.mountConfigured(manus)
	before := v.mustReadToken("manus").Data["access_token"]

	v.restart()
	after := v.mustReadToken("manus")
	if after.Data["access_token"] != before || manus.Mints() != 1 {
		t.Fatalf("after a Vault restart: same token %v, mints %d; want the persisted token", after.Data["access_token"] == before, manus.Mints())
	}
	if after.LeaseDuration < 3500 {
		t.Fatalf("lease after restart = %ds", after.LeaseDuration)
	}
}

// TestRaftFailoverReusesToken: a three-node Raft cluster. A read through a
// standby mints on the active node; after the active node stops and another
// takes over, the read returns the same token without a mint.
func TestRaftFailoverReusesToken(t *testing.T) {
	t.Parallel()
	nodes := startRaftCluster(t, 3)
	manus := startManus(t)
	active := nodes[0]
	active.mountConfigured(manus, "verify_credentials=false")
	waitForConfigOn(t, nodes, testClientID)

	standby := nodes[1]
	first := standby.mustReadToken("manus").Data["access_token"]
	if manus.Mints() != 1 {
		t.Fatalf("mints = %d after the first read", manus.Mints())
	}

	active.stop()
	survivors := nodes[1:]
	leader, resp := tokenAfterFailover(t, survivors)
	if resp.Data["access_token"] != first || manus.Mints() != 1 {
		t.Fatalf("after failover: same token %v, mints %d; want the persisted token", resp.Data["access_token"] == first, manus.Mints())
	}
	// And through the remaining standby as well.
	for _, v := range survivors {
		if v != leader && v.mustReadToken("manus").Data["access_token"] != first {
			t.Fatal("the standby served another token")
		}
	}
}

// chaosDuration is how long TestChaos runs: short in `make test`, a full
// minute in `make soak` (E2E_CHAOS_DURATION=60s).
func chaosDuration(t *testing.T) time.Duration {
	if s := os.Getenv("E2E_CHAOS_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("E2E_CHAOS_DURATION: %v", err)
		}
		return d
	}
	return 15 * time.Second
}

// TestChaos reads concurrently while Manus randomly errors, stalls and rate
// limits. Every successful read must return a token valid at that moment,
// no read may take longer than the documented bound, and the plugin must be
// the same healthy process at the end.
func TestChaos(t *testing.T) {
	t.Parallel()
	const requestTimeout = 2 * time.Second
	// A read waits at most request_timeout + 0.5s in the plugin; allow 1.5s
	// for Vault's own request handling on a loaded 2-core machine.
	const readBound = requestTimeout + 2*time.Second
	duration := chaosDuration(t)

	v := startVault(t)
	manus := startManus(t)
	manus.SetLifetime(5 * time.Second) // refresh often during the run
	v.mountConfigured(manus, "request_timeout=2s")
	pid := v.pluginPID()

	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(1, 2))
	manus.SetChaos(func() (standin.Fault, bool) {
		mu.Lock()
		p := rng.Float64()
		stall := time.Duration(1000+rng.IntN(3000)) * time.Millisecond
		mu.Unlock()
		switch {
		case p < 0.35:
			return standin.Fault{}, false // a normal answer
		case p < 0.55:
			return standin.Unavailable(), true
		case p < 0.65:
			return standin.Fault{Status: 500, Body: "<html>Internal Server Error</html>", ContentType: "text/html"}, true
		case p < 0.80:
			return standin.Fault{Status: 429, Body: `{"code":"RESOURCE_EXHAUSTED"}`, Header: map[string]string{"Retry-After": "1"}}, true
		default:
			return standin.Fault{Stall: stall}, true // slow, sometimes past request_timeout
		}
	})

	var ok, failed, slow atomic.Int64
	var wg sync.WaitGroup
	stop := time.Now().Add(duration)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				started := time.Now()
				resp, err := v.readToken("manus")
				took := time.Since(started)
				if took > readBound {
					slow.Add(1)
					t.Errorf("a read took %s, over the %s bound", took, readBound)
				}
				if err != nil {
					failed.Add(1)
					time.Sleep(100 * time.Millisecond)
					continue
				}
				ok.Add(1)
				tok, _ := resp.Data["access_token"].(string)
				if !manus.IsValid(tok) {
					t.Errorf("a successful read returned a token Manus does not accept")
				}
				if time.Now().Add(time.Duration(resp.LeaseDuration) * time.Second).After(manus.ExpiresAt(tok).Add(time.Second)) {
					t.Errorf("a lease of %ds outlives its token", resp.LeaseDuration)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	t.Logf("chaos for %s: %d reads succeeded, %d failed, %d slow; %d token requests, %d mints",
		duration, ok.Load(), failed.Load(), slow.Load(), manus.Requests(), manus.Mints())
	if ok.Load() == 0 {
		t.Fatal("no read succeeded during the chaos run")
	}

	// Calm again: the plugin recovers in the same process.
	manus.SetChaos(nil)
	deadline := time.Now().Add(70 * time.Second)
	for {
		if _, err := v.readToken("manus"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the plugin did not recover after the chaos ended")
		}
		time.Sleep(500 * time.Millisecond)
	}
	if v.health() != http.StatusOK {
		t.Fatal("vault is not healthy after the chaos run")
	}
	if v.pluginPID() != pid {
		t.Fatal("the plugin process was restarted during the chaos run (crash?)")
	}
}
