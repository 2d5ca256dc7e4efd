package manus

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// readOnlyStorage refuses writes like a performance standby does.
type readOnlyStorage struct{ logical.Storage }

func (readOnlyStorage) Put(context.Context, *logical.StorageEntry) error { return logical.ErrReadOnly }

func TestTokenIsPersistedAndRestored(t *testing.T) {
	for _, mode := range readModes {
		t.Run(mode.name, func(t *testing.T) { testTokenIsPersistedAndRestored(t, mode) })
	}
}

func testTokenIsPersistedAndRestored(t *testing.T, mode readMode) {
	e := newTestEnv(t)
	e.configure(mode.config())
	minted := accessTokenOf(e.readToken())

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
	resp := e.readToken()
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
	old := accessTokenOf(e.readToken())
	// Storage still holding a token from the previous credentials (say the
	// delete failed) must not be served under the new ones.
	stored, _ := readStoredToken(context.Background(), e.storage)
	resp, err := e.writeConfig(map[string]any{"request_timeout": 20, "verify_credentials": false})
	requireOK(t, resp, err)
	if err := writeStoredToken(context.Background(), e.storage, stored.token(), stored.ConfigGeneration); err != nil {
		t.Fatal(err)
	}
	e.b.Clean(context.Background())
	e.b = e.newBackend()
	if accessTokenOf(e.readToken()) == old {
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
	e.readToken()
	if e.manus.Mints() != 2 {
		t.Fatal("an expired persisted token was not replaced")
	}
}

func TestPersistFailureDoesNotFailRead(t *testing.T) {
	for name, breakStorage := range map[string]func(e *testEnv){
		"storage error": func(e *testEnv) { e.storage.(*logical.InmemStorage).Underlying().FailPut(true) },
		"read-only":     func(e *testEnv) { e.b.storage = readOnlyStorage{e.storage} },
	} {
		t.Run(name, func(t *testing.T) {
			e := newTestEnv(t)
			e.configure(map[string]any{"verify_credentials": false})
			breakStorage(e)
			resp := e.readToken()
			if !e.manus.IsValid(accessTokenOf(resp)) {
				t.Fatal("the read failed because the token could not be persisted")
			}
			if accessTokenOf(e.readToken()) != accessTokenOf(resp) || e.manus.Mints() != 1 {
				t.Fatal("the unpersisted token was not kept in memory")
			}
		})
	}
}

func TestInvalidateTokenReloadsOtherNodesToken(t *testing.T) {
	active := newTestEnv(t)
	active.configure(nil)
	// A standby sharing the storage has loaded the cache earlier.
	standby := *active
	standby.b = active.newBackend()
	first := accessTokenOf(standby.readToken())

	// The active node refreshes; replication invalidates the standby's key.
	active.clock.Advance(55 * time.Minute)
	second := accessTokenOf(active.readToken())
	if second == first {
		t.Fatal("the active node did not refresh")
	}
	active.waitForStoredToken(second) // persisted just after the readers are answered
	standby.b.InvalidateKey(context.Background(), tokenStorageKey)
	if got := accessTokenOf(standby.readToken()); got != second || active.manus.Mints() != 2 {
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
	e.readToken() // loads the cache
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

func TestTokenOfReplacedConfigIsNeverPersisted(t *testing.T) {
	e := newTestEnv(t)
	e.configure(map[string]any{"verify_credentials": false})
	cache, err := e.b.tokenCache(context.Background(), &logical.Request{Storage: e.storage, MountPoint: "manus/"})
	if err != nil {
		t.Fatal(err)
	}
	// Hold the mint's persist back until the config is gone: the order in
	// which only the generation check can keep the token out of storage.
	entered, release, persisted := make(chan struct{}), make(chan struct{}), make(chan struct{})
	persist := cache.persist
	cache.persist = func(tok *accessToken) {
		close(entered)
		<-release
		persist(tok)
		close(persisted)
	}
	e.readToken()
	// The mint persists after waking its readers; wait until it has
	// started to, or a slow scheduler lets the delete cancel it first.
	<-entered
	if _, err := e.request(logical.DeleteOperation, "config", nil); err != nil {
		t.Fatal(err)
	}
	close(release)
	<-persisted
	if st, _ := readStoredToken(context.Background(), e.storage); st != nil {
		t.Fatal("a token of a deleted config was persisted")
	}
}
