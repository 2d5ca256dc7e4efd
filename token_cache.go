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

	// minRefreshInterval is how soon after a mint token/refresh may mint
	// again: a refresh within it answers with the token just minted.
	minRefreshInterval = time.Minute

	// readerWaitSlack is added to request_timeout for how long a read waits
	// for a mint in flight, so it sees the attempt's own timeout error.
	readerWaitSlack = 500 * time.Millisecond

	// firstRejectionRemintWait and maxRejectionRemintWait bound how soon a
	// mint may follow a token Manus rejected: at once the first time, then
	// firstRejectionRemintWait doubling with each further rejection in a
	// row, up to maxRejectionRemintWait. A users API that rejects every
	// token therefore costs at most one extra mint per half hour in the
	// long run, fewer than a mount's normal mints (one per 50 minutes),
	// so it cannot run the credential into Manus's rate limits.
	firstRejectionRemintWait = time.Minute
	maxRejectionRemintWait   = 30 * time.Minute
)

// tokenCache holds one mount's token. Reads of a fresh token take no lock.
// When the token must be replaced, concurrent readers share a single mint;
// if that fails, readers get the cached token while it can still back a
// lease, and for a growing back-off window no new mint is attempted. On a
// node that may not mint (cluster.go) it serves a fresh token and forwards
// the rest.
type tokenCache struct {
	minter tokenMinter
	client *manusClient // the status probe's, closed with the cache; nil in some tests
	node   *clusterNode
	store  *tokenStore // takes the cache's mints once it is the mount's; nil skips
	clock  func() time.Time
	stats  *mountStats
	logger hclog.Logger

	// cfg is the config the cache mints with. A config write that changes
	// only leased_reads replaces it with a copy; everything else builds a
	// new cache.
	cfg     atomic.Pointer[manusConfig]
	current atomic.Pointer[accessToken]
	// installed is set once the cache is the mount's: only then are its
	// mints persisted (a config write's verification mint is persisted by
	// the write, after the config is stored).
	installed atomic.Bool

	mu        sync.Mutex
	pending   *pendingMint
	restored  bool      // current was read back from storage
	loadedAt  time.Time // when a token was last taken from storage
	failures  int       // consecutive failed mints
	lastErr   error     // the last failed mint's error
	lastErrAt time.Time // when it failed
	retryAt   time.Time // no new mint before this
	// askedUntil is when the last failure's Retry-After ends: no mint before
	// it, not even one an operator asks for.
	askedUntil time.Time
	rejection  rejection // tokens Manus refused

	// ctx ends when the cache is dropped, cancelling an in-flight mint whose
	// credentials are no longer the mount's; its cause is a
	// *cacheClosedError saying why.
	ctx  context.Context
	stop context.CancelCauseFunc
}

// rejection is what the cache knows of tokens Manus refused.
type rejection struct {
	count    int       // rejections in a row, since a token was last accepted
	at       time.Time // the last one
	remintAt time.Time // no mint before this after the last one
	status   string    // how it was refused, e.g. "HTTP 401 UNAUTHENTICATED"
}

// pendingMint is a mint in flight; done closes when token or err is set.
type pendingMint struct {
	done  chan struct{}
	token *accessToken
	err   error
}

type tokenCacheOptions struct {
	client *manusClient
	node   *clusterNode
	store  *tokenStore
	stats  *mountStats
	logger hclog.Logger
}

func newTokenCache(cfg *manusConfig, minter tokenMinter, clock func() time.Time, opts tokenCacheOptions) *tokenCache {
	ctx, stop := context.WithCancelCause(context.Background())
	c := &tokenCache{
		minter: minter,
		client: opts.client,
		node:   opts.node,
		store:  opts.store,
		clock:  clock,
		stats:  opts.stats,
		logger: opts.logger,
		ctx:    ctx,
		stop:   stop,
	}
	c.cfg.Store(cfg)
	return c
}

// config is the config the cache mints and answers with.
func (c *tokenCache) config() *manusConfig { return c.cfg.Load() }

// setReadMode keeps the token and switches the answers to leased.
func (c *tokenCache) setReadMode(leased bool) {
	cfg := *c.config()
	cfg.LeasedReads = leased
	c.cfg.Store(&cfg)
}

// servedToken is what one read of the mount's token gets: the token and
// everything its answer is built from, computed when it was served.
type servedToken struct {
	token *accessToken
	// warning is non-empty when token is a cached one served because its
	// refresh failed.
	warning string
	leased  bool
	// leaseTTL is the lease a leased read asks for; 0 when the token
	// cannot back a lease of a second (the read then fails).
	leaseTTL  time.Duration
	expiresAt string // RFC 3339
	expiresIn int64  // whole seconds
	// rereadIn, rotationPeriod and mintedAt tell a non-leased reader when
	// to read again and how often the token changes.
	rereadIn       time.Duration
	rotationPeriod time.Duration
	mintedAt       string // RFC 3339
	// cache served it: the status probe uses its client.
	cache *tokenCache
}

