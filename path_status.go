package manus

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

const statusPath = "status"

func (b *backend) pathStatus() *framework.Path {
	return &framework.Path{
		Pattern: statusPath,
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefixManus,
		},
		Fields: map[string]*framework.FieldSchema{
			"probe": {
				Type:         framework.TypeBool,
				Description:  "Also call GET " + usersEndpointPath + "?limit=1 with the cached token (minting one if needed) and report whether Manus accepted it; a token Manus rejects (HTTP 401) is dropped. On a node that may not mint, the request is forwarded to the one that does.",
				Default:      false,
				DisplayAttrs: &framework.DisplayAttributes{Name: "Probe"},
			},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback:     b.pathStatusRead,
				Summary:      "Report what the plugin knows about this mount's credential, token and Manus, without showing either secret.",
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "read", OperationSuffix: "status"},
				Responses: map[int][]framework.Response{
					http.StatusOK: {{Description: "OK", Fields: statusResponseFields()}},
				},
			},
		},
		HelpSynopsis:    "Operator view of the mount: configuration, cached token, counters, last error and back-off.",
		HelpDescription: strings.TrimSpace(statusHelp),
	}
}

func statusResponseFields() map[string]*framework.FieldSchema {
	field := func(t framework.FieldType, name, desc string) *framework.FieldSchema {
		return &framework.FieldSchema{Type: t, Description: desc, DisplayAttrs: &framework.DisplayAttributes{Name: name}}
	}
	return map[string]*framework.FieldSchema{
		"configured":               field(framework.TypeBool, "Configured", "Whether config holds a credential."),
		"client_id":                field(framework.TypeString, "Client ID", "The configured client ID."),
		"base_url":                 field(framework.TypeString, "Base URL", "The configured Manus API base URL."),
		"token_cached":             field(framework.TypeBool, "Token cached", "Whether a token is cached."),
		"token_minted_at":          field(framework.TypeTime, "Token minted at", "When the cached token was requested."),
		"token_expires_at":         field(framework.TypeTime, "Token expires at", "When Manus stops accepting the cached token."),
		"token_expires_in":         field(framework.TypeInt, "Token expires in", "Seconds of life the cached token has left."),
		"leased_reads":             field(framework.TypeBool, "Leased reads", "The read mode: true when token reads return a leased secret, false when they return the rotating-secret fields without a lease."),
		"token_lease_ttl":          field(framework.TypeInt, "Lease TTL now", "Lease in seconds a token read would get now, after the mount's max_lease_ttl (0: reads are not leased, or the token is too close to expiry to serve)."),
		"token_refresh_at":         field(framework.TypeTime, "Refresh due at", "When the cached token becomes due for refresh."),
		"token_restored":           field(framework.TypeBool, "Restored from storage", "Whether the cached token was read back from storage after a restart, reload or leader change."),
		"minting":                  field(framework.TypeBool, "Minting", "Whether a token request is in flight."),
		"mints":                    field(framework.TypeInt, "Mints", "Tokens minted since the plugin started serving this mount."),
		"failed_attempts":          field(framework.TypeInt, "Failed attempts", "Token requests that failed since the plugin started, config-write verifications included."),
		"retries":                  field(framework.TypeInt, "Retries", "Token requests that were retries of a failed one."),
		"reads_from_cache":         field(framework.TypeInt, "Reads from cache", "Token reads (and status probes) served the cached token without minting."),
		"reads_stale":              field(framework.TypeInt, "Stale reads", "Token reads served the cached token because its refresh failed."),
		"last_error":               field(framework.TypeString, "Last error", "The last failed token request (a config-write verification included), as the plugin reports it."),
		"last_error_code":          field(framework.TypeString, "Last error code", "The Manus code of the last failure, if Manus sent one."),
		"last_error_http_status":   field(framework.TypeInt, "Last error HTTP status", "The HTTP status of the last failure (0: no answer)."),
		"last_error_at":            field(framework.TypeTime, "Last error at", "When the last failure happened."),
		"consecutive_failed_mints": field(framework.TypeInt, "Consecutive failed mints", "Mints that failed in a row, all attempts spent."),
		"backoff_until":            field(framework.TypeTime, "Back-off until", "Reads do not ask Manus for a token before this; empty when no back-off is in force."),
		"node_role":                field(framework.TypeString, "Node role", "What this node is to the mount's storage: active, performance standby, performance secondary, performance standby of a performance secondary, dr secondary, or read-only storage (a write was refused)."),
		"node_can_mint":            field(framework.TypeBool, "Node can mint", "Whether this node may write the mount's storage and so mints; where false, reads that need a mint or a lease, and every write, are forwarded to the node that can."),
		"token_source":             field(framework.TypeString, "Token source", "Where the cached token came from: \"minted on this node\" or \"storage\" (persisted by this node before a restart, or by the active node)."),
		"token_loaded_at":          field(framework.TypeTime, "Token loaded at", "When this node last took a token from storage; empty if it never has."),
		"reads_forwarded":          field(framework.TypeInt, "Reads forwarded", "Token reads this node forwarded to the node that can mint or register the lease."),
		"token_rejections":         field(framework.TypeInt, "Token rejections", "Tokens Manus rejected in a row (status probes answered HTTP 401); 0 once a probe is accepted."),
		"token_rejected_at":        field(framework.TypeTime, "Token rejected at", "When Manus last rejected the cached token; each rejected token is dropped at once."),
		"remint_after":             field(framework.TypeTime, "Re-mint after", "After repeated rejections, no token is minted before this; empty when none is held back."),
		"probe_ok":                 field(framework.TypeBool, "Probe OK", "With probe=true: whether the users API accepted the token."),
		"probe_http_status":        field(framework.TypeInt, "Probe HTTP status", "With probe=true: the users API's HTTP status."),
		"probe_manus_code":         field(framework.TypeString, "Probe Manus code", "With probe=true: the users API's error code, if any."),
		"probe_round_trip_ms":      field(framework.TypeInt, "Probe round trip", "With probe=true: milliseconds the users API call took."),
		"probe_error":              field(framework.TypeString, "Probe error", "With probe=true: why no answer or no token was had."),
	}
}

