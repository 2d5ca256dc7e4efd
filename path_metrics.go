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

// pathMetricsRead answers raw, which Vault passes on as is, not as JSON;
// it still requires a Vault token.
func (b *backend) pathMetricsRead(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	// So the first scrape after a restart shows the stored token; no mint.
	if _, err := b.loadTokenCache(ctx); err != nil && !errors.Is(err, errNotConfigured) {
		return nil, err
	}
	body, err := b.metrics.exposition()
	if err != nil {
		return nil, err
	}
	return &logical.Response{Data: map[string]any{
		logical.HTTPStatusCode:  http.StatusOK,
		logical.HTTPContentType: string(metricsFormat),
		// Bytes: over the plugin's gRPC channel Vault decodes them back.
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
