// Package manus is a Vault secrets engine that keeps a Manus Team User
// Management API client_id/client_secret pair and hands out the short-lived
// bearer tokens minted from it, one shared token per mount.
package manus

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
	"golang.org/x/sync/singleflight"
)

// Version is stamped at build time (scripts/build-plugin.sh); it must equal
// the -version given to `vault plugin register`.
var Version = "v0.0.0-dev"

const operationPrefixManus = "manus"

var errNotConfigured = errors.New("this mount has no Manus credentials yet: write client_id and client_secret to its config path first (vault write <mount>/config client_id=... client_secret=...)")

var errConfigConflict = errors.New("nothing was stored: another write changed this mount's config in the meantime (while this one was being verified); read the config and write again")

type backend struct {
	*framework.Backend

	clock           func() time.Time // wallClock outside tests
	retry           retryPolicy
	node            *clusterNode // also the system view the framework sees
	store           *tokenStore
	stats           *mountStats
	metrics         *mountMetrics
	allowedBaseURLs allowedBaseURLs
	// mount is learnt from the first request, for log lines: Vault does not
	// tell a plugin where it is mounted.
	mount atomic.Pointer[string]

	// mu serialises changes of the cache slot (tokens); it is never held
	// while a cache is built. swaps counts them, so a cache built without
	// mu is installed only if nothing changed meanwhile.
	mu      sync.Mutex
	swaps   atomic.Uint64
	loading singleflight.Group
	stopped atomic.Bool // by Clean: no cache is built afterwards
	tokens  atomic.Pointer[tokenCache]

	// upstream, when set (tests only), carries a config's requests to Manus
	// instead of the transport newManusClient builds.
	upstream func(cfg *manusConfig) http.RoundTripper
}

var _ logical.Factory = Factory

// Factory builds one backend per mount; one process serves every mount, so
// all state lives on the backend.
func Factory(ctx context.Context, conf *logical.BackendConfig) (logical.Backend, error) {
	if conf == nil {
		return nil, errors.New("configuration passed into backend is nil")
	}
	b := newBackend(wallClock)
	if err := b.setup(ctx, conf); err != nil {
		return nil, err
	}
	return b, nil
}

// wallClock is time.Now without the monotonic reading, which stops while the
// host is suspended: Manus judges expiry by the wall clock.
func wallClock() time.Time { return time.Now().Round(0) }

func newBackend(clock func() time.Time) *backend {
	b := &backend{clock: clock, retry: defaultRetryPolicy, stats: newMountStats()}
	b.Backend = &framework.Backend{
		BackendType:    logical.TypeLogical,
		Help:           strings.TrimSpace(backendHelp),
		RunningVersion: Version,
		Paths: []*framework.Path{
			b.pathConfig(),
			b.pathToken(),
			b.pathTokenRefresh(),
			b.pathStatus(),
			b.pathMetrics(),
		},
		PathsSpecial: &logical.Paths{
			SealWrapStorage: []string{configStorageKey, tokenStorageKey},
		},
		Secrets:    []*framework.Secret{b.secretAccessToken()},
		Invalidate: b.invalidate,
		Clean:      b.clean,
	}
	b.metrics = newMountMetrics(Version, b.view, b.stats.requests, b.stats.mintDuration)
	return b
}

func (b *backend) setup(ctx context.Context, conf *logical.BackendConfig) error {
	allowed, err := allowedBaseURLsFromEnv()
	if err != nil {
		return err
	}
	b.allowedBaseURLs = allowed
	sys := conf.System
	if sys == nil {
		sys = &logical.StaticSystemView{}
	}
	b.node = newClusterNode(sys, b.clock)
	// A copy, so the caller's config keeps the system view it passed.
	withNode := *conf
	withNode.System = b.node
	if err := b.Setup(ctx, &withNode); err != nil {
		return err
	}
	b.store = &tokenStore{storage: conf.StorageView, node: b.node, logger: b.log}
	return nil
}

