package manus

import (
	"slices"
	"strings"
	"time"
)

// The promises the simulation checks after every step (and every request to
// an upstream host as it is made), each written once, beside the one line
// of the docs it holds. A broken promise is recorded as the history's
// violation; simulation_test.go reports it with the shortest history that
// still breaks it.

// checkCallLocked runs the promises about requests to Manus as each is made.
//
// The mint promises below are checked mint by mint, which is stronger than
// a count; together they bound a mount's mints (tokens Manus issues) by: one
// per config generation, plus one per token lifetime (at its refresh
// point), one per token/refresh (at most one a minute), one per token Manus
// rejected, one per config write that changes the upstream (its
// verification), one per mint cut short by a restart, reload, failover or
// config change, and, for a node whose storage refuses writes, one per
// refusal window. Retries are within a mint, and a cache has one mint in
// flight at a time.
func (s *sim) checkCallLocked(c *simCall) {
	s.standbyNeverCallsManus(c)
	if c.path != tokenEndpointPath {
		s.tokenGoesOnlyWhereItCameFrom(c)
		return
	}
	s.secretGoesOnlyWhereItsWriterSaid(c)
	if c.retry {
		return // part of a mint already checked when it started
	}
	if c.role == roleSilent {
		s.refusedNodeWaitsOutItsWindow(c)
	}
	if c.tag != 0 {
		s.onlyAChangeIsVerified(c)
		return // otherwise the write's own mint
	}
	s.readersShareOneMint(c)
	if c.role.stateAllowsWrites() && !c.refresh {
		s.mintHasACause(c)
	}
	if c.role != roleActive {
		return
	}
	k := s.cacheLocked(c)
	k.closeFailedMint()
	if c.refresh {
		s.refreshIsBounded(c, k)
		return
	}
	s.failureBackoffHolds(c, k)
	s.rejectionWaitHolds(c, k)
}

// closeFailedMint: the attempt before a new mint failed, so that mint did.
func (k *simCacheTrack) closeFailedMint() {
	if !k.lastAttemptFailed {
		return
	}
	k.lastAttemptFailed = false
	k.failedMints++
	k.failedAt = k.lastAttemptEnd
	k.retryAfter = min(k.lastRetryAfter, maxHonouredRetryAfter)
	k.askedUntil = k.failedAt.Add(k.retryAfter)
}

// "A write that changes nothing but leased_reads verifies nothing, mints
// nothing ... A write of the values already stored ... stores nothing and
// mints nothing." (docs/configuration.md)
func (s *sim) onlyAChangeIsVerified(c *simCall) {
	if data, isWrite := s.writes[c.tag]; isWrite && !changesUpstream(s.nodes[c.node].view.configLocked(), data) {
		s.failLocked("only a change is verified", "node %d verified a config write that changes nothing Manus sees", c.node)
	}
}

// "A node that may not write never calls Manus at all, neither the token
// endpoint nor the users API." (docs/cluster.md)
func (s *sim) standbyNeverCallsManus(c *simCall) {
	if !c.role.stateAllowsWrites() {
		s.failLocked("standby never calls Manus", "node %d (%s) sent %s to %s", c.node, c.role, c.path, c.host)
	}
}

// "A write with client_secret ... sends the new secret" only to the
// destination it names, or the default one if it names none; no write moves
// the stored secret. (docs/configuration.md, Where the secret goes)
func (s *sim) secretGoesOnlyWhereItsWriterSaid(c *simCall) {
	if !s.confirmed[[2]string{c.host, c.secret}] {
		s.failLocked("secret goes only where its writer said", "node %d sent a client secret to %s that no write carrying it named (%s)", c.node, c.host, s.genName(c.gen))
	}
}

// The bearer token is sent only to the Manus it was minted at (the status
// probe's users API call; docs/failure-behaviour.md).
func (s *sim) tokenGoesOnlyWhereItCameFrom(c *simCall) {
	if t := s.tokens[c.bearer]; t == nil || t.host != c.host {
		s.failLocked("token goes only where it came from", "node %d sent %s to %s", c.node, s.tokenName(c.bearer), c.host)
	}
}

// "Concurrent reads that find it due share a single mint" (docs/architecture.md):
// a cache never has two token requests of its own in flight.
func (s *sim) readersShareOneMint(c *simCall) {
	for _, other := range s.calls {
		if other.path == tokenEndpointPath && other.tag == 0 && other.node == c.node && other.inc == c.inc && other.gen == c.gen && other.ctx.Err() == nil {
			s.failLocked("readers share one mint", "node %d started a second mint for %s while one was in flight", c.node, s.genName(c.gen))
		}
	}
}

