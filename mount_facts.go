package manus

import (
	"time"

	"github.com/hashicorp/vault/sdk/framework"
)

// What status and metrics say about a mount is one table: each fact is
// declared once, with its status field, its series and how to read it.
// Status shows every counter the metrics carry, and the state behind them;
// a few facts are one side's only (docs/operating.md, docs/metrics-and-alerts.md).

// mountView is a mount at one instant, as status and metrics read it.
type mountView struct {
	now     time.Time
	stats   *mountStats
	last    *failureRecord
	role    string
	canMint bool
	cfg     *manusConfig // nil: not configured (status), or not loaded yet (metrics)
	cache   cacheState
	// grantedLeaseTTL is the lease Vault grants a read that asks for ttl.
	grantedLeaseTTL func(ttl time.Duration) time.Duration
}

// fact is one thing the plugin reports about a mount.
type fact struct {
	field  string // the manus/status field; "" if status does not show it
	metric string // the series, less "vault_manus_"; "" if none
	label  string // the series' label value, for a family in metricFamilies
	typ    framework.FieldType
	help   string
	// value is the fact now: bool, int64, string or time.Time; nil when
	// there is none (status leaves the field out, the series is absent).
	value func(v *mountView) any
	// zero makes the series read 0 where there is no value.
	zero bool
	// dueIn makes the series of a time the seconds until it, not the time.
	dueIn bool
}

// metricFamilies are the series that carry a label, one fact per value.
var metricFamilies = map[string]struct{ label, help string }{
	"token_mints_total":           {"outcome", "Token mints by outcome (success, failure); one mint is all the attempts, retries included, made to get one token. Counts from zero when the plugin process starts."},
	"token_reads_total":           {"outcome", "Token reads by how they were answered: cache (the cached token, no mint), minted (after waiting for a new token), stale (the cached token after its refresh failed), failed (an error). Status probes count as reads. Counts from zero when the plugin process starts."},
	"token_reads_forwarded_total": {"reason", "Token reads this node could not answer and handed to the node that can, by reason: mint (the token was due and only that node mints) or lease (only that node registers leases). Counts from zero when the plugin process starts."},
}

