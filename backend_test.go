package manus

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/manus-community/vault-plugin-secrets-manus/internal/standin"
)

func TestFactoryReportsRunningVersion(t *testing.T) {
	conf := logical.TestBackendConfig()
	conf.StorageView = &logical.InmemStorage{}
	b, err := Factory(context.Background(), conf)
	if err != nil {
		t.Fatal(err)
	}
	versioner, ok := b.(logical.PluginVersioner)
	if !ok {
		t.Fatal("backend does not report a plugin version")
	}
	if got := versioner.PluginVersion().Version; got != Version || !strings.HasPrefix(got, "v") {
		t.Fatalf("PluginVersion = %q, want %q with a leading v", got, Version)
	}
}

func TestFactoryRejectsNilConfig(t *testing.T) {
	if _, err := Factory(context.Background(), nil); err == nil {
		t.Fatal("Factory(nil) succeeded")
	}
}

func TestStorageIsSealWrapped(t *testing.T) {
	b := newBackend(wallClock)
	got := b.SpecialPaths().SealWrapStorage
	if len(got) != 2 || got[0] != configStorageKey || got[1] != tokenStorageKey {
		t.Fatalf("SealWrapStorage = %q, want config and token", got)
	}
}

func TestUnconfiguredMountSaysToWriteConfig(t *testing.T) {
	e := newTestEnv(t)
	status, msg := e.readTokenError()
	if status != http.StatusBadRequest || !strings.Contains(msg, "config") || !strings.Contains(msg, "client_id") {
		t.Fatalf("got %d %q, want a 400 telling the operator to write config", status, msg)
	}
}

func TestMountsAreIndependent(t *testing.T) {
	// Multiplexing serves every mount from one process: two backends must
	// keep separate credentials and separate tokens.
	prod := newTestEnv(t)
	sandbox := prod.secondMount()
	prod.manus.AddClient("tm_sandbox", "sandbox-secret")
	prod.configure(nil)
	sandbox.configure(map[string]any{"client_id": "tm_sandbox", "client_secret": "sandbox-secret"})

	tokProd, tokSandbox := accessTokenOf(prod.mustReadToken()), accessTokenOf(sandbox.mustReadToken())
	if tokProd == tokSandbox {
		t.Fatal("two mounts share a token")
	}
	if prod.manus.Mints() != 2 {
		t.Fatalf("mints = %d, want one per mount", prod.manus.Mints())
	}

	// Dropping one mount's config leaves the other serving.
	if _, err := prod.request(logical.DeleteOperation, "config", nil); err != nil {
		t.Fatal(err)
	}
	if accessTokenOf(sandbox.mustReadToken()) != tokSandbox {
		t.Fatal("deleting one mount's config changed another mount's token")
	}
}

func TestInvalidateConfigDropsCachedToken(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	first := accessTokenOf(e.mustReadToken())

	// Another node changed config: storage holds the new value and Vault
	// calls Invalidate on this node.
	e.manus.AddClient("tm_rotated", "rotated-secret")
	cfg, _ := readConfig(context.Background(), e.storage)
	cfg.ClientID, cfg.ClientSecret = "tm_rotated", "rotated-secret"
	cfg.Generation = newConfigGeneration() // as that node's write did
	if err := writeConfig(context.Background(), e.storage, cfg); err != nil {
		t.Fatal(err)
	}
	e.b.InvalidateKey(context.Background(), configStorageKey)

	second := accessTokenOf(e.mustReadToken())
	if second == first || e.manus.Mints() != 2 {
		t.Fatalf("after Invalidate(config) the cached token was reused (mints=%d)", e.manus.Mints())
	}
}

func TestInvalidateOtherKeyKeepsCachedToken(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	first := accessTokenOf(e.mustReadToken())
	e.b.InvalidateKey(context.Background(), "something-else")
	if accessTokenOf(e.mustReadToken()) != first || e.manus.Mints() != 1 {
		t.Fatal("an unrelated invalidation dropped the token")
	}
}

func TestCleanDropsCachedToken(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.mustReadToken()
	e.b.Clean(context.Background())
	if e.b.tokens.Load() != nil {
		t.Fatal("Clean kept the token cache")
	}
}

