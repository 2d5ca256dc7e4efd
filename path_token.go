package manus

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

const tokenPath = "token"

func (b *backend) pathToken() *framework.Path {
	return &framework.Path{
		Pattern: tokenPath,
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefixManus,
		},
		Fields: map[string]*framework.FieldSchema{},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback:     b.pathTokenRead,
				Summary:      "Get the mount's shared Manus bearer token, minting one if the cached token is near expiry.",
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "read", OperationSuffix: "access-token"},
				Responses: map[int][]framework.Response{
					http.StatusOK: {{Description: "OK", Fields: tokenResponseFields()}},
				},
			},
		},
		HelpSynopsis:    "Read a Manus bearer token for the Team User Management API.",
		HelpDescription: tokenHelp(),
	}
}

func tokenResponseFields() map[string]*framework.FieldSchema {
	return map[string]*framework.FieldSchema{
		"access_token": {
			Type:         framework.TypeString,
			Description:  "Bearer token for the Manus /api/user/manage/v1/users endpoints: send it as \"Authorization: Bearer <access_token>\".",
			DisplayAttrs: &framework.DisplayAttributes{Name: "Access token", Sensitive: true},
		},
		"token_type": {
			Type:         framework.TypeString,
			Description:  "Always \"Bearer\".",
			DisplayAttrs: &framework.DisplayAttributes{Name: "Token type"},
		},
		"expires_at": {
			Type:         framework.TypeTime,
			Description:  "When Manus stops accepting the token (RFC 3339, UTC). The lease ends a little earlier.",
			DisplayAttrs: &framework.DisplayAttributes{Name: "Expires at"},
		},
		"expires_in": {
			Type:         framework.TypeInt,
			Description:  "Whole seconds of life the token has left at the time of this response.",
			DisplayAttrs: &framework.DisplayAttributes{Name: "Expires in"},
		},
		"ttl": {
			Type:         framework.TypeInt,
			Description:  "Only with leased_reads=false: whole seconds until the plugin replaces the token (its refresh point, plus a spread of up to a tenth of the refresh threshold), at least 1. Read again after it. While a stale token is served during an outage: seconds until a new mint may be tried.",
			DisplayAttrs: &framework.DisplayAttributes{Name: "TTL"},
		},
		"rotation_period": {
			Type:         framework.TypeInt,
			Description:  "Only with leased_reads=false: seconds between the token's mint and its refresh point, i.e. how often the token changes.",
			DisplayAttrs: &framework.DisplayAttributes{Name: "Rotation period"},
		},
		"last_vault_rotation": {
			Type:         framework.TypeTime,
			Description:  "Only with leased_reads=false: when the current token was minted (RFC 3339, UTC).",
			DisplayAttrs: &framework.DisplayAttributes{Name: "Last rotation"},
		},
	}
}

func (b *backend) pathTokenRead(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	served, err := b.readToken(ctx, req)
	if err != nil {
		return b.failedRead(err)
	}
	if served.leaseTTL == 0 {
		// Never a zero TTL: Vault would apply the mount default (768h).
		// Only a mint slower than the token's own short life gets here.
		b.stats.readsFailed.Add(1)
		return nil, logical.CodedError(http.StatusBadGateway, fmt.Sprintf(
			"the token Manus issued expires at %s, too soon to lease; read again", served.expiresAt))
	}
	var resp *logical.Response
	if served.leased {
		resp = leasedTokenResponse(served)
	} else {
		resp = rotatingTokenResponse(served)
	}
	if served.warning != "" {
		resp.AddWarning(served.warning)
	}
	return resp, nil
}

// failedRead answers a token read that got no token: forwarded to the node
// that can mint or lease, or failed.
func (b *backend) failedRead(err error) (*logical.Response, error) {
	if reason := forwardReason(err); reason != "" {
		b.stats.recordForward(reason)
		return nil, err
	}
	b.stats.readsFailed.Add(1)
	if errors.Is(err, errNotConfigured) {
		return logical.ErrorResponse(err.Error()), nil
	}
	return nil, readFailure(err)
}

