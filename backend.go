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

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// Version is the plugin's version, stamped at build time with
// -ldflags "-X github.com/manus-community/vault-plugin-secrets-manus.Version=vX.Y.Z".
// It must equal the -version given to `vault plugin register`.
var Version = "v0.0.0-dev"

// operationPrefixManus prefixes every OpenAPI operation ID.
const operationPrefixManus = "manus"

// errNotConfigured is returned by reads on a mount nobody has configured.
var errNotConfigured = errors.New("this mount has no Manus credentials yet: write client_id and client_secret to its config path first (vault write <mount>/config client_id=... client_secret=...)")

type backend struct {
	*framework.Backend

	// clock is time.Now outside tests.
	clock func() time.Time

	// mu serialises loading, replacing and dropping the token cache, so a
	// config write and an invalidation cannot interleave.
	mu sync.Mutex

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
	b := newBackend(time.Now)
	if err := b.Setup(ctx, conf); err != nil {
		return nil, err
	}
	return b, nil
}

func newBackend(clock func() time.Time) *backend {
	b := &backend{clock: clock}
	b.Backend = &framework.Backend{
		BackendType:    logical.TypeLogical,
		Help:           strings.TrimSpace(backendHelp),
		RunningVersion: Version,
		Paths: []*framework.Path{
			b.pathConfig(),
			b.pathToken(),
		},
		PathsSpecial: &logical.Paths{
			SealWrapStorage: []string{configStorageKey},
		},
		Secrets:    []*framework.Secret{b.secretAccessToken()},
		Invalidate: b.invalidate,
		Clean:      b.clean,
	}
	return b
}

// invalidate runs when another node (or replication) changed a storage key.
func (b *backend) invalidate(_ context.Context, key string) {
	if key == configStorageKey {
		b.replaceTokenCache(nil)
	}
}

// clean runs when the mount is unmounted or the plugin reloaded.
func (b *backend) clean(_ context.Context) {
	b.replaceTokenCache(nil)
}

// replaceTokenCache installs c (nil to drop the cache) and closes the old one.
func (b *backend) replaceTokenCache(c *tokenCache) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.swapTokenCacheLocked(c)
}

func (b *backend) swapTokenCacheLocked(c *tokenCache) {
	if old := b.tokens.Swap(c); old != nil {
		old.close()
	}
}

// tokenCache returns the mount's cache, building it from storage if needed.
func (b *backend) tokenCache(ctx context.Context, s logical.Storage) (*tokenCache, error) {
	if c := b.tokens.Load(); c != nil {
		return c, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if c := b.tokens.Load(); c != nil {
		return c, nil
	}
	cfg, err := readConfig(ctx, s)
	if err != nil {
		return nil, err
	}
	if cfg == nil {
		return nil, errNotConfigured
	}
	c, err := b.newTokenCacheFor(cfg)
	if err != nil {
		return nil, err
	}
	b.tokens.Store(c)
	return c, nil
}

func (b *backend) newTokenCacheFor(cfg *manusConfig) (*tokenCache, error) {
	client, err := newManusClient(cfg, b.clock)
	if err != nil {
		return nil, err
	}
	return newTokenCache(&loggingMinter{client: client, logger: b.Logger()}, b.clock, cfg.RefreshThreshold), nil
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