// serve answers one read in the config's read mode. A leased read on a node
// that may not register the lease is forwarded (errForwardForLease) before
// anything else.
func (c *tokenCache) serve(ctx context.Context) (servedToken, error) {
	cfg := c.config()
	if cfg.LeasedReads && !c.node.mayLease() {
		return servedToken{}, errForwardForLease
	}
	tok, warning, err := c.token(ctx)
	if err != nil {
		return servedToken{}, err
	}
	now := c.clock()
	s := servedToken{
		token:     tok,
		warning:   warning,
		leased:    cfg.LeasedReads,
		leaseTTL:  tok.leaseTTL(now),
		expiresAt: tok.expiresAtText(),
		expiresIn: tok.expiresIn(now),
		cache:     c,
	}
	if !s.leased {
		s.rereadIn = c.rereadIn(tok, now, cfg.RefreshThreshold)
		s.rotationPeriod = tok.rotationPeriod(cfg.RefreshThreshold)
		s.mintedAt = formatTime(tok.MintedAt)
	}
	return s, nil
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
	// fall back to the token of a cache that is no longer the mount's; a
	// node that may not mint forwards rather than serve a token due for
	// refresh, since the node that can may already hold a newer one.
	if isCacheClosed(err) || forwardReason(err) != "" {
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
	if tok != nil && tok.isFresh(c.clock(), c.config().RefreshThreshold) {
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

// holdOffLocked is why no mint may start now, if one may not: a failure
// back-off, or the wait after a rejected token.
func (c *tokenCache) holdOffLocked() error {
	if c.pending != nil {
		return nil
	}
	now := c.clock()
	switch {
	case now.Before(c.rejection.remintAt):
		return &tokenRejectedError{status: c.rejection.status, at: c.rejection.at, rejections: c.rejection.count, until: c.rejection.remintAt}
	case now.Before(c.retryAt):
		return c.backoffErrorLocked(c.retryAt)
	}
	return nil
}

func (c *tokenCache) backoffErrorLocked(until time.Time) *backoffError {
	return &backoffError{last: c.lastErr, failures: c.failures, until: until, asked: !until.After(c.askedUntil)}
}

// mintNow replaces the token now: it ends any failure back-off or wait
// after a rejected token, joins the mint in flight or starts one, and waits
// for it as long as ctx allows. Config verification wants a definite answer.
func (c *tokenCache) mintNow(ctx context.Context) (*accessToken, error) {
	if !c.node.mayWrite() {
		return nil, errForwardForMint
	}
	c.mu.Lock()
	p := c.startMintNowLocked()
	c.mu.Unlock()
	return c.wait(ctx, p, 0)
}

func (c *tokenCache) startMintNowLocked() *pendingMint {
	c.failures, c.retryAt, c.rejection.remintAt = 0, time.Time{}, time.Time{}
	return c.joinOrStartMintLocked()
}

// refreshOnRequest is token/refresh: mintNow, within bounds that keep an
// operator's loop (or a too-wide policy) from running the credential into
// Manus's rate limit. A token minted less than minRefreshInterval ago is
// kept (replaced is false), and while Manus's Retry-After is in force the
// answer is the back-off, as a read's would be.
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
	p := c.startMintNowLocked()
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
		c.recordSuccessLocked(tok)
	} else if !isCacheClosed(err) {
		c.recordFailureLocked(err)
	}
	p.token, p.err = tok, err
	c.pending = nil
	// Decided before the readers are woken: a config write installs its
	// cache only after its verification mint has answered, and persists
	// that token itself.
	persist := err == nil && c.installed.Load() && c.store != nil
	c.mu.Unlock()
	close(p.done)
	// Readers are woken before the token is persisted: slow storage must
	// not look like a slow Manus.
	if persist && c.ctx.Err() == nil {
		c.store.persist(c.logger, tok, c.config().Generation)
	}
	if c.ctx.Err() != nil {
		c.closeClient() // a mint that outlived its cache leaves no idle connection behind
	}
}

func (c *tokenCache) recordSuccessLocked(tok *accessToken) {
	c.current.Store(tok)
	c.restored = false
	if c.failures > 0 {
		c.logger.Info("Manus is issuing tokens again; failure back-off ended", "failed_mints", c.failures)
	}
	c.failures = 0
	c.retryAt, c.askedUntil = time.Time{}, time.Time{}
}

func (c *tokenCache) recordFailureLocked(err error) {
	now := c.clock()
	c.failures++
	c.lastErr, c.lastErrAt = err, now
	c.retryAt = now.Add(failureBackoff(c.failures, retryAfterOf(err)))
	c.askedUntil = now.Add(min(retryAfterOf(err), maxHonouredRetryAfter))
	c.logger.Warn("failure back-off: reads will not ask Manus for a token until it ends",
		"until", formatTime(c.retryAt), "window", c.retryAt.Sub(now).String(), "failed_mints", c.failures)
}

// failureBackoff is the window after the nth consecutive failed mint:
// 1s, 2s, 4s ... up to a minute, or longer if Manus asked for it.
func failureBackoff(failures int, retryAfter time.Duration) time.Duration {
	return max(cappedDoubling(minFailureBackoff, maxFailureBackoff, failures-1), min(retryAfter, maxHonouredRetryAfter))
}

// rejectionRemintWait is how long after the nth rejected token in a row a
// new mint must wait: none after the first, then a minute doubling to half
// an hour (see maxRejectionRemintWait).
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

// rereadIn is how long a non-leased reader served tok at now should wait
// before reading again: the token's own schedule while it is fresh, else
// until the failure back-off ends and a mint may be tried again.
func (c *tokenCache) rereadIn(tok *accessToken, now time.Time, configuredThreshold time.Duration) time.Duration {
	if tok.isFresh(now, configuredThreshold) {
		return tok.freshRereadIn(now, configuredThreshold)
	}
	c.mu.Lock()
	backoffEnd := c.retryAt
	c.mu.Unlock()
	return tok.staleRereadIn(now, backoffEnd)
}

// reject drops tok, which Manus refused (status is how, e.g. "HTTP 401
// UNAUTHENTICATED"), so no reader gets it again. The next mint may start at
// once the first time, later after further rejections in a row
// (rejectionRemintWait). It reports whether tok was still the cached token;
// if a newer one has replaced it meanwhile, nothing is known against that
// one and nothing changes.
func (c *tokenCache) reject(tok *accessToken, status string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.current.CompareAndSwap(tok, nil) {
		return false
	}
	now := c.clock()
	c.rejection.count++
	c.rejection.at, c.rejection.status = now, status
	c.rejection.remintAt = now.Add(rejectionRemintWait(c.rejection.count))
	c.logger.Warn("Manus rejected the cached token; it is no longer served", "how", status,
		"rejections_in_a_row", c.rejection.count, "next_mint_from", formatTime(c.rejection.remintAt))
	return true
}

// accepted records that Manus accepted the cached token, ending a run of
// rejections.
func (c *tokenCache) accepted() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rejection.count = 0
}

