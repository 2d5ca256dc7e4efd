package manus

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/manus-community/vault-plugin-secrets-manus/internal/standin"
)

// rereadTTL is a non-leased read's ttl, checked to be what consul-template
// needs: an integer of at least one second, next to a rotation_period.
func rereadTTL(t testing.TB, resp *logical.Response) int64 {
	t.Helper()
	ttl, ok := resp.Data["ttl"].(int64)
	if _, hasPeriod := resp.Data["rotation_period"].(int64); !ok || !hasPeriod || ttl < 1 {
		t.Fatalf("non-leased read: ttl %#v, rotation_period %#v; want integers, ttl >= 1", resp.Data["ttl"], resp.Data["rotation_period"])
	}
	return ttl
}

func TestNonLeasedReadAnswersWithRotatingSecretFields(t *testing.T) {
	e := newTestEnv(t)
	e.configure(map[string]any{"leased_reads": false})
	resp := e.mustReadToken()
	if resp.Secret != nil {
		t.Fatal("a non-leased read carries a Secret, so Vault would register a lease")
	}
	// Minted at the clock's now: refresh due after 50 minutes, spread by
	// up to a minute.
	ttl := rereadTTL(t, resp)
	if ttl < 3000 || ttl > 3061 {
		t.Errorf("ttl = %d, want 3000 to 3061 (refresh point plus at most a minute)", ttl)
	}
	if resp.Data["rotation_period"] != int64(3000) {
		t.Errorf("rotation_period = %v, want 3000", resp.Data["rotation_period"])
	}
	if resp.Data["last_vault_rotation"] != formatTime(e.clock.Now()) {
		t.Errorf("last_vault_rotation = %v, want the mint time %s", resp.Data["last_vault_rotation"], formatTime(e.clock.Now()))
	}
	for _, field := range []string{"access_token", "token_type", "expires_at", "expires_in"} {
		if resp.Data[field] == nil {
			t.Errorf("non-leased read lacks %s", field)
		}
	}
	// Over the wire the numbers must stay JSON numbers: consul-template
	// asserts json.Number and panics on a string.
	wire, err := json.Marshal(resp.Data)
	if err != nil {
		t.Fatal(err)
	}
	var decoded map[string]any
	dec := json.NewDecoder(strings.NewReader(string(wire)))
	dec.UseNumber()
	if err := dec.Decode(&decoded); err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{"ttl", "rotation_period"} {
		if _, ok := decoded[field].(json.Number); !ok {
			t.Errorf("%s is %T on the wire, want a JSON number", field, decoded[field])
		}
	}
}

// TestNonLeasedRereadsAreSpreadAfterTheRefreshPoint: a fleet that reads in
// the same second is told to come back over a window that starts at the
// refresh point and spans a tenth of the refresh threshold, at most a
// minute; never before the refresh point, so every re-read mints or finds
// the new token.
func TestNonLeasedRereadsAreSpreadAfterTheRefreshPoint(t *testing.T) {
	for _, tc := range []struct {
		threshold time.Duration
		spread    int64
	}{{10 * time.Minute, 60}, {2 * time.Minute, 12}, {5 * time.Second, 0}} {
		t.Run(tc.threshold.String(), func(t *testing.T) {
			e := newTestEnv(t)
			e.configure(map[string]any{"leased_reads": false, "refresh_threshold": int(tc.threshold / time.Second)})
			e.clock.Advance(7*time.Minute + 300*time.Millisecond)
			tok := e.b.tokens.Load().current.Load()
			// Seconds to the refresh point, rounded up: 10m and 2m are the
			// threshold itself; 5s is lifted to the least servable life.
			refreshIn := int64((tok.refreshAt(tc.threshold).Sub(e.clock.Now()) + time.Second - 1) / time.Second)
			if tc.threshold >= time.Minute && refreshIn != int64((time.Hour-tc.threshold-7*time.Minute)/time.Second) {
				t.Fatalf("refresh point in %ds: the test's arithmetic is off", refreshIn)
			}
			seen := map[int64]bool{}
			for range 300 {
				ttl := rereadTTL(t, e.mustReadToken())
				reread := e.clock.Now().Add(time.Duration(ttl+1) * time.Second)
				if !reread.After(tok.refreshAt(tc.threshold)) {
					t.Fatalf("ttl = %d: the re-read comes before the refresh point", ttl)
				}
				if ttl > refreshIn+tc.spread || !reread.Before(tok.ExpiresAt) {
					t.Fatalf("ttl = %d, want at most %d and a re-read before the token expires", ttl, refreshIn+tc.spread)
				}
				// With a threshold above the least servable life the
				// re-read even comes while a leased read could still get
				// this token, so a failed mint can fall back to it.
				if tc.threshold >= time.Minute && !reread.Before(tok.ExpiresAt.Add(-tok.safetyMargin())) {
					t.Fatalf("ttl = %d: the re-read comes after the lease would have ended", ttl)
				}
				seen[ttl] = true
			}
			if want := min(tc.spread+1, 10); int64(len(seen)) < want {
				t.Fatalf("300 reads in one instant got %d distinct ttl values, want at least %d", len(seen), want)
			}
		})
	}
}

