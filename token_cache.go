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

const (
	// minFailureBackoff and maxFailureBackoff bound the failure back-off,
	// doubling with each failed mint in a row.
	minFailureBackoff = time.Second
	maxFailureBackoff = time.Minute

	// maxHonouredRetryAfter caps how far a Retry-After extends it.
	maxHonouredRetryAfter = 5 * time.Minute

	// minRefreshInterval is how soon after a mint token/refresh may mint.
	minRefreshInterval = time.Minute

	// readerWaitSlack lets a read waiting on a mint see its own timeout.
	readerWaitSlack = 500 * time.Millisecond

	// firstRejectionRemintWait and maxRejectionRemintWait bound the wait
	// after tokens Manus rejected in a row, so a users API rejecting them
	// all costs fewer mints than a mount's normal ones.
	firstRejectionRemintWait = time.Minute
	maxRejectionRemintWait   = 30 * time.Minute
)

// How a read was served, as token_reads_total labels it.
const (
	readFromCache = "cache"
	readMinted    = "minted"
	readStale     = "stale"
)

// tokenCache holds one mount's token: readers of a fresh token take no
// lock, readers of a stale one share one mint, and while mints fail they
// get the cached token as long as it can be served (docs/caching-and-leases.md,
// docs/failure-behaviour.md).
type tokenCache struct {
	cacheParts
	cfg     atomic.Pointer[manusConfig]
	current atomic.Pointer[accessToken]

	mu          sync.Mutex
	pending     *pendingMint
	restored    bool      // current was taken from storage
	loadedAt    time.Time // when a token was last taken from storage
	failed      holdOff   // mints that failed in a row
	lastErr     error
	askedUntil  time.Time // the end of the last failure's Retry-After
	rejected    holdOff   // tokens Manus rejected in a row
	rejectedHow string    // e.g. "HTTP 401 UNAUTHENTICATED"

	// ctx ends when the cache is dropped, with a *cacheClosedError.
	ctx  context.Context
	stop context.CancelCauseFunc
}

type cacheParts struct {
	minter tokenMinter
	client *manusClient // the status probe's; nil in some tests
	node   *clusterNode
	store  *tokenStore // nil: nothing is persisted
	clock  func() time.Time
	logger hclog.Logger
}

// pendingMint is a mint in flight; done closes when token or err is set.
type pendingMint struct {
	done  chan struct{}
	token *accessToken
	err   error
}

func newTokenCache(cfg *manusConfig, parts cacheParts) *tokenCache {
	c := &tokenCache{cacheParts: parts}
	c.ctx, c.stop = context.WithCancelCause(context.Background())
	c.cfg.Store(cfg)
	return c
}

func (c *tokenCache) config() *manusConfig { return c.cfg.Load() }

func (c *tokenCache) setReadMode(leased bool) {
	cfg := *c.config()
	cfg.LeasedReads = leased
	c.cfg.Store(&cfg)
}

// servedToken is one read's token and everything its answer is built from.
type servedToken struct {
	token          *accessToken
	outcome        string // readFromCache, readMinted or readStale
	warning        string // why a stale token is served
	leased         bool
	leaseTTL       time.Duration
	expiresAt      string // RFC 3339
	expiresIn      int64  // whole seconds
	rereadIn       time.Duration
	rotationPeriod time.Duration
	mintedAt       string // RFC 3339
	cache          *tokenCache
}

// serve answers one read in the config's read mode.
func (c *tokenCache) serve(ctx context.Context) (servedToken, error) {
	cfg := c.config()
	if cfg.LeasedReads && !c.node.mayLease() {
		return servedToken{}, errForwardForLease
	}
	tok, outcome, staleCause, err := c.token(ctx)
	if err != nil {
		return servedToken{}, err
	}
	now := c.clock()
	s := servedToken{token: tok, outcome: outcome, leased: cfg.LeasedReads, expiresAt: tok.expiresAtText(), expiresIn: tok.expiresIn(now), cache: c}
	if s.leased {
		// Never a zero TTL: Vault would apply the mount default (768h).
		if s.leaseTTL = tok.leaseTTL(now); s.leaseTTL == 0 {
			return servedToken{}, &tooSoonToLeaseError{expiresAt: s.expiresAt}
		}
	} else {
		s.rereadIn = c.rereadIn(tok, now, cfg.RefreshThreshold)
		s.rotationPeriod = tok.rotationPeriod(cfg.RefreshThreshold)
		s.mintedAt = formatTime(tok.MintedAt)
	}
	if staleCause != nil {
		s.warning = staleWarning(staleCause, tok, s.leased)
	}
	return s, nil
}

