// Package manus is a Vault secrets engine that keeps a Manus Team User
// Management API client_id/client_secret pair and hands out the short-lived
// bearer tokens minted from it, one shared token per mount.
package manus

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// Version is the plugin's version ("v" + the VERSION file), stamped at
// build time by scripts/build-plugin.sh with -ldflags -X. It must equal the
// -version given to `vault plugin register`.
var Version = "v0.0.0-dev"

// operationPrefixManus prefixes every OpenAPI operation ID.
const operationPrefixManus = "manus"

// errNotConfigured is returned by reads on a mount nobody has configured.
var errNotConfigured = errors.New("this mount has no Manus credentials yet: write client_id and client_secret to its config path first (vault write <mount>/config client_id=... client_secret=...)")

type backend struct {
	*framework.Backend

	// clock is wallClock outside tests: every instant the plugin keeps or
	// compares is a wall-clock reading.
	clock func() time.Time
	// retry bounds each mint's retries; tests shorten its delays.
	retry retryPolicy
	// storage is the mount's storage view, used outside requests to
	// persist a newly minted token.
	storage logical.Storage
	// stats counts this mount's mints, failures and reads.
	stats *mountStats
	// metrics is the mount's own Prometheus registry (metrics.go).
	metrics *mountMetrics

	// mu serialises loading, replacing and dropping the token cache, so a
	// config write and an invalidation cannot interleave.
	mu sync.Mutex

	// persistMu orders writes and deletes of the persisted token, so a
	// token is only ever stored under the config it was minted with.
	persistMu sync.Mutex

	// tokens is the mount's token cache, built from the stored config on
	// first use; nil means "load it again".
	tokens atomic.Pointer[tokenCache]
}

var _ logical.Factory = Factory

// Factory builds one backend per mount. The plugin is served multiplexed, so
// every piece of state lives on the backend, never in package variables.
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

// wallClock is time.Now without Go's monotonic clock reading. Manus judges a
// token's expiry by its own wall clock, while the monotonic clock stops when
// the host is suspended or the VM paused (package time, "Monotonic Clocks"):
// an expiry kept as a monotonic reading would survive such a pause and the
// plugin would serve an expired token as fresh. Stripping the reading at the
// source makes every comparison a wall-clock one, as it already is for a
// token restored from storage.
func wallClock() time.Time { return time.Now().Round(0) }

func (b *backend) setup(ctx context.Context, conf *logical.BackendConfig) error {
	if conf.System != nil {
		// A copy, so the caller's config keeps the system view it passed.
		withCache := *conf
		withCache.System = newReplicationStateCache(conf.System, b.clock)
		conf = &withCache
	}
	if err := b.Setup(ctx, conf); err != nil {
		return err
	}
	b.storage = conf.StorageView
	return nil
}

