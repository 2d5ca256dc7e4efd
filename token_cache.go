package manus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// tokenMinter makes a token: one request (*manusClient) or a mint with
// retries (*minter, the cache's upstream side).
type tokenMinter interface {
	mintToken(ctx context.Context) (*accessToken, error)
}

const (
	// minFailureBackoff and maxFailureBackoff bound the window after a
	// failed mint in which reads do not ask Manus again; it doubles with
	// each consecutive failure.
	minFailureBackoff = time.Second
	maxFailureBackoff = time.Minute

	// maxHonouredRetryAfter caps how long a Retry-After may extend that
	// window.
	maxHonouredRetryAfter = 5 * time.Minute

	// readerWaitSlack is added to request_timeout for how long a read waits
	// for a mint in flight, so it sees the attempt's own timeout error.
	readerWaitSlack = 500 * time.Millisecond
)

// tokenCache holds one mount's token. Reads of a fresh token take no lock.
// When the token must be replaced, concurrent readers share a single mint;
// if that fails, readers get the cached token while it can still back a
// lease, and for a growing back-off window no new mint is attempted.
type tokenCache struct {
	minter           tokenMinter
	client           *manusClient // for the status probe; nil in some tests
	clock            func() time.Time
	refreshThreshold time.Duration
	requestTimeout   time.Duration // a read waits this plus readerWaitSlack for a mint
	stats            *mountStats
	logger           hclog.Logger
	// persist stores a newly minted token, best-effort; nil skips it.
	persist func(*accessToken)

	current atomic.Pointer[accessToken]
	// leasedReads is the config's read mode; a mode-only config write
	// changes it in place.
	leasedReads atomic.Bool

	mu        sync.Mutex
	pending   *pendingMint
	restored  bool      // current was read back from storage
	failures  int       // consecutive failed mints
	lastErr   error     // the last failed mint's error
	lastErrAt time.Time // when it failed
	retryAt   time.Time // no new mint before this

	// ctx ends when the cache is dropped, cancelling an in-flight mint whose
	// credentials are no longer the mount's; its cause is a
	// *cacheClosedError saying why.
	ctx  context.Context
	stop context.CancelCauseFunc
}

// pendingMint is a mint in flight; done closes when token or err is set.
type pendingMint struct {
	done  chan struct{}
	token *accessToken
	err   error
}

type tokenCacheOptions struct {
	refreshThreshold time.Duration
	requestTimeout   time.Duration
	stats            *mountStats
	logger           hclog.Logger
	persist          func(*accessToken)
	leasedReads      bool
}

func newTokenCache(minter tokenMinter, clock func() time.Time, opts tokenCacheOptions) *tokenCache {
	ctx, stop := context.WithCancelCause(context.Background())
	c := &tokenCache{
		minter:           minter,
		clock:            clock,
		refreshThreshold: opts.refreshThreshold,
		requestTimeout:   opts.requestTimeout,
		stats:            opts.stats,
		logger:           opts.logger,
		persist:          opts.persist,
		ctx:              ctx,
		stop:             stop,
	}
	c.leasedReads.Store(opts.leasedReads)
	return c
}

// token returns a token to serve. warning is non-empty when the token is a
// cached one served because its refresh failed.
func (c *tokenCache) token(ctx context.Context) (tok *accessToken, warning string, err error) {
	if tok := c.fresh(); tok != nil {
		c.stats.cacheHits.Add(1)
		return tok, "", nil
	}
	tok, err = c.refresh(ctx)
	if err == nil {
		c.stats.readsMinted.Add(1)
		return tok, "", nil
	}
	// A mint cut short by a config change, a delete or a reload must not
	// fall back to the token of a cache that is no longer the mount's.
	if isCacheClosed(err) {
		return nil, "", err
	}
	if stale := c.servable(); stale != nil {
		c.stats.staleServes.Add(1)
		c.logger.Warn("serving the cached token after a failed refresh", append(failureFields(err),
			"expires_at", stale.expiresAtText())...)
		return stale, staleWarning(err, stale), nil
	}
	return nil, "", err
}

// fresh returns the cached token if it needs no refresh, else nil.
func (c *tokenCache) fresh() *accessToken {
	tok := c.current.Load()
	if tok != nil && tok.isFresh(c.clock(), c.refreshThreshold) {
		return tok
	}
	return nil
}