var facts = []fact{
	{field: "configured", typ: framework.TypeBool, help: "Whether config holds a credential.",
		value: func(v *mountView) any { return v.cfg != nil }},
	{field: "client_id", typ: framework.TypeString, help: "The configured client ID (withheld if it does not look like one).",
		value: configured(func(c *manusConfig) any { return c.shownClientID() })},
	{field: "base_url", typ: framework.TypeString, help: "The configured Manus API base URL.",
		value: configured(func(c *manusConfig) any { return c.BaseURL })},
	{field: "leased_reads", metric: "leased_reads", typ: framework.TypeBool, help: "The read mode: true when token reads return a leased secret, false when they return the token without a lease (absent until the config is loaded).",
		value: configured(func(c *manusConfig) any { return c.LeasedReads })},
	{field: "node_role", typ: framework.TypeString, help: "What this node is to the mount's storage: active, performance standby, performance secondary, performance standby of a performance secondary, dr secondary, or read-only storage (a write was refused).",
		value: func(v *mountView) any { return v.role }},
	{field: "node_can_mint", metric: "node_can_mint", typ: framework.TypeBool, help: "Whether this node may write the mount's storage and so mints; where false, reads that need a mint or a lease, and every write, are forwarded to the node that can.",
		value: func(v *mountView) any { return v.canMint }},

	{field: "token_cached", metric: "token_cached", typ: framework.TypeBool, zero: true, help: "Whether a token is cached.",
		value: cached(func(s cacheState) any { return s.token != nil })},
	{field: "token_minted_at", metric: "last_successful_mint_timestamp_seconds", typ: framework.TypeTime, help: "When the cached token was minted (a token taken from storage keeps its mint time).",
		value: withToken(func(v *mountView) any { return v.cache.token.MintedAt })},
	{field: "token_expires_at", typ: framework.TypeTime, help: "When Manus stops accepting the cached token.",
		value: withToken(func(v *mountView) any { return v.cache.token.ExpiresAt })},
	{field: "token_expires_in", metric: "token_expires_in_seconds", typ: framework.TypeInt, zero: true, help: "Seconds of life the cached token has left (0 when it has expired, or none is cached).",
		value: withToken(func(v *mountView) any { return v.cache.token.expiresIn(v.now) })},
	{field: "token_lease_ttl", typ: framework.TypeInt, help: "Lease in seconds a token read would get now, after the mount's max_lease_ttl (0: reads are not leased, or the token is too close to expiry to serve).",
		value: withToken(func(v *mountView) any {
			if !v.cfg.LeasedReads {
				return int64(0)
			}
			return int64(v.grantedLeaseTTL(v.cache.leaseTTL) / time.Second)
		})},
	{field: "token_refresh_at", metric: "token_refresh_due_in_seconds", typ: framework.TypeTime, dueIn: true, help: "When the cached token becomes due for refresh (the series: seconds until then, negative when overdue).",
		value: withToken(func(v *mountView) any { return v.cache.refreshAt })},
	{field: "token_restored", typ: framework.TypeBool, help: "Whether the cached token was taken from storage (after a restart, reload or leader change, or from the active node).",
		value: cached(func(s cacheState) any { return s.restored })},
	{field: "token_source", typ: framework.TypeString, help: "Where the cached token came from: \"minted on this node\" or \"storage\".",
		value: withToken(func(v *mountView) any {
			if v.cache.restored {
				return "storage"
			}
			return "minted on this node"
		})},
	{field: "token_loaded_at", typ: framework.TypeTime, help: "When this node last took a token from storage.",
		value: cached(func(s cacheState) any { return nonZero(s.loadedAt) })},
	{field: "minting", typ: framework.TypeBool, help: "Whether a token request is in flight.",
		value: cached(func(s cacheState) any { return s.minting })},

	{field: "mints", metric: "token_mints_total", label: "success", typ: framework.TypeInt, help: "Tokens minted since the plugin started serving this mount.",
		value: counter(func(s *mountStats) int64 { return s.mints.Load() })},
	{field: "failed_mints", metric: "token_mints_total", label: "failure", typ: framework.TypeInt, help: "Mints that failed, all attempts spent.",
		value: counter(func(s *mountStats) int64 { return s.mintFailures.Load() })},
	{field: "failed_attempts", typ: framework.TypeInt, help: "Token requests that failed, config-write verifications included (the series token_requests_total has them by outcome and code).",
		value: counter(func(s *mountStats) int64 { return s.failedAttempts.Load() })},
	{field: "retries", metric: "token_request_retries_total", typ: framework.TypeInt, help: "Token requests that were retries of a failed one. Counts from zero when the plugin process starts.",
		value: counter(func(s *mountStats) int64 { return s.retries.Load() })},
	{field: "reads_from_cache", metric: "token_reads_total", label: "cache", typ: framework.TypeInt, help: "Token reads (and status probes) served the cached token without minting.",
		value: counter(func(s *mountStats) int64 { return s.reads.cache.Load() })},
	{field: "reads_minted", metric: "token_reads_total", label: "minted", typ: framework.TypeInt, help: "Token reads that waited for a new token.",
		value: counter(func(s *mountStats) int64 { return s.reads.minted.Load() })},
	{field: "reads_stale", metric: "token_reads_total", label: "stale", typ: framework.TypeInt, help: "Token reads served the cached token because its refresh failed.",
		value: counter(func(s *mountStats) int64 { return s.reads.stale.Load() })},
	{field: "reads_failed", metric: "token_reads_total", label: "failed", typ: framework.TypeInt, help: "Token reads (and status probes) answered with an error.",
		value: counter(func(s *mountStats) int64 { return s.reads.failed.Load() })},
	{field: "reads_forwarded_for_mint", metric: "token_reads_forwarded_total", label: forwardForMint, typ: framework.TypeInt, help: "Token reads this node forwarded to the node that mints, the token being due.",
		value: counter(func(s *mountStats) int64 { return s.forwarded.mint.Load() })},
	{field: "reads_forwarded_for_lease", metric: "token_reads_forwarded_total", label: forwardForLease, typ: framework.TypeInt, help: "Leased token reads this node forwarded to the node that registers leases.",
		value: counter(func(s *mountStats) int64 { return s.forwarded.lease.Load() })},
	{field: "rejected_tokens", metric: "token_rejections_total", typ: framework.TypeInt, help: "Cached tokens Manus rejected (the status probe's HTTP 401), each dropped at once. Counts from zero when the plugin process starts.",
		value: counter(func(s *mountStats) int64 { return s.rejected.Load() })},

	{field: "last_error", typ: framework.TypeString, help: "The last failure: a token request (a config-write verification included), or a token Manus rejected.",
		value: lastFailure(func(f *failureRecord) any { return f.message })},
	{field: "last_error_code", typ: framework.TypeString, help: "The Manus code of the last failure, if Manus sent one.",
		value: lastFailure(func(f *failureRecord) any { return f.code })},
	{field: "last_error_http_status", typ: framework.TypeInt, help: "The HTTP status of the last failure (0: no answer).",
		value: lastFailure(func(f *failureRecord) any { return int64(f.httpStatus) })},
	{field: "last_error_at", metric: "last_failed_request_timestamp_seconds", typ: framework.TypeTime, help: "When the last failure happened.",
		value: lastFailure(func(f *failureRecord) any { return f.at })},
	{field: "consecutive_failed_mints", metric: "consecutive_failed_mints", typ: framework.TypeInt, zero: true, help: "Mints that failed in a row, all attempts spent; 0 after a successful mint or a config write.",
		value: cached(func(s cacheState) any { return int64(s.failedMints) })},
	{field: "token_rejections", typ: framework.TypeInt, help: "Tokens Manus rejected in a row (status probes answered HTTP 401); 0 once a probe is accepted.",
		value: cached(func(s cacheState) any { return int64(s.rejections) })},
	{field: "backoff_until", metric: "failure_backoff_end_timestamp_seconds", typ: framework.TypeTime, help: "No token is requested from Manus before this: a failure back-off, or the wait after tokens Manus rejected in a row; absent when none is in force.",
		value: func(v *mountView) any { return nonZero(v.cache.heldOff) }},
	{metric: "failure_backoff", typ: framework.TypeBool, help: "1 while a failure back-off (or the wait after rejected tokens) is in force: reads do not ask Manus for a token.",
		value: func(v *mountView) any { return !v.cache.heldOff.IsZero() }},
}

func configured(value func(c *manusConfig) any) func(v *mountView) any {
	return func(v *mountView) any {
		if v.cfg == nil {
			return nil
		}
		return value(v.cfg)
	}
}

// cached is a fact of the cache of a configured mount.
func cached(value func(s cacheState) any) func(v *mountView) any {
	return func(v *mountView) any {
		if v.cfg == nil {
			return nil
		}
		return value(v.cache)
	}
}

// withToken is a fact of the cached token.
func withToken(value func(v *mountView) any) func(v *mountView) any {
	return func(v *mountView) any {
		if v.cfg == nil || v.cache.token == nil {
			return nil
		}
		return value(v)
	}
}

func counter(value func(s *mountStats) int64) func(v *mountView) any {
	return func(v *mountView) any { return value(v.stats) }
}

func lastFailure(value func(f *failureRecord) any) func(v *mountView) any {
	return func(v *mountView) any {
		if v.last == nil {
			return nil
		}
		return value(v.last)
	}
}

// nonZero is t, or nil for the zero time.
func nonZero(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}