// hasMonotonicReading reports whether t carries Go's monotonic clock
// reading, which time.Time.String shows as "m=±...".
func hasMonotonicReading(t time.Time) bool { return strings.Contains(t.String(), " m=") }

// TestMintedTokenFollowsTheWallClock: the backend Vault builds (Factory, real
// clock) keeps a freshly minted token's instants as wall-clock readings
// only, as it does a token restored from storage. A monotonic reading would
// survive a host suspend or VM pause and keep an expired token "fresh".
// And what a reader is told agrees with itself: expires_in is expires_at
// minus now, to the second.
func TestMintedTokenFollowsTheWallClock(t *testing.T) {
	if hasMonotonicReading(wallClock()) {
		t.Fatal("wallClock returns a monotonic reading")
	}
	manus := standin.New()
	manus.AddClient(testClientID, testClientSecret)
	server := httptest.NewServer(manus)
	defer server.Close()

	storage := &logical.InmemStorage{}
	conf := logical.TestBackendConfig()
	conf.StorageView = storage
	lb, err := Factory(context.Background(), conf)
	if err != nil {
		t.Fatal(err)
	}
	b := lb.(*backend)
	defer b.Clean(context.Background())
	request := func(op logical.Operation, path string, data map[string]any) *logical.Response {
		resp, err := b.HandleRequest(context.Background(), &logical.Request{Operation: op, Path: path, Data: data, Storage: storage, MountPoint: "manus/"})
		requireOK(t, resp, err)
		return resp
	}
	request(logical.CreateOperation, "config", map[string]any{"client_id": testClientID, "client_secret": testClientSecret, "base_url": server.URL})

	tok := b.tokens.Load().current.Load()
	if tok == nil || hasMonotonicReading(tok.MintedAt) || hasMonotonicReading(tok.ExpiresAt) {
		t.Fatalf("the minted token keeps a monotonic reading: minted %s, expires %s", tok.MintedAt, tok.ExpiresAt)
	}
	for range 3 {
		resp := request(logical.ReadOperation, "token", nil)
		now := time.Now()
		expiresAt, err := time.Parse(time.RFC3339, resp.Data["expires_at"].(string))
		if err != nil {
			t.Fatal(err)
		}
		gap := expiresAt.Sub(now) - time.Duration(resp.Data["expires_in"].(int64))*time.Second
		if gap < -time.Second || gap > time.Second {
			t.Fatalf("expires_in %v disagrees with expires_at %s at %s by %s", resp.Data["expires_in"], expiresAt, now, gap)
		}
		time.Sleep(600 * time.Millisecond)
	}
}

func TestColdReadsAfterReloadShareOneCacheAndMint(t *testing.T) {
	e := newTestEnv(t)
	e.configure(map[string]any{"verify_credentials": false})
	e.b.Clean(context.Background()) // as after a plugin reload: nothing loaded
	e.b = e.newBackend()
	e.manus.FailNext(stall(200 * time.Millisecond))

	e.concurrentReads(100)
	if e.manus.Requests() != 1 {
		t.Fatalf("100 cold reads on a fresh backend made %d token requests, want 1", e.manus.Requests())
	}
}

func TestConfigWriteDuringRefreshNeverServesOldToken(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	old := e.manus.Issued()[0]
	read := e.readDuringConfigChange("token", nil, map[string]any{"request_timeout": 5, "verify_credentials": false})
	if read == nil || read.IsError() {
		t.Fatal("the read cut short by the config change failed; it should read again from the new config")
	}
	if accessTokenOf(read) == old || len(read.Warnings) != 0 {
		t.Fatal("a read finished after the config change was served the old credentials' token")
	}
}

// readDuringConfigChange reads path while the mount's token is being
// refreshed and, meanwhile, writes change to config (which replaces the
// cache the read is waiting on). It returns the read's answer.
func (e *testEnv) readDuringConfigChange(path string, data, change map[string]any) *logical.Response {
	e.t.Helper()
	e.clock.Advance(55 * time.Minute) // due for refresh, still servable
	e.manus.FailNext(stall(500 * time.Millisecond))
	got := make(chan *logical.Response, 1)
	go func() {
		resp, _ := e.request(logical.ReadOperation, path, data)
		got <- resp
	}()
	time.Sleep(100 * time.Millisecond) // the refresh is in flight
	resp, err := e.writeConfig(change)
	requireOK(e.t, resp, err)
	return <-got
}