// servable returns the cached token if it can still back a lease of a
// second or more, else nil.
func (c *tokenCache) servable() *accessToken {
	tok := c.current.Load()
	if tok != nil && tok.servableAt(c.clock()) {
		return tok
	}
	return nil
}

// refresh joins the mint in flight or starts one, unless a failure back-off
// is in force, and waits at most request_timeout (plus slack) for it.
func (c *tokenCache) refresh(ctx context.Context) (*accessToken, error) {
	c.mu.Lock()
	if tok := c.fresh(); tok != nil { // minted while we waited for the lock
		c.mu.Unlock()
		return tok, nil
	}
	if c.pending == nil && c.clock().Before(c.retryAt) {
		err := &backoffError{last: c.lastErr, failures: c.failures, until: c.retryAt}
		c.mu.Unlock()
		return nil, err
	}
	p := c.joinOrStartMintLocked()
	c.mu.Unlock()
	return c.wait(ctx, p, c.requestTimeout+readerWaitSlack)
}

// mintNow mints regardless of the failure back-off and waits for the result
// as long as ctx allows: config verification wants a definite answer.
func (c *tokenCache) mintNow(ctx context.Context) (*accessToken, error) {
	c.mu.Lock()
	p := c.joinOrStartMintLocked()
	c.mu.Unlock()
	return c.wait(ctx, p, 0)
}

func (c *tokenCache) joinOrStartMintLocked() *pendingMint {
	if c.pending == nil {
		c.pending = &pendingMint{done: make(chan struct{})}
		go c.mint(c.pending)
	}
	return c.pending
}

// wait waits for p, for ctx, and for at most limit (0: no limit). The mint
// runs detached: a reader that gives up does not cancel the mint the other
// readers are waiting for.
func (c *tokenCache) wait(ctx context.Context, p *pendingMint, limit time.Duration) (*accessToken, error) {
	var timeout <-chan time.Time
	if limit > 0 {
		timer := time.NewTimer(limit)
		defer timer.Stop()
		timeout = timer.C
	}
	select {
	case <-p.done:
		return p.token, p.err
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-timeout:
		return nil, &mintInProgressError{requestTimeout: c.requestTimeout}
	}
}

func (c *tokenCache) mint(p *pendingMint) {
	tok, err := c.minter.mintToken(c.ctx)
	if err != nil && c.ctx.Err() != nil {
		err = context.Cause(c.ctx)
	}
	// Readers are woken before the token is persisted: slow storage must
	// not look like a slow Manus.
	defer func() {
		if err == nil && c.persist != nil && c.ctx.Err() == nil {
			c.persist(tok)
		}
	}()
	c.mu.Lock()
	if err == nil {
		c.recordSuccessLocked(tok)
	} else if !isCacheClosed(err) {
		c.recordFailureLocked(err)
	}
	p.token, p.err = tok, err
	c.pending = nil
	c.mu.Unlock()
	close(p.done)
}

func (c *tokenCache) recordSuccessLocked(tok *accessToken) {
	c.current.Store(tok)
	c.restored = false
	if c.failures > 0 {
		c.logger.Info("Manus is issuing tokens again; failure back-off ended", "failed_mints", c.failures)
	}
	c.failures = 0
	c.retryAt = time.Time{}
}

func (c *tokenCache) recordFailureLocked(err error) {
	now := c.clock()
	c.failures++
	c.lastErr, c.lastErrAt = err, now
	c.retryAt = now.Add(failureBackoff(c.failures, retryAfterOf(err)))
	c.logger.Warn("failure back-off: reads will not ask Manus for a token until it ends",
		"until", formatTime(c.retryAt), "window", c.retryAt.Sub(now).String(), "failed_mints", c.failures)
}

// failureBackoff is the window after the nth consecutive failed mint:
// 1s, 2s, 4s ... up to a minute, or longer if Manus asked for it.
func failureBackoff(failures int, retryAfter time.Duration) time.Duration {
	window := maxFailureBackoff
	if failures < 8 {
		window = min(minFailureBackoff<<(failures-1), maxFailureBackoff)
	}
	return max(window, min(retryAfter, maxHonouredRetryAfter))
}

func retryAfterOf(err error) time.Duration {
	var upErr *upstreamError
	if errors.As(err, &upErr) {
		return upErr.retryAfter
	}
	return 0
}