// "One mint per token lifetime for the whole cluster": a node mints only
// when its storage holds no fresh token of its config that Manus has not
// rejected (to it, or in storage), or token/refresh asks it to; a
// failover, restart or reload reuses the stored token. (docs/cluster.md)
func (s *sim) mintHasACause(c *simCall) {
	st := s.nodes[c.node].view.storedTokenLocked()
	if st == nil || st.ConfigGeneration != c.gen || st.Rejected {
		return
	}
	if _, ok := s.localRejected[[2]int{c.node, c.inc}][st.AccessToken]; ok {
		return
	}
	for _, t := range s.tokens {
		if t.node == c.node && t.inc == c.inc && t.gen == c.gen && t.requestedAt.After(st.MintedAt) {
			return // it holds a newer token of its own, which storage refused
		}
	}
	if st.token().isFresh(c.at, s.gens[c.gen].threshold) {
		s.failLocked("a mint has a cause", "node %d (%s) minted for %s while its storage held %s, fresh until %s",
			c.node, c.role, s.genName(c.gen), s.tokenName(st.AccessToken), formatTime(st.token().refreshAt(s.gens[c.gen].threshold)))
	}
}

// "After a failed mint, reads do not ask Manus again for 1 s, then 2 s, 4 s
// ... up to 60 s ... (longer if Manus sent a Retry-After, up to 5 minutes)."
// (docs/failure-behaviour.md, Failure back-off)
func (s *sim) failureBackoffHolds(c *simCall, k *simCacheTrack) {
	if k.failedMints == 0 {
		return
	}
	if until := k.failedAt.Add(failureBackoff(k.failedMints, k.retryAfter)); c.at.Before(until) {
		s.failLocked("the failure back-off holds", "node %d minted %s after %d failed mint(s), before its back-off ended at %s",
			c.node, c.at.Sub(k.failedAt), k.failedMints, formatTime(until))
	}
}

// "The first rejection allows a mint at once, each further one waits twice
// as long, from 1 minute up to 30 minutes." (docs/failure-behaviour.md)
func (s *sim) rejectionWaitHolds(c *simCall, k *simCacheTrack) {
	if k.rejections < 2 {
		return
	}
	if until := k.rejectedAt.Add(rejectionRemintWait(k.rejections)); c.at.Before(until) {
		s.failLocked("the wait after rejections holds", "node %d minted %s after its %d-th rejected token in a row, before %s",
			c.node, c.at.Sub(k.rejectedAt), k.rejections, formatTime(until))
	}
}

// "Within 1 minute of the cached token's mint, a refresh mints nothing ...
// while Manus's own Retry-After is in force, a refresh ... sends nothing."
// (docs/failure-behaviour.md, Replacing the token now)
func (s *sim) refreshIsBounded(c *simCall, k *simCacheTrack) {
	st := s.nodes[c.node].view.storedTokenLocked()
	if st != nil && st.ConfigGeneration == c.gen && !st.Rejected && c.at.Sub(st.MintedAt) < minRefreshInterval {
		s.failLocked("token/refresh is bounded", "node %d minted on token/refresh %s after %s was minted", c.node, c.at.Sub(st.MintedAt), s.tokenName(st.AccessToken))
	}
	if c.at.Before(k.askedUntil) {
		s.failLocked("token/refresh is bounded", "node %d minted on token/refresh while Manus's Retry-After ran until %s", c.node, formatTime(k.askedUntil))
	}
}

// "A node that is read-only without saying so tries again, and mints once,
// only as often as the window allows": 1 s after the first refusal,
// doubling up to 30 minutes (docs/cluster.md, A node whose storage refuses
// writes). A mint decided concurrently with the refused write, in the same
// burst, may still go out.
func (s *sim) refusedNodeWaitsOutItsWindow(c *simCall) {
	h := s.refusals[[2]int{c.node, c.inc}]
	concurrent := h != nil && h.burst && h.step == s.step
	if h != nil && h.inForce(c.at) && !concurrent {
		s.failLocked("a refused node waits out its window", "node %d (%s) sent a token request %s after its %d-th refused write, before %s",
			c.node, c.role, c.at.Sub(h.last), h.count, formatTime(h.until))
	}
}

// checkAnswer runs the promises about one token read, once it is answered.
func (s *sim) checkAnswer(a simAnswer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.add("token reads", 1)
	if a.failure != "" {
		s.stats.add("token reads failed", 1)
		s.stats.add("token reads failed: "+simFailureCause(a.failure)+" (on "+a.hop.role.String()+")", 1)
		s.eventf("  -> read on node %d failed: %s", a.hop.node, shorten(a.failure, 200))
		s.everyReadIsAnswered(a)
		return
	}
	s.eventf("  -> read answered by node %d with %s (leased %v, ttl %s)", a.hop.node, s.tokenName(a.token), a.leased, a.ttl)
	s.stats.add("token reads answered on "+a.hop.role.String(), 1)
	if a.hop.forwarded {
		s.stats.add("token reads answered after forwarding", 1)
	}
	if a.hop.informed < a.hop.written {
		s.stats.add("token reads answered while a write was on its way to the node", 1)
	}
	s.leaseEndsBeforeToken(a)
	s.noStaleToken(a)
	if a.hop.role.storageWritable() {
		s.served = append(s.served, a)
	}
}