func (b *backend) HandleRequest(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	if b.mount.Load() == nil && req.MountPoint != "" {
		b.mount.Store(&req.MountPoint)
	}
	return b.Backend.HandleRequest(ctx, req)
}

func (b *backend) log() hclog.Logger {
	if mount := b.mount.Load(); mount != nil {
		return b.Logger().With("mount", *mount)
	}
	return b.Logger()
}

// invalidate runs when another node changed a key: a new config drops the
// cache, a new token is taken into it.
func (b *backend) invalidate(ctx context.Context, key string) {
	switch key {
	case configStorageKey:
		b.swapTokenCache(nil, errMountReconfigured)
	case tokenStorageKey:
		if c := b.tokens.Load(); c != nil {
			c.restore(b.store.load(ctx))
		}
	}
}

func (b *backend) clean(_ context.Context) {
	b.stopped.Store(true)
	b.swapTokenCache(nil, errPluginStopped)
	b.metrics.drop()
}

// readToken serves one read (a token read or the status probe) and counts
// how it was answered. A read whose mint a config write cut short goes on
// with the new cache.
func (b *backend) readToken(ctx context.Context) (servedToken, error) {
	served, err := b.serveToken(ctx)
	b.stats.countRead(served.outcome, err)
	return served, err
}

func (b *backend) serveToken(ctx context.Context) (servedToken, error) {
	cache, err := b.loadTokenCache(ctx)
	if err != nil {
		return servedToken{}, err
	}
	served, err := cache.serve(ctx)
	if next := b.tokens.Load(); errors.Is(err, errMountReconfigured) && next != nil && next != cache {
		served, err = next.serve(ctx)
	}
	return served, err
}

// loadTokenCache returns the mount's cache, building it from storage if
// needed: callers share one detached build and each waits only as long as
// its request may; a build overtaken by a change starts over.
func (b *backend) loadTokenCache(ctx context.Context) (*tokenCache, error) {
	build := context.WithoutCancel(ctx)
	for range 5 {
		if c := b.tokens.Load(); c != nil {
			return c, nil
		}
		done := b.loading.DoChan("cache", func() (any, error) { return b.buildAndInstall(build) })
		var built singleflight.Result
		select {
		case built = <-done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if built.Err != nil {
			return nil, built.Err
		}
		if c := built.Val.(*tokenCache); c != nil {
			return c, nil
		}
	}
	return nil, errMountReconfigured
}

// buildAndInstall returns nil when the slot changed while it built.
func (b *backend) buildAndInstall(ctx context.Context) (*tokenCache, error) {
	swaps := b.swaps.Load()
	cfg, err := readConfig(ctx, b.store.storage)
	if err != nil {
		return nil, err
	}
	if cfg == nil {
		return nil, errNotConfigured
	}
	c, err := b.newTokenCache(cfg)
	if err != nil {
		return nil, err
	}
	c.restore(b.store.load(ctx))
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped.Load() {
		c.close(errPluginStopped)
		return nil, errPluginStopped
	}
	if b.swaps.Load() != swaps || b.tokens.Load() != nil {
		c.close(errMountReconfigured)
		return nil, nil
	}
	b.swapTokenCacheLocked(c, nil)
	return c, nil
}

func (b *backend) newTokenCache(cfg *manusConfig) (*tokenCache, error) {
	if err := b.allowedBaseURLs.permit(cfg.BaseURL); err != nil {
		return nil, fmt.Errorf("the stored config cannot be used, and nothing is sent: %w", err)
	}
	logger := b.log()
	client, err := newManusClient(cfg, b.clock, logger)
	if err != nil {
		return nil, err
	}
	if b.upstream != nil {
		client.transport = b.upstream(cfg)
	}
	return newTokenCache(cfg, cacheParts{
		minter: &minter{client: client, clientID: cfg.shownClientID(), logger: logger, stats: b.stats, policy: b.retry, clock: b.clock},
		client: client,
		node:   b.node,
		store:  b.store,
		clock:  b.clock,
		logger: logger,
	}), nil
}

// commitConfig stores cfg over base and makes cache, with the token its
// verification minted, the mount's.
func (b *backend) commitConfig(ctx context.Context, s logical.Storage, base, cfg *manusConfig, cache *tokenCache, verified *accessToken) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.writeConfigOverLocked(ctx, s, base, cfg); err != nil {
		return err
	}
	b.store.forget(ctx)
	if verified != nil {
		cache.take(verified) // persisted only now that its config is stored
	}
	b.swapTokenCacheLocked(cache, errMountReconfigured)
	return nil
}

