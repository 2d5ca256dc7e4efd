// Package manus is a Vault secrets engine that keeps a Manus Team User
// Management API client_id/client_secret pair and hands out the short-lived
// bearer tokens minted from it, one shared token per mount.
package manus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
	"golang.org/x/sync/singleflight"
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
	// node is what this node may do with the mount's storage (cluster.go);
	// it is also the system view the framework sees.
	node *clusterNode
	// store persists the mount's token.
	store *tokenStore
	// stats counts this mount's mints, failures and reads.
	stats *mountStats
	// metrics is the mount's own Prometheus registry (metrics.go).
	metrics *mountMetrics
	// allowedBaseURLs is what the plugin's registration allows base_url to
	// be (empty: anything); config writes cannot widen it.
	allowedBaseURLs allowedBaseURLs

	// mu serialises replacing and dropping the token cache, so a config
	// write and an invalidation cannot interleave. It is never held while
	// a cache is built (parsing ca_cert, reading storage).
	mu sync.Mutex
	// swaps counts replacements and drops of the cache, so a cache built
	// without mu is installed only if nothing changed meanwhile.
	swaps atomic.Uint64
	// loading makes concurrent cold reads build one cache.
	loading singleflight.Group
	// stopped is set by Clean: no cache is built for a backend Vault has
	// let go of.
	stopped atomic.Bool

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
	conf = &withNode
	if err := b.Setup(ctx, conf); err != nil {
		return err
	}
	b.store = &tokenStore{storage: conf.StorageView, node: b.node, logger: b.Logger()}
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
		if c := b.tokens.Load(); c != nil {
			b.store.restore(ctx, b.store.storage, c)
		}
	}
}

// clean runs when the mount is unmounted or the plugin reloaded.
func (b *backend) clean(_ context.Context) {
	b.stopped.Store(true)
	b.replaceTokenCache(nil, errPluginStopped)
	b.metrics.drop()
}

// readToken gets the mount's token for one read, in the config's read mode;
// the token path and the status probe both read through it. The cache is
// built from storage on first use. A read whose mint was cut short because
// a config write replaced the cache goes on once with the new cache rather
// than failing; after a config delete or an unmount there is none, and the
// read gets why.
//
// Errors: errNotConfigured, a storage error, an error building the client
// from the stored config (a ca_cert that no longer loads), a *forwardError
// on a node that may not mint or lease, or what tokenCache.token returns (an
// *upstreamError, *backoffError, *tokenRejectedError, *mintInProgressError
// or *cacheClosedError).
func (b *backend) readToken(ctx context.Context, req *logical.Request) (servedToken, error) {
	cache, err := b.loadTokenCache(ctx, req)
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
// needed. Concurrent callers share one build, which runs without b.mu (a
// ca_cert is parsed, storage read), and the result is installed only if no
// config write, delete or invalidation came in meanwhile; otherwise the
// build starts over from the new storage, a few times at most.
func (b *backend) loadTokenCache(ctx context.Context, req *logical.Request) (*tokenCache, error) {
	// The build is shared: one reader giving up must not fail the others,
	// so it runs detached, and each caller waits only as long as its own
	// request may.
	build := context.WithoutCancel(ctx)
	for range 5 {
		if c := b.tokens.Load(); c != nil {
			return c, nil
		}
		done := b.loading.DoChan("cache", func() (any, error) {
			return b.buildAndInstall(build, req.Storage, req.MountPoint)
		})
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

// buildAndInstall builds a cache from the stored config and installs it. It
// returns nil when the cache changed while it built, for the caller to look
// again.
func (b *backend) buildAndInstall(ctx context.Context, s logical.Storage, mount string) (*tokenCache, error) {
	swaps := b.swaps.Load()
	cfg, err := readConfig(ctx, s)
	if err != nil {
		return nil, err
	}
	if cfg == nil {
		return nil, errNotConfigured
	}
	c, err := b.newTokenCache(cfg, mount)
	if err != nil {
		return nil, err
	}
	b.store.restore(ctx, s, c)
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

// newTokenCache builds a cache for cfg, not yet the mount's. Its log lines
// name the mount, as one plugin process serves every mount.
func (b *backend) newTokenCache(cfg *manusConfig, mount string) (*tokenCache, error) {
	if err := b.allowedBaseURLs.permit(cfg.BaseURL); err != nil {
		return nil, fmt.Errorf("the stored config cannot be used, and nothing is sent: %w", err)
	}
	logger := b.mountLogger(mount)
	client, err := newManusClient(cfg, b.clock, logger)
	if err != nil {
		return nil, err
	}
	m := &minter{client: client, clientID: cfg.loggableClientID(), logger: logger, stats: b.stats, policy: b.retry, clock: b.clock}
	return newTokenCache(cfg, m, b.clock, tokenCacheOptions{
		client: client,
		node:   b.node,
		store:  b.store,
		stats:  b.stats,
		logger: logger,
	}), nil
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
	b.swaps.Add(1)
	if c != nil {
		c.installed.Store(true)
	}
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
Writing "token/refresh" replaces the token at once.
`
