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

const tokenRefreshPath = "token/refresh"

func (b *backend) pathTokenRefresh() *framework.Path {
	return &framework.Path{
		Pattern: tokenRefreshPath,
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefixManus,
		},
		Fields: map[string]*framework.FieldSchema{},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: &framework.PathOperation{
				Callback:     b.pathTokenRefreshWrite,
				Summary:      "Replace the mount's token now: end any failure back-off and mint once, whatever the cached token's state.",
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "refresh", OperationSuffix: "access-token"},
				Responses: map[int][]framework.Response{
					http.StatusOK: {{Description: "OK", Fields: tokenRefreshResponseFields()}},
				},
				ForwardPerformanceStandby:   true,
				ForwardPerformanceSecondary: true,
			},
		},
		HelpSynopsis:    "Replace the mount's Manus token now.",
		HelpDescription: strings.TrimSpace(fmt.Sprintf(tokenRefreshHelp, shortDuration(minRefreshInterval))),
	}
}

func tokenRefreshResponseFields() map[string]*framework.FieldSchema {
	return map[string]*framework.FieldSchema{
		"minted_at":  responseField(framework.TypeTime, "Minted at", "When the new token was requested (RFC 3339, UTC)."),
		"expires_at": responseField(framework.TypeTime, "Expires at", "When Manus stops accepting the new token (RFC 3339, UTC)."),
		"expires_in": responseField(framework.TypeInt, "Expires in", "Whole seconds of life the new token has left."),
		"refresh_at": responseField(framework.TypeTime, "Refresh due at", "When the new token becomes due for its next refresh."),
		"replaced":   responseField(framework.TypeBool, "Replaced", fmt.Sprintf("Whether a token was minted; false when the cached one was minted less than %s ago, which the answer then describes.", shortDuration(minRefreshInterval))),
	}
}

// pathTokenRefreshWrite replaces the mount's token (refreshOnRequest),
// answering its times, or the error a read would get.
func (b *backend) pathTokenRefreshWrite(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	if !b.node.mayWrite() {
		return nil, errForwardWrite
	}
	cache, err := b.loadTokenCache(ctx)
	if err != nil {
		if errors.Is(err, errNotConfigured) {
			return logical.ErrorResponse(err.Error()), nil
		}
		return nil, err
	}
	tok, replaced, err := cache.refreshOnRequest(ctx)
	if err != nil {
		return nil, readFailure(err)
	}
	now := b.clock()
	resp := &logical.Response{Data: map[string]any{
		"minted_at":  formatTime(tok.MintedAt),
		"expires_at": tok.expiresAtText(),
		"expires_in": tok.expiresIn(now),
		"refresh_at": formatTime(tok.refreshAt(cache.config().RefreshThreshold)),
		"replaced":   replaced,
	}}
	if replaced {
		b.log().Info("token replaced on request", "expires_at", tok.expiresAtText())
	} else {
		resp.AddWarning(fmt.Sprintf("the cached token was minted %s ago, less than %s: it is kept and nothing was minted", now.Sub(tok.MintedAt).Round(time.Second), shortDuration(minRefreshInterval)))
	}
	return resp, nil
}

//nolint:gosec // G101: help text that mentions tokens, not a credential
const tokenRefreshHelp = `
Replaces the mount's token now, for an operator: after Manus stopped
accepting the cached token, after fixing what made mints fail, or to end a
failure back-off at once. It mints one token (concurrent refreshes, and reads
that need a token meanwhile, share that mint), caches and persists it like
any mint, and answers when the new token expires; the token itself is only
ever returned by a read of "token".

If the mint fails, the answer is the error a token read would get (502, or
504 for a timeout) and the old token stays served while it is fresh.

It is bounded, so a loop cannot run the credential into Manus's rate limit:
within %s of the last mint it keeps the token just minted and answers with
its times (replaced=false). While Manus's Retry-After is in force it answers
with the time left, as a read does.

Use "vault write -f <mount>/token/refresh". It belongs in the operator's
policy ("update" on <mount>/token/refresh), not the consumers'. A config
write that changes nothing replaces nothing; this does.
`