// token returns a token to serve and how; staleCause is why a token due
// for refresh is served.
func (c *tokenCache) token(ctx context.Context) (tok *accessToken, outcome string, staleCause, err error) {
	if tok := c.fresh(); tok != nil {
		return tok, readFromCache, nil, nil
	}
	tok, err = c.refresh(ctx)
	if err == nil {
		return tok, readMinted, nil, nil
	}
	// A dropped cache's token is no longer the mount's, and the node that
	// mints may hold a newer one.
	if isCacheClosed(err) || forwardReason(err) != "" {
		return nil, "", nil, err
	}
	if stale := c.servable(); stale != nil {
		c.logger.Warn("serving the cached token after a failed refresh", append(failureFields(err), "expires_at", stale.expiresAtText())...)
		return stale, readStale, err, nil
	}
	return nil, "", nil, err
}

func (c *tokenCache) fresh() *accessToken {
	tok := c.current.Load()
	if tok != nil && tok.isFresh(c.clock(), c.config().RefreshThreshold) {
		return tok
	}
	return nil
}

func (c *tokenCache) servable() *accessToken {
	tok := c.current.Load()
	if tok != nil && tok.servableAt(c.clock()) {
		return tok
	}
	return nil
}

// refresh joins or starts a mint, unless held off, and waits at most
// request_timeout (plus slack) for it.
func (c *tokenCache) refresh(ctx context.Context) (*accessToken, error) {
	if !c.node.mayWrite() {
		return nil, errForwardForMint
	}
	c.mu.Lock()
	if tok := c.fresh(); tok != nil { // minted while we waited for the lock
		c.mu.Unlock()
		return tok, nil
	}
	if err := c.holdOffLocked(); err != nil {
		c.mu.Unlock()
		return nil, err
	}
	p := c.joinOrStartMintLocked()
	c.mu.Unlock()
	return c.wait(ctx, p, c.config().RequestTimeout+readerWaitSlack)
}

// holdOffLocked is why no mint may start now, if one may not.
func (c *tokenCache) holdOffLocked() error {
	now := c.clock()
	switch {
	case c.pending != nil:
		return nil
	case c.rejected.inForce(now):
		return &tokenRejectedError{how: c.rejectedHow, holdOff: c.rejected}
	case c.failed.inForce(now):
		return c.backoffErrorLocked(c.failed.until)
	}
	return nil
}

func (c *tokenCache) backoffErrorLocked(until time.Time) *backoffError {
	return &backoffError{last: c.lastErr, failures: c.failed.count, until: until, asked: !until.After(c.askedUntil)}
}

// refreshOnRequest is token/refresh: it ends the hold-offs and mints once,
// bounded so a loop cannot run the credential into Manus's rate limit: a
// token minted less than minRefreshInterval ago is kept, and Manus's
// Retry-After is honoured.
func (c *tokenCache) refreshOnRequest(ctx context.Context) (tok *accessToken, replaced bool, err error) {
	if !c.node.mayWrite() {
		return nil, false, errForwardForMint
	}
	c.mu.Lock()
	now := c.clock()
	if cur := c.current.Load(); cur != nil && c.pending == nil && now.Sub(cur.MintedAt) < minRefreshInterval {
		c.mu.Unlock()
		return cur, false, nil
	}
	if c.pending == nil && now.Before(c.askedUntil) {
		err := c.backoffErrorLocked(c.askedUntil)
		c.mu.Unlock()
		return nil, false, err
	}
	c.failed, c.rejected = holdOff{}, holdOff{}
	p := c.joinOrStartMintLocked()
	c.mu.Unlock()
	tok, err = c.wait(ctx, p, 0)
	return tok, err == nil, err
}

func (c *tokenCache) joinOrStartMintLocked() *pendingMint {
	if c.pending == nil {
		c.pending = &pendingMint{done: make(chan struct{})}
		go c.mint(c.pending)
	}
	return c.pending
}

// wait waits for p, ctx and at most limit (0: none); a reader giving up
// does not cancel the mint the others wait for.
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
		return nil, &mintInProgressError{requestTimeout: c.config().RequestTimeout}
	}
}

func (c *tokenCache) mint(p *pendingMint) {
	tok, err := c.minter.mintToken(c.ctx)
	if err != nil && c.ctx.Err() != nil {
		err = context.Cause(c.ctx)
	}
	c.mu.Lock()
	if err == nil {
		c.keepLocked(tok)
	} else if !isCacheClosed(err) {
		c.recordFailureLocked(err)
	}
	p.token, p.err = tok, err
	c.pending = nil
	c.mu.Unlock()
	close(p.done)
	// After the readers are woken: slow storage is not a slow Manus.
	if err == nil {
		c.persist(tok)
	}
	if c.ctx.Err() != nil {
		c.closeClient() // a mint that outlived its cache leaves no idle connection behind
	}
}

