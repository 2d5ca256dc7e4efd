package manus

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// maxSafetyMargin is how long before the token's expiry a lease ends
	// for a one-hour token: Vault and the lease holder stop using the token
	// a minute before Manus would reject it.
	maxSafetyMargin = time.Minute

	// responseSlack is how long a read may take between judging the token
	// fresh and computing its lease.
	responseSlack = time.Second
)

// errMountReconfigured is what readers waiting on a mint get when the
// config changed under it; their next read uses the new credentials.
var errMountReconfigured = errors.New("the mount's config changed while a token was being minted; read the token again")

// accessToken is one bearer token minted from Manus.
type accessToken struct {
	AccessToken string    `json:"access_token"`
	MintedAt    time.Time `json:"minted_at"`
	ExpiresAt   time.Time `json:"expires_at"`
}

func (t *accessToken) lifetime() time.Duration { return t.ExpiresAt.Sub(t.MintedAt) }

// safetyMargin is kept between a lease's end and the token's expiry: a
// sixtieth of the lifetime, at most a minute.
func (t *accessToken) safetyMargin() time.Duration {
	return min(maxSafetyMargin, t.lifetime()/60)
}

// leaseTTL is the Vault lease for a read at now: the remaining life minus the
// safety margin, rounded to whole seconds yet never past the expiry. It is
// zero when the token cannot back a lease of at least one second.
func (t *accessToken) leaseTTL(now time.Time) time.Duration {
	remaining := t.ExpiresAt.Sub(now)
	ttl := min((remaining - t.safetyMargin()).Round(time.Second), remaining.Truncate(time.Second))
	if ttl < time.Second {
		return 0
	}
	return ttl
}

// refreshThreshold is the remaining life below which the token is replaced:
// the configured threshold, but never more than half the lifetime, so short
// tokens are still reused.
func (t *accessToken) refreshThreshold(configured time.Duration) time.Duration {
	return min(configured, t.lifetime()/2)
}

// isFresh reports whether the token should be served without minting. The
// lease check looks responseSlack ahead so the response built right after
// still gets a lease of at least a second.
func (t *accessToken) isFresh(now time.Time, configuredThreshold time.Duration) bool {
	return t.ExpiresAt.Sub(now) > t.refreshThreshold(configuredThreshold) && t.leaseTTL(now.Add(responseSlack)) > 0
}

// tokenMinter is the upstream side of the cache; *manusClient in production.
type tokenMinter interface {
	mintToken(ctx context.Context) (*accessToken, error)
}

// tokenCache holds one mount's token. Reads of a fresh token take no lock;
// when the token must be replaced, concurrent readers share a single mint.
type tokenCache struct {
	minter           tokenMinter
	clock            func() time.Time
	refreshThreshold time.Duration

	current atomic.Pointer[accessToken]

	mu      sync.Mutex
	pending *pendingMint

	// ctx ends when the cache is dropped, cancelling an in-flight mint whose
	// credentials are no longer the mount's.
	ctx  context.Context
	stop context.CancelFunc
}

// pendingMint is a mint in flight; done closes when token or err is set.
type pendingMint struct {
	done  chan struct{}
	token *accessToken
	err   error
}

func newTokenCache(minter tokenMinter, clock func() time.Time, refreshThreshold time.Duration) *tokenCache {
	ctx, stop := context.WithCancel(context.Background())
	return &tokenCache{
		minter:           minter,
		clock:            clock,
		refreshThreshold: refreshThreshold,
		ctx:              ctx,
		stop:             stop,
	}
}

// token returns a token fresh enough to serve, minting one if needed.
func (c *tokenCache) token(ctx context.Context) (*accessToken, error) {
	if tok := c.fresh(); tok != nil {
		return tok, nil
	}
	return c.awaitMint(ctx)
}

// fresh returns the cached token if it needs no refresh, else nil.
func (c *tokenCache) fresh() *accessToken {
	tok := c.current.Load()
	if tok != nil && tok.isFresh(c.clock(), c.refreshThreshold) {
		return tok
	}
	return nil
}

// awaitMint joins the mint in flight or starts one, then waits for it. The
// mint runs detached from ctx: a reader that gives up does not cancel the
// mint the other readers are waiting for.
func (c *tokenCache) awaitMint(ctx context.Context) (*accessToken, error) {
	c.mu.Lock()
	if tok := c.fresh(); tok != nil { // minted while we waited for the lock
		c.mu.Unlock()
		return tok, nil
	}
	p := c.pending
	if p == nil {
		p = &pendingMint{done: make(chan struct{})}
		c.pending = p
		go c.mint(p)
	}
	c.mu.Unlock()

	select {
	case <-p.done:
		return p.token, p.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *tokenCache) mint(p *pendingMint) {
	tok, err := c.minter.mintToken(c.ctx)
	if err != nil && c.ctx.Err() != nil {
		err = errMountReconfigured
	}
	c.mu.Lock()
	if err == nil {
		c.current.Store(tok)
	}
	p.token, p.err = tok, err
	c.pending = nil
	c.mu.Unlock()
	close(p.done)
}

// seed installs a token minted elsewhere, e.g. when config verification
// minted one.
func (c *tokenCache) seed(tok *accessToken) {
	c.current.Store(tok)
}

// close cancels any mint in flight and releases the minter's connections;
// the cache is not used afterwards.
func (c *tokenCache) close() {
	c.stop()
	if closer, ok := c.minter.(interface{ close() }); ok {
		closer.close()
	}
}