func (b *backend) pathStatusRead(ctx context.Context, req *logical.Request, data *framework.FieldData) (*logical.Response, error) {
	status := map[string]any{}
	if data.Get("probe").(bool) {
		if !b.node.mayWrite() {
			// A probe may mint and may drop the token for every node:
			// the node that mints does it.
			return nil, errForwardWrite
		}
		// First, so what follows shows a token the probe minted or
		// dropped.
		b.probe(ctx, req, status)
	}
	maps.Copy(status, b.counterStatus())
	status["node_role"] = b.node.role()
	status["node_can_mint"] = b.node.mayWrite()
	cache, err := b.loadTokenCache(ctx, req)
	status["configured"] = !errors.Is(err, errNotConfigured)
	switch {
	case errors.Is(err, errNotConfigured):
		return &logical.Response{Data: status}, nil
	case err != nil:
		return nil, err
	}
	cfg := cache.config()
	status["client_id"] = cfg.shownClientID()
	status["base_url"] = cfg.BaseURL
	status["leased_reads"] = cfg.LeasedReads
	st := cache.snapshot()
	if cfg.LeasedReads {
		st.leaseTTL = b.grantedLeaseTTL(st.leaseTTL)
	} else {
		st.leaseTTL = 0 // reads get no lease
	}
	addCacheStatus(status, st, b.clock())
	return &logical.Response{Data: status}, nil
}

// grantedLeaseTTL is the lease Vault grants a token read that asks for ttl:
// core caps every secret's TTL at the mount's max_lease_ttl, or else the
// system's, with framework.CalculateTTL (vault/request_handling.go,
// handleRequest), and the backend's system view reports the same maximum.
// Status shows this, not the plugin's request, so that an operator who
// tuned the mount sees the lease readers actually get.
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

// counterStatus reports the mount's counters and last failure.
func (b *backend) counterStatus() map[string]any {
	status := map[string]any{
		"mints":            b.stats.mints.Load(),
		"failed_attempts":  b.stats.failedAttempts.Load(),
		"retries":          b.stats.retries.Load(),
		"reads_from_cache": b.stats.cacheHits.Load(),
		"reads_stale":      b.stats.staleServes.Load(),
		"reads_forwarded":  b.stats.forwardedForMint.Load() + b.stats.forwardedForLease.Load(),
	}
	if last := b.stats.lastFailure(); last != nil {
		status["last_error"] = last.message
		status["last_error_code"] = last.code
		status["last_error_http_status"] = last.httpStatus
		status["last_error_at"] = formatTime(last.at)
	}
	return status
}