func newBackend(clock func() time.Time) *backend {
	b := &backend{clock: clock, retry: defaultRetryPolicy, stats: newMountStats()}
	b.Backend = &framework.Backend{
		BackendType:    logical.TypeLogical,
		Help:           strings.TrimSpace(backendHelp),
		RunningVersion: Version,
		Paths: []*framework.Path{
			b.pathConfig(),
			b.pathToken(),
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
	b.metrics = newMountMetrics(b)
	return b
}

// invalidate runs when another node (or replication) changed a storage key.
// A new config drops the cache: the next read rebuilds it from storage. A
// new token is read into the current cache, which keeps any mint in flight.
func (b *backend) invalidate(ctx context.Context, key string) {
	switch key {
	case configStorageKey:
		b.replaceTokenCache(nil, errMountReconfigured)
	case tokenStorageKey:
		b.reloadStoredToken(ctx)
	}
}

// clean runs when the mount is unmounted or the plugin reloaded.
func (b *backend) clean(_ context.Context) {
	b.replaceTokenCache(nil, errPluginStopped)
	b.metrics.drop()
}

// servedToken is what one read of the mount's token got.
type servedToken struct {
	token *accessToken
	// warning is non-empty when token is a cached one served because its
	// refresh failed.
	warning string
	// cache served it; its read mode and refresh schedule shape the answer.
	cache *tokenCache
}

// readToken gets the mount's token for one read; the token path and the
// status probe both read through it. The cache is built from storage on
// first use. A read whose mint was cut short because a config write replaced
// the cache goes on once with the new cache rather than failing; after a
// config delete or an unmount there is none, and the read gets why.
//
// Errors: errNotConfigured, a storage error, an error building the client
// from the stored config (a ca_cert that no longer loads), or what
// tokenCache.token returns (an *upstreamError, *backoffError,
// *mintInProgressError or *cacheClosedError).
func (b *backend) readToken(ctx context.Context, req *logical.Request) (servedToken, error) {
	cache, err := b.tokenCache(ctx, req)
	if err != nil {
		return servedToken{}, err
	}
	tok, warning, err := cache.token(ctx)
	if next := b.tokens.Load(); errors.Is(err, errMountReconfigured) && next != nil && next != cache {
		cache = next
		tok, warning, err = cache.token(ctx)
	}
	return servedToken{token: tok, warning: warning, cache: cache}, err
}

// tokenCache returns the mount's cache, building it from storage if needed.
func (b *backend) tokenCache(ctx context.Context, req *logical.Request) (*tokenCache, error) {
	if c := b.tokens.Load(); c != nil {
		return c, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if c := b.tokens.Load(); c != nil {
		return c, nil
	}
	cfg, err := readConfig(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	if cfg == nil {
		return nil, errNotConfigured
	}
	c, err := b.newTokenCacheFor(cfg, req.MountPoint)
	if err != nil {
		return nil, err
	}
	b.restoreStoredToken(ctx, req.Storage, c, cfg)
	b.tokens.Store(c)
	return c, nil
}

// newTokenCacheFor builds a cache for cfg. Its log lines name the mount, as
// one plugin process serves every mount.
func (b *backend) newTokenCacheFor(cfg *manusConfig, mount string) (*tokenCache, error) {
	logger := b.mountLogger(mount)
	client, err := newManusClient(cfg, b.clock, logger)
	if err != nil {
		return nil, err
	}
	m := &minter{client: client, clientID: cfg.loggableClientID(), logger: logger, stats: b.stats, policy: b.retry, clock: b.clock}
	c := newTokenCache(m, b.clock, tokenCacheOptions{
		refreshThreshold: cfg.RefreshThreshold,
		requestTimeout:   cfg.RequestTimeout,
		stats:            b.stats,
		logger:           logger,
		persist:          func(tok *accessToken) { b.persistToken(logger, tok, cfg.Generation) },
		leasedReads:      cfg.LeasedReads,
	})
	c.client = client
	return c, nil
}

// mountLogger is the backend's logger with the mount path on every line.
func (b *backend) mountLogger(mount string) hclog.Logger {
	return b.Logger().With("mount", mount)
}

// replaceTokenCache installs c (nil to drop the cache) and closes the old
// one, telling readers waiting on its mint why.
func (b *backend) replaceTokenCache(c *tokenCache, why *cacheClosedError) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.swapTokenCacheLocked(c, why)
}

func (b *backend) swapTokenCacheLocked(c *tokenCache, why *cacheClosedError) {
	if old := b.tokens.Swap(c); old != nil {
		old.close(why)
	}
}

const backendHelp = `
The Manus secrets engine keeps a Manus Team User Management API credential
(client_id and client_secret) inside Vault and hands out only the short-lived
bearer token minted from it.

Write the credential to "config" once. Reading "token" returns a bearer token
for the /api/user/manage/v1/users endpoints, with a non-renewable lease that
ends shortly before the token expires. Every reader of a mount shares one
cached token until it nears expiry, so Manus sees one mint per token lifetime.
`