// take makes tok, which a config write's verification minted, the cached
// token, persisted like the cache's own mints.
func (c *tokenCache) take(tok *accessToken) {
	c.mu.Lock()
	c.keepLocked(tok)
	c.mu.Unlock()
	c.persist(tok)
}

// persist stores a token the cache holds, unless the cache was dropped.
func (c *tokenCache) persist(tok *accessToken) {
	if c.store != nil && c.ctx.Err() == nil {
		c.store.persist(tok, c.config().Generation)
	}
}

func (c *tokenCache) keepLocked(tok *accessToken) {
	c.current.Store(tok)
	c.restored = false
	if c.failed.count > 0 {
		c.logger.Info("Manus is issuing tokens again; failure back-off ended", "failed_mints", c.failed.count)
	}
	c.failed, c.askedUntil = holdOff{}, time.Time{}
}

func (c *tokenCache) recordFailureLocked(err error) {
	now := c.clock()
	retryAfter := min(retryAfterOf(err), maxHonouredRetryAfter)
	c.lastErr = err
	c.askedUntil = now.Add(retryAfter)
	c.failed.note(now, func(n int) time.Duration { return failureBackoff(n, retryAfter) })
	c.logger.Warn("failure back-off: reads will not ask Manus for a token until it ends",
		"until", formatTime(c.failed.until), "window", c.failed.until.Sub(now).String(), "failed_mints", c.failed.count)
}

// failureBackoff is the window after the nth failed mint in a row, or
// Manus's Retry-After if longer.
func failureBackoff(failures int, retryAfter time.Duration) time.Duration {
	return max(cappedDoubling(minFailureBackoff, maxFailureBackoff, failures-1), min(retryAfter, maxHonouredRetryAfter))
}

// rejectionRemintWait is the wait after the nth rejected token in a row:
// none after the first.
func rejectionRemintWait(rejections int) time.Duration {
	if rejections <= 1 {
		return 0
	}
	return cappedDoubling(firstRejectionRemintWait, maxRejectionRemintWait, rejections-2)
}

func retryAfterOf(err error) time.Duration {
	if upErr, ok := asUpstreamError(err); ok {
		return upErr.retryAfter
	}
	return 0
}

// rereadIn is a non-leased reader's ttl: the token's schedule while it is
// fresh, else until a mint may be tried again.
func (c *tokenCache) rereadIn(tok *accessToken, now time.Time, configuredThreshold time.Duration) time.Duration {
	if tok.isFresh(now, configuredThreshold) {
		return tok.freshRereadIn(now, configuredThreshold)
	}
	c.mu.Lock()
	backoffEnd := c.failed.until
	c.mu.Unlock()
	return tok.staleRereadIn(now, backoffEnd)
}

// reject drops tok, which Manus refused (how: "HTTP 401 ..."), and reports
// whether it was still the cached token: a newer one is not judged by it.
func (c *tokenCache) reject(tok *accessToken, how string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.current.CompareAndSwap(tok, nil) {
		return false
	}
	c.rejected.note(c.clock(), rejectionRemintWait)
	c.rejectedHow = how
	c.logger.Warn("Manus rejected the cached token; it is no longer served", "how", how,
		"rejections_in_a_row", c.rejected.count, "next_mint_from", formatTime(c.rejected.until))
	return true
}

func (c *tokenCache) accepted() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rejected = holdOff{}
}