// TestNonLeasedStaleReadComesBackWhenAMintMayBeTried: during an outage the
// cached token is served with a ttl that ends when the failure back-off
// does, at least a second, and never past the lease a leased read would get.
func TestNonLeasedStaleReadComesBackWhenAMintMayBeTried(t *testing.T) {
	e := newTestEnv(t)
	e.configure(map[string]any{"leased_reads": false})
	e.clock.Advance(55 * time.Minute) // due for refresh, 5 minutes left
	e.manus.SetOutage(standin.Unavailable())
	for range 12 {
		resp := e.mustReadToken()
		if len(resp.Warnings) != 1 {
			t.Fatalf("a stale serve without its warning: %q", resp.Warnings)
		}
		now := e.clock.Now()
		st := e.b.tokens.Load().snapshot()
		tok := e.b.tokens.Load().current.Load()
		ttl := time.Duration(rereadTTL(t, resp)) * time.Second
		lease := tok.leaseTTL(now)
		if st.heldOff.IsZero() {
			t.Fatal("no back-off in force after a failed refresh")
		}
		want := st.heldOff.Sub(now)
		if lease-3*time.Second < want {
			want = lease - 3*time.Second
		}
		want = max((want + time.Second - 1).Truncate(time.Second), time.Second)
		if ttl != want {
			t.Fatalf("stale ttl = %s, want %s (back-off ends in %s, lease %s)", ttl, want, st.heldOff.Sub(now), lease)
		}
		if now.Add(ttl + time.Second).After(tok.ExpiresAt.Add(-tok.safetyMargin())) {
			t.Fatalf("a reader told to come back in %s+1s would hold the token past its lease", ttl)
		}
		if lease <= 4*time.Second {
			break // the token is all but spent: the next read errs, covered elsewhere
		}
		e.clock.Advance(ttl + time.Second) // the Agent comes back
	}
}

// TestReadModeSwitchMintsNothing: writing only leased_reads, with the
// default verify_credentials=true, takes effect on the next read, keeps the
// cached token and asks Manus for nothing; the persisted token stays valid
// for a reloaded plugin or another node.
func TestReadModeSwitchMintsNothing(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	first := accessTokenOf(e.mustReadToken())
	requests := e.manus.Requests()

	for _, leased := range []bool{false, true, false} {
		resp, err := e.writeConfig(map[string]any{"leased_reads": leased})
		requireOK(t, resp, err)
		resp = e.mustReadToken() // checks the answer is in the new mode
		if accessTokenOf(resp) != first || e.manus.Requests() != requests {
			t.Fatalf("switching to leased_reads=%v: same token %v, %d more requests; want the cached token and none",
				leased, accessTokenOf(resp) == first, e.manus.Requests()-requests)
		}
		cfg, _ := readConfig(context.Background(), e.storage)
		if cfg.LeasedReads != leased {
			t.Fatalf("stored leased_reads = %v, want %v", cfg.LeasedReads, leased)
		}
	}

	e.b.Clean(context.Background())
	e.b = e.newBackend()
	resp := e.mustReadToken() // non-leased, from the persisted token
	if accessTokenOf(resp) != first || e.manus.Requests() != requests {
		t.Fatal("after a reload the persisted token was not reused in the new mode")
	}
	if got := e.readStatus(false); got["leased_reads"] != false || got["token_lease_ttl"] != int64(0) {
		t.Fatalf("status leased_reads %v, token_lease_ttl %v; want false and 0", got["leased_reads"], got["token_lease_ttl"])
	}

	// A write that also changes the credential side still replaces the
	// token, verified as always.
	resp, err := e.writeConfig(map[string]any{"leased_reads": true, "request_timeout": 5})
	requireOK(t, resp, err)
	if e.manus.Requests() != requests+1 || accessTokenOf(e.mustReadToken()) == first {
		t.Fatal("a write of request_timeout with leased_reads did not verify and replace the token")
	}
}

func TestLeasedReadsDefaultsAndOldConfigs(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	resp, err := e.request(logical.ReadOperation, "config", nil)
	requireOK(t, resp, err)
	if resp.Data["leased_reads"] != true {
		t.Fatalf("leased_reads = %v, want true by default", resp.Data["leased_reads"])
	}
	// A config stored by v0.1.0 has no leased_reads: it reads as leased.
	entry, _ := e.storage.Get(context.Background(), configStorageKey)
	var raw map[string]any
	if err := json.Unmarshal(entry.Value, &raw); err != nil {
		t.Fatal(err)
	}
	delete(raw, "leased_reads")
	old, _ := logical.StorageEntryJSON(configStorageKey, raw)
	if err := e.storage.Put(context.Background(), old); err != nil {
		t.Fatal(err)
	}
	e.b.Clean(context.Background())
	e.b = e.newBackend()
	if e.mustReadToken().Secret == nil {
		t.Fatal("a config without leased_reads did not give leased reads")
	}
}