func addCacheStatus(status map[string]any, st cacheState, now time.Time) {
	status["token_cached"] = st.token != nil
	status["token_restored"] = st.restored
	status["minting"] = st.minting
	status["consecutive_failed_mints"] = st.failedMints
	status["token_rejections"] = st.rejections
	for field, at := range map[string]time.Time{
		"backoff_until":     st.backoffUntil,
		"token_loaded_at":   st.loadedAt,
		"token_rejected_at": st.lastRejectedAt,
		"remint_after":      st.remintAt,
	} {
		if !at.IsZero() {
			status[field] = formatTime(at)
		}
	}
	if st.token == nil {
		return
	}
	status["token_source"] = "minted on this node"
	if st.restored {
		status["token_source"] = "storage"
	}
	status["token_minted_at"] = formatTime(st.token.MintedAt)
	status["token_expires_at"] = formatTime(st.token.ExpiresAt)
	status["token_expires_in"] = st.token.expiresIn(now)
	status["token_lease_ttl"] = int64(st.leaseTTL / time.Second)
	status["token_refresh_at"] = formatTime(st.refreshAt)
}

// probe proves the credential end to end with the users API and adds the
// outcome to status. It gets its token as a token read does (readToken). The
// token itself is never added. A token the users API rejects as
// unauthenticated is dropped, here and, through storage, on every node.
func (b *backend) probe(ctx context.Context, req *logical.Request, status map[string]any) {
	status["probe_ok"] = false
	served, err := b.readToken(ctx, req)
	if err != nil {
		status["probe_error"] = "no token to probe with: " + err.Error()
		return
	}
	cache := served.cache
	result := cache.client.probeUsers(ctx, served.token.AccessToken)
	status["probe_round_trip_ms"] = result.roundTrip.Milliseconds()
	if result.err != nil {
		status["probe_error"] = result.err.Error()
		return
	}
	status["probe_http_status"] = result.httpStatus
	status["probe_manus_code"] = result.code
	status["probe_ok"] = result.accepted()
	logProbe(cache.logger, result)
	switch {
	case result.accepted():
		cache.accepted()
	case result.rejectsToken():
		b.dropRejectedToken(cache, served.token, result)
	}
}

// dropRejectedToken stops serving tok, which Manus rejected, and records the
// rejection in storage so no other node serves it either.
func (b *backend) dropRejectedToken(cache *tokenCache, tok *accessToken, result probeResult) {
	how := fmt.Sprintf("HTTP %d", result.httpStatus)
	if result.code != "" {
		how += " " + result.code
	}
	if cache.reject(tok, how) {
		b.stats.rejected.Add(1)
		b.store.markRejected(cache.logger, tok, cache.config().Generation)
	}
}

func logProbe(logger hclog.Logger, result probeResult) {
	fields := []any{"http_status", result.httpStatus, "manus_code", result.code, "round_trip", result.roundTrip.Round(time.Millisecond).String()}
	if result.accepted() {
		logger.Info("status probe: the users API accepted the token", fields...)
		return
	}
	logger.Warn("status probe: the users API refused the token", fields...)
}

const statusHelp = `
Shows, for operators, what the plugin thinks is going on with this mount. It
never shows the token or the client secret.

- configured, client_id, base_url, leased_reads: the stored settings.
- token_*: the cached token's state: when it was minted and expires, seconds
  left, the lease a read would get now, when it is due for refresh, and
  whether it was restored from storage.
- mints, failed_attempts, retries, reads_from_cache, reads_stale: counters
  since the plugin process started serving the mount.
- last_error, last_error_code, last_error_http_status, last_error_at: the
  last failed token request.
- consecutive_failed_mints, backoff_until: the failure back-off, if any.

- node_role, node_can_mint, token_source, token_loaded_at, reads_forwarded:
  this node's part in a cluster. A standby that serves reads does not mint:
  it serves the token the active node stored and forwards the rest.
- token_rejections, token_rejected_at, remint_after: tokens Manus rejected.

With probe=true the plugin also calls GET /api/user/manage/v1/users?limit=1
with the token (minting one if needed) and reports probe_ok,
probe_http_status, probe_manus_code and probe_round_trip_ms, and nothing of
the response body. If Manus answers 401, the token is dropped on every node
and the next read mints; after repeated rejections in a row, mints wait
(remint_after). On a standby, probe=true is forwarded to the active node.
`
