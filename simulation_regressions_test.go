package manus

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// Unit tests for bugs the cluster simulation (simulation_test.go) found,
// each the shortest history it reported, written out by hand, and the seed
// that found it.

// TestStandbyDropsATokenWhoseReplacementManusRejected: Invalidate reads
// storage as it is when the call runs, which can be after later writes (a
// follower applies the log in batches, then invalidates each key). A
// standby that finds the active node's newer token marked rejected serves
// neither it nor the older token it replaced: it forwards, and the active
// node mints. Seed 225, shrunk to 5 steps: the users API rejects every
// token; a probe on the active node marks T1 rejected, the next probe mints
// T2 and marks it rejected; a standby applies the three writes in one batch
// and kept serving T1.
func TestStandbyDropsATokenWhoseReplacementManusRejected(t *testing.T) {
	ctx := context.Background()
	active := newTestEnv(t)
	active.configure(map[string]any{"leased_reads": false})
	standby := active.standby()
	first := accessTokenOf(standby.mustReadToken())

	// What the standby finds once the active node has replaced the first
	// token and Manus has rejected the replacement.
	active.clock.Advance(minRefreshInterval)
	cfg, _ := readConfig(ctx, active.storage)
	now := active.clock.Now()
	replacement := storedToken{AccessToken: "standin_replacement", MintedAt: now, ExpiresAt: now.Add(time.Hour), ConfigGeneration: cfg.Generation, Rejected: true}
	if err := writeStoredToken(ctx, active.storage, replacement); err != nil {
		t.Fatal(err)
	}
	standby.b.InvalidateKey(ctx, tokenStorageKey)
	resp, err := standby.request(logical.ReadOperation, "token", nil)
	if !forwarded(err) {
		served := "nothing"
		if err == nil && accessTokenOf(resp) == first {
			served = "the token the rejected one replaced"
		}
		t.Fatalf("the standby answered %v and served %s; want the read forwarded", err, served)
	}
}
