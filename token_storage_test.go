package manus

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// readOnlyStorage refuses writes like a performance standby does, with the
// error as it reaches an external plugin: over gRPC only the text of
// logical.ErrReadOnly survives (sdk/plugin/grpc_storage.go).
type readOnlyStorage struct{ logical.Storage }

var errReadOnlyOverGRPC = errors.New(logical.ErrReadOnly.Error())

func (readOnlyStorage) Put(context.Context, *logical.StorageEntry) error { return errReadOnlyOverGRPC }
func (readOnlyStorage) Delete(context.Context, string) error             { return errReadOnlyOverGRPC }

func TestTokenIsPersistedAndRestored(t *testing.T) {
	for _, mode := range readModes {
		t.Run(mode.name, func(t *testing.T) { testTokenIsPersistedAndRestored(t, mode) })
	}
}

func testTokenIsPersistedAndRestored(t *testing.T, mode readMode) {
	e := newTestEnv(t)
	e.configure(mode.config())
	minted := accessTokenOf(e.mustReadToken())

	st, err := readStoredToken(context.Background(), e.storage)
	cfg, _ := readConfig(context.Background(), e.storage)
	if err != nil || st == nil || st.AccessToken != minted || st.ConfigGeneration != cfg.Generation {
		t.Fatal("the minted token was not persisted with its config generation")
	}

	// A plugin reload, Vault restart or leader change: a new backend on the
	// same storage reuses the token without minting.
	e.b.Clean(context.Background())
	e.b = e.newBackend()
	e.clock.Advance(10 * time.Minute)
	resp := e.mustReadToken()
	if accessTokenOf(resp) != minted || e.manus.Mints() != 1 {
		t.Fatalf("after a restart: same token %v, mints %d; want the persisted token and no mint", accessTokenOf(resp) == minted, e.manus.Mints())
	}
	// 50 minutes left: a lease of 49, or a re-read once the refresh
	// point (40 minutes away) and its spread of up to a minute have passed.
	switch hold := mode.holdFor(t, resp); {
	case mode.leased && hold != 49*time.Minute,
		!mode.leased && (hold < 40*time.Minute || hold > 41*time.Minute+2*time.Second):
		t.Fatalf("the restored token is held for %s", hold)
	}
	if c := e.b.tokens.Load(); c == nil || !c.restored {
		t.Fatal("the cache does not record that its token came from storage")
	}
}

func TestPersistedTokenOfOldConfigIsNotRestored(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	old := accessTokenOf(e.mustReadToken())
	// Storage still holding a token from the previous credentials (say the
	// delete failed) must not be served under the new ones.
	stored, _ := readStoredToken(context.Background(), e.storage)
	resp, err := e.writeConfig(map[string]any{"request_timeout": 20, "verify_credentials": false})
	requireOK(t, resp, err)
	if err := writeStoredToken(context.Background(), e.storage, *stored); err != nil {
		t.Fatal(err)
	}
	e.b.Clean(context.Background())
	e.b = e.newBackend()
	if accessTokenOf(e.mustReadToken()) == old {
		t.Fatal("a token of the previous config was restored")
	}
}

func TestConfigDeleteRemovesPersistedToken(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	if _, err := e.request(logical.DeleteOperation, "config", nil); err != nil {
		t.Fatal(err)
	}
	if st, _ := readStoredToken(context.Background(), e.storage); st != nil {
		t.Fatal("the token of a deleted config stayed in storage")
	}
}

func TestExpiredPersistedTokenIsNotRestored(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.b.Clean(context.Background())
	e.clock.Advance(time.Hour)
	e.b = e.newBackend()
	e.mustReadToken()
	if e.manus.Mints() != 2 {
		t.Fatal("an expired persisted token was not replaced")
	}
}

func TestPersistFailureDoesNotFailRead(t *testing.T) {
	e := newTestEnv(t)
	e.configure(map[string]any{"verify_credentials": false})
	e.storage.(*logical.InmemStorage).Underlying().FailPut(true)
	resp := e.mustReadToken()
	if !e.manus.IsValid(accessTokenOf(resp)) {
		t.Fatal("the read failed because the token could not be persisted")
	}
	if accessTokenOf(e.mustReadToken()) != accessTokenOf(resp) || e.manus.Mints() != 1 {
		t.Fatal("the unpersisted token was not kept in memory")
	}
}