// restore takes the stored token if it was minted under this cache's
// config: what the node that mints stored is its latest decision, even if
// it expires sooner than the cached one (a refresh). One stored as rejected
// is dropped, and so is an older cached one it replaced: Invalidate may
// read storage only after the rejection was written.
func (c *tokenCache) restore(st *storedToken) {
	if st == nil || st.ConfigGeneration != c.config().Generation {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cur, tok := c.current.Load(), st.token()
	same := cur != nil && cur.AccessToken == st.AccessToken
	switch {
	case st.Rejected && (same || cur != nil && !cur.MintedAt.After(st.MintedAt)):
		c.current.Store(nil)
		c.logger.Warn("another node found the mount's token rejected by Manus; the cached token is no longer served")
	case st.Rejected, same:
	case !tok.servableAt(c.clock()):
		c.logger.Debug("the stored token is too close to expiry to reuse")
	default:
		c.current.Store(tok)
		c.restored, c.loadedAt = true, c.clock()
		c.logger.Info("took the stored Manus access token", "expires_at", tok.expiresAtText())
	}
}

// cacheState is what status and metrics show of a cache.
type cacheState struct {
	token       *accessToken
	restored    bool
	loadedAt    time.Time
	minting     bool
	failedMints int
	rejections  int       // tokens Manus rejected in a row
	heldOff     time.Time // when a mint may be tried again; zero if it may now
	refreshAt   time.Time // when the token becomes due for refresh
	leaseTTL    time.Duration
}

func (c *tokenCache) snapshot() cacheState {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock()
	st := cacheState{token: c.current.Load(), restored: c.restored, loadedAt: c.loadedAt, minting: c.pending != nil, failedMints: c.failed.count, rejections: c.rejected.count}
	for _, h := range []holdOff{c.failed, c.rejected} {
		if h.inForce(now) && h.until.After(st.heldOff) {
			st.heldOff = h.until
		}
	}
	if st.token != nil {
		st.refreshAt = st.token.refreshAt(c.config().RefreshThreshold)
		st.leaseTTL = st.token.leaseTTL(now)
	}
	return st
}

// close cancels any mint in flight, telling its readers why; the cache is
// not used afterwards.
func (c *tokenCache) close(why *cacheClosedError) {
	c.stop(why)
	c.closeClient()
}

func (c *tokenCache) closeClient() {
	if c.client != nil {
		c.client.close()
	}
}

// cacheClosedError tells readers of a dropped cache's mint what to do next.
type cacheClosedError struct{ why string }

func (e *cacheClosedError) Error() string { return e.why }

// The reasons a cache is dropped.
var (
	errMountReconfigured = &cacheClosedError{"the mount's config changed while a token was being minted; read the token again"}
	errConfigDeleted     = &cacheClosedError{"the mount's config was deleted while a token was being minted; write client_id and client_secret to its config path before reading a token"}
	// Vault calls Clean both when the plugin is reloaded and when the
	// mount is disabled; the plugin cannot tell which.
	errPluginStopped = &cacheClosedError{"the plugin was reloaded, or the mount disabled, while a token was being minted; read the token again (after a reload the new plugin instance answers; after a disable the path is gone)"}
)

func isCacheClosed(err error) bool {
	var closed *cacheClosedError
	return errors.As(err, &closed)
}

// backoffError answers a read during a failure back-off.
type backoffError struct {
	last     error
	failures int
	until    time.Time
	// asked: until is Manus's own Retry-After.
	asked bool
}

func (e *backoffError) Error() string {
	if e.asked {
		return fmt.Sprintf("%v (Manus asked not to be asked again before %s, and the plugin waits until then, token/refresh included)",
			e.last, formatTime(e.until))
	}
	return fmt.Sprintf("%v (after %s, retries included, the plugin waits until %s before asking Manus again; vault write -f <mount>/token/refresh tries at once)",
		e.last, failedMints(e.failures), formatTime(e.until))
}

func (e *backoffError) Unwrap() error { return e.last }

func failedMints(n int) string {
	if n == 1 {
		return "1 failed mint"
	}
	return fmt.Sprintf("%d failed mints in a row", n)
}

// tokenRejectedError answers a read during the wait after rejected tokens.
type tokenRejectedError struct {
	how string
	holdOff
}

func (e *tokenRejectedError) Error() string {
	return fmt.Sprintf("Manus rejected the mount's last %d tokens (the last at %s, %s), so none is served; after repeated rejections the plugin waits until %s before minting again. Check the credential in Manus; vault write -f <mount>/token/refresh mints at once",
		e.count, formatTime(e.last), e.how, formatTime(e.until))
}

type mintInProgressError struct {
	requestTimeout time.Duration
}

func (e *mintInProgressError) Error() string {
	return fmt.Sprintf("no token yet: Manus has not answered within %s (request_timeout); the token request goes on in the background, read again shortly",
		e.requestTimeout)
}

// tooSoonToLeaseError: a mint slower than the token's own short life.
type tooSoonToLeaseError struct{ expiresAt string }

func (e *tooSoonToLeaseError) Error() string {
	return fmt.Sprintf("the token Manus issued expires at %s, too soon to lease; read again", e.expiresAt)
}

func staleWarning(err error, tok *accessToken, leased bool) string {
	next := "read again when ttl says"
	if leased {
		next = "its lease is shortened to match"
	}
	return fmt.Sprintf("refreshing the Manus token failed, so this is the cached token, valid until %s; %s. Cause: %v",
		tok.expiresAtText(), next, err)
}