// rereadIn is how long a non-leased reader served tok at now should wait
// before reading again: the token's own schedule while it is fresh, else
// until the failure back-off ends and a mint may be tried again.
func (c *tokenCache) rereadIn(tok *accessToken, now time.Time) time.Duration {
	if tok.isFresh(now, c.refreshThreshold) {
		return tok.rereadIn(now, c.refreshThreshold)
	}
	c.mu.Lock()
	backoffEnd := c.retryAt
	c.mu.Unlock()
	return tok.staleRereadIn(now, backoffEnd)
}

// cacheState is what the status path shows of a cache.
type cacheState struct {
	token        *accessToken
	restored     bool
	minting      bool
	failedMints  int
	backoffUntil time.Time // zero unless a failure back-off is in force
	refreshAt    time.Time // when the token becomes due for refresh
	leaseTTL     time.Duration
}

func (c *tokenCache) snapshot() cacheState {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock()
	st := cacheState{
		token:       c.current.Load(),
		restored:    c.restored,
		minting:     c.pending != nil,
		failedMints: c.failures,
	}
	if now.Before(c.retryAt) {
		st.backoffUntil = c.retryAt
	}
	if st.token != nil {
		st.refreshAt = st.token.refreshAt(c.refreshThreshold)
		st.leaseTTL = st.token.leaseTTL(now)
	}
	return st
}

// restore installs a token read back from storage, unless the cache
// already holds one that lives as long.
func (c *tokenCache) restore(tok *accessToken) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur := c.current.Load(); cur != nil && !tok.ExpiresAt.After(cur.ExpiresAt) {
		return false
	}
	c.current.Store(tok)
	c.restored = true
	return true
}

// close cancels any mint in flight, whose waiting readers get why (a
// *cacheClosedError); the cache is not used afterwards.
func (c *tokenCache) close(why *cacheClosedError) {
	c.stop(why)
	if closer, ok := c.minter.(interface{ close() }); ok {
		closer.close()
	}
}

// cacheClosedError is what readers waiting on a mint get when the cache was
// dropped under it. It says why, since what the reader should do next
// differs: read again, write config, or wait for the reloaded plugin.
type cacheClosedError struct{ why string }

func (e *cacheClosedError) Error() string { return e.why }

// The reasons a cache is dropped.
var (
	// errMountReconfigured: a config write (here or, through invalidation,
	// on another node) replaced the credentials; the next read uses the
	// new ones.
	errMountReconfigured = &cacheClosedError{"the mount's config changed while a token was being minted; read the token again"}
	// errConfigDeleted: the config was deleted.
	errConfigDeleted = &cacheClosedError{"the mount's config was deleted while a token was being minted; write client_id and client_secret to its config path before reading a token"}
	// errPluginStopped: Vault called Clean, which it does when the plugin
	// is reloaded and when the mount is disabled; the plugin cannot tell
	// which.
	errPluginStopped = &cacheClosedError{"the plugin was reloaded, or the mount disabled, while a token was being minted; read the token again (after a reload the new plugin instance answers; after a disable the path is gone)"}
)

// isCacheClosed reports whether err is one of the reasons above.
func isCacheClosed(err error) bool {
	var closed *cacheClosedError
	return errors.As(err, &closed)
}

// backoffError is returned without asking Manus while a failure back-off is
// in force; it carries the failure that started it.
type backoffError struct {
	last     error
	failures int
	until    time.Time
}

func (e *backoffError) Error() string {
	return fmt.Sprintf("%v (after %d failed mints in a row, retries included, the plugin waits until %s before asking Manus again)",
		e.last, e.failures, formatTime(e.until))
}

func (e *backoffError) Unwrap() error { return e.last }

// mintInProgressError is a read that stopped waiting for a slow mint.
type mintInProgressError struct {
	requestTimeout time.Duration
}

func (e *mintInProgressError) Error() string {
	return fmt.Sprintf("no token yet: Manus has not answered within %s (request_timeout); the token request goes on in the background, read again shortly",
		e.requestTimeout)
}

func staleWarning(err error, tok *accessToken) string {
	return fmt.Sprintf("refreshing the Manus token failed, so this is the cached token, valid until %s; its lease is shortened to match. Cause: %v",
		tok.expiresAtText(), err)
}