// TestStatusProbeReadsThroughAConfigChange: the status probe gets its token
// as a token read does, so a config write that replaces the cache while the
// probe waits on a mint costs the probe nothing either.
func TestStatusProbeReadsThroughAConfigChange(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	status := e.readDuringConfigChange("status", map[string]any{"probe": true}, map[string]any{"request_timeout": 5, "verify_credentials": false})
	if status == nil || status.IsError() {
		t.Fatalf("status read failed: %v", status)
	}
	if status.Data["probe_ok"] != true {
		t.Fatalf("probe_ok = %v, probe_error = %q; the probe should read again from the new config", status.Data["probe_ok"], status.Data["probe_error"])
	}
	if e.manus.Mints() != 2 {
		t.Fatalf("%d mints, want 2 (the first config's and the new one's)", e.manus.Mints())
	}
}

// TestReadCutShortByAConfigChangeAnswersInTheNewMode: a read that goes on
// with the new cache after a config write answers as the new config says,
// not as the replaced one did.
func TestReadCutShortByAConfigChangeAnswersInTheNewMode(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil) // leased reads
	read := e.readDuringConfigChange("token", nil, map[string]any{"request_timeout": 5, "leased_reads": false, "verify_credentials": false})
	if read == nil || read.IsError() {
		t.Fatalf("the read cut short by the config change failed: %v", read)
	}
	if read.Secret != nil || read.Data["ttl"] == nil {
		t.Fatalf("the read answered with a lease (%v) and ttl %v; the config it finished under has leased_reads=false", read.Secret != nil, read.Data["ttl"])
	}
}

// TestReadThatCannotLoadTheCacheCountsAsFailed: a stored config the client
// cannot be built from (here a ca_cert that no longer parses) fails the read
// and counts it as a failed read, like every other failure.
func TestReadThatCannotLoadTheCacheCountsAsFailed(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	ctx := context.Background()
	cfg, err := readConfig(ctx, e.storage)
	if err != nil {
		t.Fatal(err)
	}
	cfg.CACert = "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"
	if err := writeConfig(ctx, e.storage, cfg); err != nil {
		t.Fatal(err)
	}
	e.b.invalidate(ctx, configStorageKey) // as if another node wrote it

	if _, err := e.request(logical.ReadOperation, "token", nil); err == nil {
		t.Fatal("a read with an unloadable ca_cert succeeded")
	}
	if got := e.b.stats.reads.failed.Load(); got != 1 {
		t.Fatalf("failed reads = %d, want 1", got)
	}
}

// TestNoCacheIsBuiltAfterClean: a read that reaches a backend Vault has
// cleaned (a reload or an unmount racing it) builds and keeps nothing, and
// says why.
func TestNoCacheIsBuiltAfterClean(t *testing.T) {
	e := newTestEnv(t)
	e.configure(map[string]any{"verify_credentials": false})
	e.b.Clean(context.Background())
	status, msg := e.readTokenError()
	if status != http.StatusServiceUnavailable || !strings.Contains(msg, "reloaded") {
		t.Fatalf("got %d %q; want a 503 saying the plugin was reloaded or the mount disabled", status, msg)
	}
	if e.b.tokens.Load() != nil || e.manus.Requests() != 0 {
		t.Fatal("a cleaned backend built a cache, or minted")
	}
}

// TestColdCacheBuildHonoursTheCallerDeadline: a read waiting on a cache
// build (storage slow to answer) gives up when its own request does; the
// build goes on for the readers that still wait.
func TestColdCacheBuildHonoursTheCallerDeadline(t *testing.T) {
	e := newTestEnv(t)
	gate := e.coldBackendOnGatedStorage()
	ctx, cancel := context.WithCancel(context.Background())
	answered := make(chan error, 1)
	go func() {
		_, err := e.b.HandleRequest(ctx, &logical.Request{Operation: logical.ReadOperation, Path: "token", Storage: e.storage, MountPoint: "manus/"})
		answered <- err
	}()
	<-gate.entered
	cancel()
	select {
	case err := <-answered:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("the abandoned read answered %v; want its own context's error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a read whose request ended kept waiting for the cache build")
	}
	close(gate.release)
	e.mustReadToken()
}