// commitReadMode stores cfg, which differs from base in the read mode only:
// the generation, the stored and the cached token stay.
func (b *backend) commitReadMode(ctx context.Context, s logical.Storage, base, cfg *manusConfig) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.writeConfigOverLocked(ctx, s, base, cfg); err != nil {
		return err
	}
	if c := b.tokens.Load(); c != nil && c.config().Generation == cfg.Generation {
		c.setReadMode(cfg.LeasedReads)
	}
	return nil
}

func (b *backend) deleteConfig(ctx context.Context, s logical.Storage) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	err := s.Delete(ctx, configStorageKey)
	if b.node.noteStorageError(err) {
		return errForwardWrite
	}
	if err != nil {
		return fmt.Errorf("deleting config: %w", err)
	}
	b.store.forget(ctx)
	b.swapTokenCacheLocked(nil, errConfigDeleted)
	return nil
}

// writeConfigOverLocked stores cfg if the stored config is still base; every
// stored write changes it, so this sees any write that got in.
func (b *backend) writeConfigOverLocked(ctx context.Context, s logical.Storage, base, cfg *manusConfig) error {
	current, err := readConfig(ctx, s)
	switch {
	case err != nil:
		return err
	case !sameConfig(current, base):
		return errConfigConflict
	}
	err = writeConfig(ctx, s, cfg)
	if b.node.noteStorageError(err) {
		return errForwardWrite
	}
	return err
}

// swapTokenCache installs c (nil: none) and closes the old cache with why.
func (b *backend) swapTokenCache(c *tokenCache, why *cacheClosedError) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.swapTokenCacheLocked(c, why)
}

func (b *backend) swapTokenCacheLocked(c *tokenCache, why *cacheClosedError) {
	b.swaps.Add(1)
	if old := b.tokens.Swap(c); old != nil {
		old.close(why)
	}
}

// view is the mount now, for status and metrics.
func (b *backend) view() mountView {
	v := mountView{now: b.clock(), stats: b.stats, last: b.stats.lastFailure(), role: b.node.role(), canMint: b.node.mayWrite(), grantedLeaseTTL: b.grantedLeaseTTL}
	if c := b.tokens.Load(); c != nil {
		v.cfg, v.cache = c.config(), c.snapshot()
	}
	return v
}

// grantedLeaseTTL is the lease Vault grants a read asking for ttl: core caps
// it with framework.CalculateTTL and the same system view.
func (b *backend) grantedLeaseTTL(ttl time.Duration) time.Duration {
	if ttl <= 0 {
		return 0
	}
	granted, _, err := framework.CalculateTTL(b.System(), 0, ttl, 0, ttl, 0, time.Time{})
	if err != nil {
		return ttl
	}
	return granted
}

// responseField describes a field of an answer, for the OpenAPI document.
func responseField(t framework.FieldType, name, desc string) *framework.FieldSchema {
	return &framework.FieldSchema{Type: t, Description: desc, DisplayAttrs: &framework.DisplayAttributes{Name: name}}
}

const backendHelp = `
The Manus secrets engine keeps a Manus Team User Management API credential
(client_id and client_secret) inside Vault and hands out only the short-lived
bearer token minted from it.

Write the credential to "config" once. Reading "token" returns a bearer token
for the /api/user/manage/v1/users endpoints, with a non-renewable lease that
ends shortly before the token expires. Every reader of a mount shares one
cached token until it nears expiry, so Manus sees one mint per token lifetime.
Writing "token/refresh" replaces the token at once.
`
