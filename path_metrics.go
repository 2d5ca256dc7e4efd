package manus

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

const metricsPath = "metrics"

func (b *backend) pathMetrics() *framework.Path {
	return &framework.Path{
		Pattern: metricsPath,
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefixManus,
		},
		Fields: map[string]*framework.FieldSchema{},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback:     b.pathMetricsRead,
				Summary:      "Get this mount's metrics in the Prometheus text exposition format, for Prometheus to scrape through Vault.",
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "read", OperationSuffix: "metrics"},
				Responses: map[int][]framework.Response{
					http.StatusOK: {{Description: "The Prometheus text exposition format (Content-Type text/plain; version=0.0.4), not JSON."}},
				},
			},
		},
		HelpSynopsis:    "Prometheus metrics of this mount: mints, token requests, reads, back-off and the cached token's life.",
		HelpDescription: strings.TrimSpace(metricsHelp),
	}
}

// pathMetricsRead answers with a raw response, which Vault passes to the
// HTTP client as is (body, status and Content-Type) instead of wrapping it
// in JSON. It needs no PathsSpecial entry: raw responses are allowed on any
// path, and this one keeps requiring a Vault token like every other.
func (b *backend) pathMetricsRead(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	// Load the cache from storage as the status path does, so the first
	// scrape after a restart or reload reports the persisted token. This
	// never mints.
	if _, err := b.loadTokenCache(ctx, req); err != nil && !errors.Is(err, errNotConfigured) {
		return nil, err
	}
	body, err := b.metrics.exposition()
	if err != nil {
		return nil, err
	}
	return &logical.Response{Data: map[string]any{
		logical.HTTPStatusCode:  http.StatusOK,
		logical.HTTPContentType: string(metricsFormat),
		// Bytes, not a string: through the plugin's gRPC channel they
		// travel base64-encoded, and Vault decodes them back.
		logical.HTTPRawBody: body,
	}}, nil
}

const metricsHelp = `
Returns this mount's metrics in the Prometheus text exposition format, for
Prometheus to scrape through Vault with a Vault token as bearer credentials
(metrics_path: /v1/<mount>/metrics). It never shows the token or the client
secret. Every series is named vault_manus_*; counters start from zero when
the plugin process starts (a plugin reload or Vault restart), which
Prometheus's rate() and increase() handle as a counter reset.

From the CLI: vault read -format=raw <mount>/metrics.
`