// TestRefusedPersistMakesTheNodeForward: a node whose replication state
// says it may write, but whose storage refuses the token with the read-only
// error (as it arrives over gRPC: the text only), is read-only for a window
// that doubles with each refusal in a row. The read that minted is
// answered; the token stays served where no lease is needed; a leased read
// is forwarded; once the window is over the node tries again, minting once,
// and is refused for twice as long.
func TestRefusedPersistMakesTheNodeForward(t *testing.T) {
	for _, mode := range readModes {
		t.Run(mode.name, func(t *testing.T) {
			e := newTestEnv(t)
			e.configure(map[string]any{"verify_credentials": false, "leased_reads": mode.leased})
			e.b.store.storage = readOnlyStorage{e.storage}
			first := accessTokenOf(e.mustReadToken())
			waitFor(t, func() bool { return e.readStatus(false)["node_can_mint"] == false })
			if role := e.readStatus(false)["node_role"]; role != "read-only storage" {
				t.Fatalf("node_role = %v, want read-only storage", role)
			}
			resp, err := e.request(logical.ReadOperation, "token", nil)
			if mode.leased {
				if !forwarded(err) {
					t.Fatalf("a leased read on a node that cannot store answered %v, %v; want the read-only error that forwards it", resp, err)
				}
			} else {
				requireOK(t, resp, err)
				if accessTokenOf(resp) != first {
					t.Fatal("the fresh token was not served from memory")
				}
			}
			e.clock.Advance(55 * time.Minute) // due for refresh, the window long over
			e.readModeAnswer(mode)
			waitFor(t, func() bool { return e.readStatus(false)["node_can_mint"] == false })
			if e.manus.Requests() != 2 {
				t.Fatalf("%d token requests, want 2: one more once the window is over", e.manus.Requests())
			}
			e.clock.Advance(firstRefusalWindow) // within the doubled window
			if mode.leased {
				if _, err := e.request(logical.ReadOperation, "token", nil); !forwarded(err) {
					t.Fatalf("a leased read in the doubled window answered %v; want it forwarded", err)
				}
			}
			if e.readStatus(false)["node_can_mint"] != false {
				t.Fatal("the second refusal in a row did not double the window")
			}
		})
	}
}

// readModeAnswer reads the token once, accepting a forward for a leased read
// on a node that may not lease; any other failure fails the test.
func (e *testEnv) readModeAnswer(mode readMode) {
	e.t.Helper()
	resp, err := e.request(logical.ReadOperation, "token", nil)
	if mode.leased && forwarded(err) {
		return
	}
	requireOK(e.t, resp, err)
}

func TestInvalidateTokenReloadsOtherNodesToken(t *testing.T) {
	active := newTestEnv(t)
	active.configure(nil)
	// A standby sharing the storage has loaded the cache earlier.
	standby := *active
	standby.b = active.newBackend()
	first := accessTokenOf(standby.mustReadToken())

	// The active node refreshes; replication invalidates the standby's key.
	active.clock.Advance(55 * time.Minute)
	second := accessTokenOf(active.mustReadToken())
	if second == first {
		t.Fatal("the active node did not refresh")
	}
	active.waitForStoredToken(second) // persisted just after the readers are answered
	standby.b.InvalidateKey(context.Background(), tokenStorageKey)
	if got := accessTokenOf(standby.mustReadToken()); got != second || active.manus.Mints() != 2 {
		t.Fatalf("the standby did not pick up the active node's token (mints=%d)", active.manus.Mints())
	}
	standby.b.Clean(context.Background())
}