// dropRejected stops serving the token with value accessToken, which
// another node found rejected, if it is the cached one.
func (c *tokenCache) dropRejected(accessToken string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur := c.current.Load(); cur != nil && cur.AccessToken == accessToken {
		c.current.Store(nil)
		c.logger.Warn("another node found the cached token rejected by Manus; it is no longer served")
	}
}

// cacheState is what the status path shows of a cache.
type cacheState struct {
	token          *accessToken
	restored       bool
	loadedAt       time.Time
	minting        bool
	failedMints    int
	backoffUntil   time.Time // zero unless a failure back-off is in force
	refreshAt      time.Time // when the token becomes due for refresh
	leaseTTL       time.Duration
	rejections     int
	lastRejectedAt time.Time
	remintAt       time.Time // zero unless a mint must wait after a rejection
}

func (c *tokenCache) snapshot() cacheState {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock()
	st := cacheState{
		token:          c.current.Load(),
		restored:       c.restored,
		loadedAt:       c.loadedAt,
		minting:        c.pending != nil,
		failedMints:    c.failures,
		rejections:     c.rejection.count,
		lastRejectedAt: c.rejection.at,
	}
	if now.Before(c.retryAt) {
		st.backoffUntil = c.retryAt
	}
	if now.Before(c.rejection.remintAt) {
		st.remintAt = c.rejection.remintAt
	}
	if st.token != nil {
		st.refreshAt = st.token.refreshAt(c.config().RefreshThreshold)
		st.leaseTTL = st.token.leaseTTL(now)
	}
	return st
}

// restore installs a token read back from storage. What the node that
// mints stored is its latest decision (a refresh, or a replacement for a
// rejected token, may well expire sooner than the token it replaced), so it
// replaces whatever is cached; only the same token changes nothing.
func (c *tokenCache) restore(tok *accessToken) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur := c.current.Load(); cur != nil && cur.AccessToken == tok.AccessToken {
		return false
	}
	c.current.Store(tok)
	c.restored = true
	c.loadedAt = c.clock()
	return true
}

// close cancels any mint in flight, whose waiting readers get why (a
// *cacheClosedError), and closes the client's idle connections; the cache is
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
	// asked is set when until is Manus's own Retry-After, which
	// token/refresh honours too.
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

// failedMints is "1 failed mint", "3 failed mints in a row".
func failedMints(n int) string {
	if n == 1 {
		return "1 failed mint"
	}
	return fmt.Sprintf("%d failed mints in a row", n)
}

func (e *backoffError) Unwrap() error { return e.last }

// tokenRejectedError is returned, without asking Manus, between a token
// Manus rejected and the next mint allowed after it.
type tokenRejectedError struct {
	status     string
	at         time.Time
	rejections int
	until      time.Time
}

func (e *tokenRejectedError) Error() string {
	return fmt.Sprintf("Manus rejected the mount's last %d tokens (the last at %s, %s), so none is served; after repeated rejections the plugin waits until %s before minting again. Check the credential in Manus; vault write -f <mount>/token/refresh mints at once",
		e.rejections, formatTime(e.at), e.status, formatTime(e.until))
}

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
