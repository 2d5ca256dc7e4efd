package manus

import (
	"context"
	"errors"
	"fmt"
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

// statusResponseFields are the mount's facts that status shows, and the
// probe's outcome.
func statusResponseFields() map[string]*framework.FieldSchema {
	fields := map[string]*framework.FieldSchema{
		"probe_ok":            responseField(framework.TypeBool, "Probe OK", "With probe=true: whether the users API accepted the token."),
		"probe_http_status":   responseField(framework.TypeInt, "Probe HTTP status", "With probe=true: the users API's HTTP status."),
		"probe_manus_code":    responseField(framework.TypeString, "Probe Manus code", "With probe=true: the users API's error code, if any."),
		"probe_round_trip_ms": responseField(framework.TypeInt, "Probe round trip", "With probe=true: milliseconds the users API call took."),
		"probe_error":         responseField(framework.TypeString, "Probe error", "With probe=true: why no answer or no token was had."),
	}
	for _, f := range facts {
		if f.field != "" {
			fields[f.field] = responseField(f.typ, f.field, f.help)
		}
	}
	return fields
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
		b.probe(ctx, status)
	}
	if _, err := b.loadTokenCache(ctx); err != nil && !errors.Is(err, errNotConfigured) {
		return nil, err
	}
	v := b.view()
	for _, f := range facts {
		if f.field == "" {
			continue
		}
		switch value := f.value(&v).(type) {
		case nil:
		case time.Time:
			status[f.field] = formatTime(value)
		default:
			status[f.field] = value
		}
	}
	return &logical.Response{Data: status}, nil
}

// probe proves the credential end to end with the users API and adds the
// outcome to status, never the token. It reads the token as a token read
// does; a token the users API rejects as unauthenticated is dropped, here
// and, through storage, on every node.
func (b *backend) probe(ctx context.Context, status map[string]any) {
	status["probe_ok"] = false
	served, err := b.readToken(ctx)
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
// rejection in storage, so no other node serves it either, and as the
// mount's last failure.
func (b *backend) dropRejectedToken(cache *tokenCache, tok *accessToken, result probeResult) {
	how := fmt.Sprintf("HTTP %d", result.httpStatus)
	if result.code != "" {
		how += " " + result.code
	}
	if cache.reject(tok, how) {
		b.stats.recordRejection(result, how, b.clock())
		b.store.markRejected(tok, cache.config().Generation)
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
never shows the token or the client secret. Fields without a value are left
out.

- configured, client_id, base_url, leased_reads: the stored settings.
- token_*: the cached token: when it was minted and expires, seconds left,
  the lease a read would get now, when it is due for refresh, and whether
  and when it was taken from storage.
- mints, failed_mints, failed_attempts, retries, reads_*, rejected_tokens:
  counters since the plugin process started serving the mount, the same the
  metrics path has.
- last_error, last_error_code, last_error_http_status, last_error_at: the
  last failed token request, or token Manus rejected.
- consecutive_failed_mints, backoff_until: the failure back-off, or the wait
  after rejected tokens, if any.
- node_role, node_can_mint: this node's part in a cluster. A standby that
  serves reads does not mint: it serves the token the active node stored and
  forwards the rest.

With probe=true the plugin also calls GET /api/user/manage/v1/users?limit=1
with the token (minting one if needed) and reports probe_ok,
probe_http_status, probe_manus_code and probe_round_trip_ms, and nothing of
the response body. If Manus answers 401, the token is dropped on every node
and the next read mints; after repeated rejections in a row, mints wait
(backoff_until). On a standby, probe=true is forwarded to the active node.
`