// waitForStoredToken waits until the persisted token is want: a mint
// persists its token right after answering its readers.
func (e *testEnv) waitForStoredToken(want string) {
	e.t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if st, _ := readStoredToken(context.Background(), e.storage); st != nil && st.AccessToken == want {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	e.t.Fatal("the minted token was not persisted")
}

func TestConfigDeleteDuringMintLeavesNoStoredToken(t *testing.T) {
	e := newTestEnv(t)
	e.configure(map[string]any{"verify_credentials": false})
	e.manus.FailNext(stall(300 * time.Millisecond))
	go func() { _, _ = e.request(logical.ReadOperation, "token", nil) }()
	time.Sleep(100 * time.Millisecond) // the mint is in flight
	if _, err := e.request(logical.DeleteOperation, "config", nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // the old mint has finished by now
	if st, _ := readStoredToken(context.Background(), e.storage); st != nil {
		t.Fatal("a mint of the deleted config wrote its token to storage")
	}
}

func TestInvalidateTokenKeepsMintInFlight(t *testing.T) {
	e := newTestEnv(t)
	e.configure(map[string]any{"verify_credentials": false})
	e.mustReadToken() // loads the cache
	e.clock.Advance(55 * time.Minute)
	e.manus.FailNext(stall(300 * time.Millisecond))
	requests := e.manus.Requests()

	got := make(chan error, 1)
	go func() {
		_, err := e.request(logical.ReadOperation, "token", nil)
		got <- err
	}()
	time.Sleep(100 * time.Millisecond)
	e.b.InvalidateKey(context.Background(), tokenStorageKey) // another node wrote a token
	if err := <-got; err != nil {
		t.Fatalf("the read failed: %v", err)
	}
	if e.manus.Requests() != requests+1 {
		t.Fatalf("%d token requests; the invalidation cancelled the mint in flight", e.manus.Requests()-requests)
	}
}

// TestTokenOfReplacedConfigIsNeverPersisted: a mint whose config was
// replaced or deleted before its token is stored never writes it: the store
// checks the stored config's generation under its lock.
func TestTokenOfReplacedConfigIsNeverPersisted(t *testing.T) {
	e := newTestEnv(t)
	e.configure(map[string]any{"verify_credentials": false})
	cfg, _ := readConfig(context.Background(), e.storage)
	tok := newAccessToken("standin_late", e.clock.Now(), time.Hour)
	if _, err := e.request(logical.DeleteOperation, "config", nil); err != nil {
		t.Fatal(err)
	}
	e.b.store.persist(tok, cfg.Generation)
	if st, _ := readStoredToken(context.Background(), e.storage); st != nil {
		t.Fatal("a token of a deleted config was persisted")
	}
}

// TestStoredTokenIsNeverOverwrittenByAnOlderOne: mints can reach the store
// out of order (a refresh can start before the last mint's write), and a
// probe's rejection mark can land after a newer mint was stored. Neither
// writes over the newer token.
func TestStoredTokenIsNeverOverwrittenByAnOlderOne(t *testing.T) {
	e := newTestEnv(t)
	e.configure(map[string]any{"verify_credentials": false})
	cfg, _ := readConfig(context.Background(), e.storage)
	older := newAccessToken("standin_older", e.clock.Now(), time.Hour)
	newer := newAccessToken("standin_newer", e.clock.Now().Add(time.Second), time.Hour)
	e.b.store.persist(newer, cfg.Generation)
	e.b.store.persist(older, cfg.Generation)
	e.b.store.markRejected(older, cfg.Generation)
	st, _ := readStoredToken(context.Background(), e.storage)
	if st == nil || st.AccessToken != newer.AccessToken || st.Rejected {
		t.Fatalf("stored %+v; want the newer token, not rejected", st)
	}
	e.b.store.markRejected(newer, cfg.Generation)
	if st, _ := readStoredToken(context.Background(), e.storage); st == nil || !st.Rejected {
		t.Fatal("the stored token's own rejection was not stored")
	}
}

// TestStandbyTakesTheRefreshedToken: after token/refresh on the active node
// the standby serves the new token, even when it expires before the one it
// replaced: what the active node stored is the newer decision.
func TestStandbyTakesTheRefreshedToken(t *testing.T) {
	active := newTestEnv(t)
	active.configure(map[string]any{"leased_reads": false})
	standby := active.standby()
	first := accessTokenOf(standby.mustReadToken())

	active.manus.SetLifetime(20 * time.Minute) // the new token expires first
	active.clock.Advance(minRefreshInterval)
	resp, err := active.refresh()
	requireOK(t, resp, err)
	second := active.manus.Issued()[1]
	active.waitForStoredToken(second)
	standby.b.InvalidateKey(context.Background(), tokenStorageKey)
	if got := accessTokenOf(standby.mustReadToken()); got != second || got == first {
		t.Fatal("the standby kept serving the token token/refresh replaced")
	}
}

// TestRejectionMarkBeforeTheMintsOwnWrite: a probe can reject a token whose
// mint has not stored it yet (the mint's write runs after its readers are
// answered). The mark is stored all the same, and the mint's late write
// does not undo it, so no other node serves the rejected token.
func TestRejectionMarkBeforeTheMintsOwnWrite(t *testing.T) {
	e := newTestEnv(t)
	e.configure(map[string]any{"verify_credentials": false})
	cfg, _ := readConfig(context.Background(), e.storage)
	older := newAccessToken("standin_older", e.clock.Now(), time.Hour)
	rejected := newAccessToken("standin_rejected", e.clock.Now().Add(time.Second), time.Hour)
	e.b.store.persist(older, cfg.Generation)
	e.b.store.markRejected(rejected, cfg.Generation)
	e.b.store.persist(rejected, cfg.Generation) // the mint's write, late
	st, _ := readStoredToken(context.Background(), e.storage)
	if st == nil || st.AccessToken != rejected.AccessToken || !st.Rejected {
		t.Fatalf("stored %+v; want the rejected token, marked", st)
	}
}
