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
	accessToken := responseField(framework.TypeString, "Access token", "Bearer token for the Manus /api/user/manage/v1/users endpoints: send it as \"Authorization: Bearer <access_token>\".")
	accessToken.DisplayAttrs.Sensitive = true
	return map[string]*framework.FieldSchema{
		"access_token":        accessToken,
		"token_type":          responseField(framework.TypeString, "Token type", "Always \"Bearer\"."),
		"expires_at":          responseField(framework.TypeTime, "Expires at", "When Manus stops accepting the token (RFC 3339, UTC). The lease ends a little earlier."),
		"expires_in":          responseField(framework.TypeInt, "Expires in", "Whole seconds of life the token has left at the time of this response."),
		"ttl":                 responseField(framework.TypeInt, "TTL", "Only with leased_reads=false: whole seconds until the plugin replaces the token (its refresh point, plus a spread of up to a tenth of the refresh threshold), at least 1. Read again after it. While a stale token is served during an outage: seconds until a new mint may be tried."),
		"rotation_period":     responseField(framework.TypeInt, "Rotation period", "Only with leased_reads=false: seconds between the token's mint and its refresh point, i.e. how often the token changes."),
		"last_vault_rotation": responseField(framework.TypeTime, "Last rotation", "Only with leased_reads=false: when the current token was minted (RFC 3339, UTC)."),
	}
}

func (b *backend) pathTokenRead(ctx context.Context, _ *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	served, err := b.readToken(ctx)
	switch {
	case forwardReason(err) != "":
		return nil, err
	case errors.Is(err, errNotConfigured):
		return logical.ErrorResponse(err.Error()), nil
	case err != nil:
		return nil, readFailure(err)
	}
	resp := rotatingTokenResponse(served)
	if served.leased {
		resp = leasedTokenResponse(served)
	}
	if served.warning != "" {
		resp.AddWarning(served.warning)
	}
	return resp, nil
}

func tokenData(served servedToken) map[string]any {
	return map[string]any{
		"access_token": served.token.AccessToken,
		"token_type":   "Bearer",
		"expires_at":   served.expiresAt,
		"expires_in":   served.expiresIn,
	}
}

// leasedTokenResponse builds the lease itself: framework.Secret.Response's
// growing maps were the largest per-read allocation (BENCHMARKS.md).
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

// rotatingTokenResponse has no lease and the fields of Vault's rotating
// static-secret contract, which consul-template (Vault Agent) re-reads ttl+1
// seconds later; they must be JSON numbers, or it panics.
func rotatingTokenResponse(served servedToken) *logical.Response {
	data := tokenData(served)
	data["ttl"] = int64(served.rereadIn / time.Second)
	data["rotation_period"] = int64(served.rotationPeriod / time.Second)
	data["last_vault_rotation"] = served.mintedAt
	return &logical.Response{Data: data}
}

// readFailure gives a failed read a gateway status: the reader did nothing
// wrong.
func readFailure(err error) error {
	var inProgress *mintInProgressError
	var rejected *tokenRejectedError
	var tooSoon *tooSoonToLeaseError
	if upErr, ok := asUpstreamError(err); ok {
		return logical.CodedError(upErr.vaultStatus(), err.Error())
	}
	switch {
	case errors.As(err, &inProgress):
		return logical.CodedError(http.StatusGatewayTimeout, err.Error())
	case errors.As(err, &tooSoon):
		return logical.CodedError(http.StatusBadGateway, err.Error())
	case isCacheClosed(err), errors.As(err, &rejected):
		return logical.CodedError(http.StatusServiceUnavailable, err.Error())
	}
	return err
}

const secretTypeAccessToken = "manus_access_token"

// secretAccessToken has no Renew: the token's expiry is fixed by Manus.
func (b *backend) secretAccessToken() *framework.Secret {
	return &framework.Secret{
		Type:   secretTypeAccessToken,
		Fields: tokenResponseFields(),
		Revoke: b.revokeAccessToken,
	}
}

// revokeAccessToken does nothing upstream (Manus cannot revoke a token);
// failing would block "vault secrets disable".
func (b *backend) revokeAccessToken(context.Context, *logical.Request, *framework.FieldData) (*logical.Response, error) {
	b.log().Debug("token lease revoked; the shared bearer token stays valid at Manus until it expires")
	return nil, nil
}

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