// tokenData is what every token read returns about the token.
func tokenData(served servedToken) map[string]any {
	return map[string]any{
		"access_token": served.token.AccessToken,
		"token_type":   "Bearer",
		"expires_at":   served.expiresAt,
		"expires_in":   served.expiresIn,
	}
}

// leasedTokenResponse wraps the token in a non-renewable lease. It builds
// the secret itself rather than through framework.Secret.Response, whose
// growing maps were the largest per-read allocation in the profile
// (BENCHMARKS.md).
func leasedTokenResponse(served servedToken) *logical.Response {
	ttl := served.leaseTTL
	return &logical.Response{
		Secret: &logical.Secret{
			LeaseOptions: logical.LeaseOptions{TTL: ttl, MaxTTL: ttl, Renewable: false},
			// secret_type routes the lease's revocation to secretAccessToken.
			InternalData: map[string]any{"secret_type": secretTypeAccessToken},
		},
		Data: tokenData(served),
	}
}

// rotatingTokenResponse answers without a Secret, so Vault registers no
// lease, and with the fields of Vault's rotating static-secret contract, the
// one database static roles answer with. consul-template (and so Vault
// Agent) reads a non-leased secret that has rotation_period and ttl again
// exactly ttl+1 seconds later (dependency/vault_common.go, leaseCheckWait).
// Both must be JSON numbers: it asserts the type and panics on anything
// else. rereadIn keeps ttl at a second or more, since older consul-template
// re-reads every second on 0.
func rotatingTokenResponse(served servedToken) *logical.Response {
	data := tokenData(served)
	data["ttl"] = int64(served.rereadIn / time.Second)
	data["rotation_period"] = int64(served.rotationPeriod / time.Second)
	data["last_vault_rotation"] = served.mintedAt
	return &logical.Response{Data: data}
}

// readFailure gives a reader, or a refresh, the upstream failure with a
// gateway status.
func readFailure(err error) error {
	var inProgress *mintInProgressError
	var rejected *tokenRejectedError
	if upErr, ok := asUpstreamError(err); ok {
		return logical.CodedError(upErr.vaultStatus(), err.Error())
	}
	switch {
	case errors.As(err, &inProgress):
		return logical.CodedError(http.StatusGatewayTimeout, err.Error())
	case isCacheClosed(err), errors.As(err, &rejected):
		return logical.CodedError(http.StatusServiceUnavailable, err.Error())
	}
	return err
}

// tokenHelp states the refresh threshold and the safety margin from the
// constants that set them.
func tokenHelp() string {
	return strings.TrimSpace(fmt.Sprintf(tokenHelpFormat,
		int(defaultRefreshThreshold/time.Minute), safetyMarginFraction, int(maxSafetyMargin/time.Second)))
}

//nolint:gosec // G101: help text that mentions tokens, not a credential
const tokenHelpFormat = `
Returns the mount's Manus bearer token: access_token, token_type ("Bearer"),
expires_at (RFC 3339) and expires_in (seconds left at the time of the
response).

All readers of a mount share one token. It is minted on first read and
reused until its remaining life falls below the config's refresh_threshold
(default %d minutes, capped at half the token's lifetime); concurrent reads
that find it stale wait for a single new mint.

With leased_reads=true (the default) the response is a leased secret that
is not renewable. Its TTL is the token's remaining life minus a safety margin
(1/%d of the lifetime, at most %ds), so Vault Agent and other lease-aware
clients read again before the token expires.
Revoking the lease does not revoke the bearer token: it is shared by every
reader and stays valid at Manus until it expires.

With leased_reads=false the response has no lease; it carries ttl (seconds
until the reader should read again), rotation_period and
last_vault_rotation, which Vault Agent follows.

On a standby node that serves reads (OpenBao standbys, Vault Enterprise
performance standbys), a non-leased read of a fresh token is answered there;
a leased read, or one that would mint, is forwarded to the active node, which
alone mints. "vault write -f <mount>/token/refresh" replaces the token now.
`