// "A non-renewable lease that ends before the token": the lease ends no
// later than the expiry Manus itself recorded. (docs/caching-and-leases.md)
func (s *sim) leaseEndsBeforeToken(a simAnswer) {
	t := s.tokens[a.token]
	if a.leased && t != nil && a.at.Add(a.ttl).After(t.expiresAt) {
		s.failLocked("a lease ends before its token", "node %d leased %s for %s, past its expiry at Manus (%s)", a.hop.node, s.tokenName(a.token), a.ttl, formatTime(t.expiresAt))
	}
}

// "A standby serves only a token stored under the mount's current config,
// never one of a replaced or deleted config, and never a token Manus
// rejected"; "readers never get a token older than the one the active node
// would serve" (docs/cluster.md); a 401 "drops the token on this node and,
// through a rejection mark in storage, on every other node (a node that
// restarts never restores it)" (docs/failure-behaviour.md): no node serves
// such a token once the change reached it (its Invalidate returned).
func (s *sim) noStaleToken(a simAnswer) {
	t := s.tokens[a.token]
	if t == nil {
		s.failLocked("no stale token", "node %d served a token Manus never issued", a.hop.node)
		return
	}
	if why := s.whyStaleLocked(a, t); why != "" {
		s.failLocked("no stale token", "node %d (%s) served %s although %s, and that had reached it", a.hop.node, a.hop.role, s.tokenName(a.token), why)
	}
}

// whyStaleLocked is why a's token may no longer be served, judging by what
// had reached the node that answered when the read began; "" if it may.
func (s *sim) whyStaleLocked(a simAnswer, t *simToken) string {
	// A node whose storage refuses writes cannot store the mark, so a new
	// cache there (after Invalidate of config) restores the token: the docs
	// promise the rejection beyond its cache only through storage.
	if at, ok := s.localRejected[[2]int{a.hop.node, a.hop.inc}][a.token]; ok && at.Before(a.hop.start) && a.hop.role != roleSilent {
		return "its own probe saw Manus reject it"
	}
	for _, r := range s.rejections {
		if r.token == a.token && a.hop.informed >= r.index && !a.hop.start.Before(r.at) {
			return "Manus rejected it to the active node's probe"
		}
	}
	if !slices.ContainsFunc(s.log, func(e simLogEntry) bool { return e.cfg != nil && e.cfg.Generation == t.gen }) {
		return "its config " + s.genName(t.gen) + " was never stored"
	}
	known := s.log[:a.hop.informed]
	rejected := map[string]bool{}
	for _, e := range known {
		if e.tok != nil && e.tok.Rejected {
			rejected[e.tok.AccessToken] = true
		}
	}
	ownToken := a.hop.role == roleSilent && t.node == a.hop.node && t.inc == a.hop.inc
	seen, why := false, ""
	for _, e := range known {
		switch {
		case e.key == configStorageKey && e.cfg != nil && e.cfg.Generation == t.gen:
			seen = true
		case e.key == configStorageKey && seen && e.cfg == nil:
			why = "the config was deleted"
		case e.key == configStorageKey && seen:
			why = "its config " + s.genName(t.gen) + " was replaced by " + s.genName(e.cfg.Generation)
		case e.tok == nil:
		case e.tok.AccessToken == a.token && e.tok.Rejected:
			why = "it was marked rejected"
		case ownToken:
			// A node whose storage refuses writes keeps the token it
			// minted itself (storage refused it) until it is due, even
			// if the active node's, a moment newer, arrived meanwhile.
		case e.tok.AccessToken != a.token && e.tok.ConfigGeneration == t.gen && e.tok.MintedAt.After(t.requestedAt) &&
			(rejected[e.tok.AccessToken] || e.tok.token().servableAt(a.hop.start)):
			why = "a newer token of its config, " + s.tokenName(e.tok.AccessToken) + ", replaced it"
		}
	}
	return why
}

// "Every read succeeds on every node" (docs/cluster.md), within what the
// docs allow to fail: a read fails only when no servable token of the
// current config is stored and Manus could not mint one (an outage, a
// fault, a bad credential, a hold-off in force), or the node asked has not
// yet received the current config.
func (s *sim) everyReadIsAnswered(a simAnswer) {
	// A config write concurrent with the read changes what it may expect.
	changed := slices.ContainsFunc(s.log[a.cfgAt:], func(e simLogEntry) bool { return e.key == configStorageKey })
	if a.mustWork != "" && !changed {
		s.failLocked("every read is answered", "a read sent to node %d (%s) failed on node %d although %s: %s", a.asked, a.askedRole, a.hop.node, a.mustWork, shorten(a.failure, 300))
	}
}

// mustAnswerLocked is why a read about to be sent to n may not fail, or "".
func (s *sim) mustAnswerLocked(n *simNode) string {
	cfg := s.currentConfigLocked()
	if n.role == roleSilent || cfg == nil || !sameConfig(n.view.configLocked(), cfg) {
		return ""
	}
	now := time.Now()
	// A read may wait request_timeout + 0.5 s for a mint before it falls
	// back on the stored token: it must still be servable then.
	fallback := now.Add(cfg.RequestTimeout + readerWaitSlack)
	if st := s.currentTokenLocked(); st != nil && st.ConfigGeneration == cfg.Generation && !st.Rejected && st.token().servableAt(fallback) {
		return "a token of the current config servable until the read's longest wait ended, " + s.tokenName(st.AccessToken) + ", was stored"
	}
	if why := s.manusCannotMintLocked(cfg, now); why != "" {
		return ""
	}
	return "Manus could mint one (healthy, the credential valid, no hold-off possible)"
}

func (s *sim) manusCannotMintLocked(cfg *manusConfig, now time.Time) string {
	switch {
	case cfg.BaseURL != simBaseURL(simHostManus) && cfg.BaseURL != simBaseURL(simHostProxy):
		return "the config does not point at Manus"
	case s.clients[cfg.ClientID] != cfg.ClientSecret:
		return "Manus does not know the credential"
	case s.outage || s.queuedFaults > 0:
		return "a fault is pending"
	case now.Sub(s.lastFailure) < maxHonouredRetryAfter:
		return "a failure back-off may be in force"
	case s.rejectRun > 1 && now.Sub(s.lastRejection) < maxRejectionRemintWait:
		return "a wait after rejections may be in force"
	}
	for _, c := range s.calls {
		if c.path == tokenEndpointPath && c.ctx.Err() == nil {
			return "a token request is in flight"
		}
	}
	return ""
}

// checkEndOfStep runs the promises about the state a step leaves.
func (s *sim) checkEndOfStep() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.served {
		s.servedTokenIsStored(a)
	}
	s.served = nil
	s.tokenRequestsKeepTheContract()
}

// The plugin keeps the token endpoint's published contract (form body
// only, the three fields, no Authorization header): the stand-in records
// any breach. (CONTRIBUTING.md, The stand-in)
func (s *sim) tokenRequestsKeepTheContract() {
	if v := s.manus.Violations(); len(v) > 0 {
		s.failLocked("token requests keep the contract", "the stand-in recorded %q", v)
	}
}

// "Persist the token. Restarts, reloads and leader changes reuse it
// instead of minting" (docs/architecture.md): a token the active node
// served is stored by the end of the step, unless its config or a newer
// token replaced it.
func (s *sim) servedTokenIsStored(a simAnswer) {
	t := s.tokens[a.token]
	if t == nil {
		return
	}
	cfg := s.currentConfigLocked()
	if cfg == nil || cfg.Generation != t.gen {
		return
	}
	for _, e := range s.log {
		if e.tok != nil && (e.tok.AccessToken == a.token || e.tok.ConfigGeneration == t.gen && e.tok.MintedAt.After(t.requestedAt)) {
			return
		}
	}
	s.failLocked("a served token is stored", "node %d served %s of %s but never stored it: a failover or restart would mint again", a.hop.node, s.tokenName(a.token), s.genName(t.gen))
}

// simFailureCause names why a read failed, for the coverage report.
func simFailureCause(failure string) string {
	for _, c := range []struct{ text, cause string }{
		{"no Manus credentials", "no config"},
		{"register the lease", "lease on a node that cannot store it"},
		{"Manus rejected the mount's last", "wait after rejections"},
		{"waits until", "failure back-off"},
		{"Manus asked not to be asked", "Retry-After"},
		{"has not answered within", "mint in progress (timeout)"},
		{"INVALID_CLIENT", "credential refused"},
		{"HTTP 500", "capture host"},
		{"HTTP 503", "Manus unavailable"},
		{"HTTP 429", "rate-limited"},
		{"readonly storage", "forwarded to a node that forwards"},
	} {
		if strings.Contains(failure, c.text) {
			return c.cause
		}
	}
	return "other: " + shorten(failure, 60)
}
