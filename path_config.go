package manus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

func (b *backend) pathConfig() *framework.Path {
	return &framework.Path{
		Pattern: configStorageKey,
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefixManus,
		},
		Fields:         configFields(),
		ExistenceCheck: b.configExists,
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback:     b.pathConfigRead,
				Summary:      "Read the Manus credential settings, without the client secret.",
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "read", OperationSuffix: "configuration"},
				Responses: map[int][]framework.Response{
					http.StatusOK: {{Description: "OK", Fields: configResponseFields()}},
				},
			},
			logical.CreateOperation: &framework.PathOperation{
				Callback:                    b.pathConfigWrite,
				Summary:                     "Store the Manus credential; by default it is verified by minting a token first.",
				DisplayAttrs:                &framework.DisplayAttributes{OperationVerb: "configure"},
				Responses:                   configWriteResponses(),
				ForwardPerformanceStandby:   true,
				ForwardPerformanceSecondary: true,
			},
			logical.UpdateOperation: &framework.PathOperation{
				Callback:                    b.pathConfigWrite,
				Summary:                     "Change some of the settings; fields left out keep their stored values.",
				DisplayAttrs:                &framework.DisplayAttributes{OperationVerb: "configure"},
				Responses:                   configWriteResponses(),
				ForwardPerformanceStandby:   true,
				ForwardPerformanceSecondary: true,
			},
			logical.DeleteOperation: &framework.PathOperation{
				Callback:                    b.pathConfigDelete,
				Summary:                     "Delete the credential and drop the cached token.",
				DisplayAttrs:                &framework.DisplayAttributes{OperationVerb: "delete", OperationSuffix: "configuration"},
				Responses:                   map[int][]framework.Response{http.StatusNoContent: {{Description: "Deleted."}}},
				ForwardPerformanceStandby:   true,
				ForwardPerformanceSecondary: true,
			},
		},
		HelpSynopsis:    "Configure the Manus credential this mount mints tokens from.",
		HelpDescription: strings.TrimSpace(configHelp),
	}
}

func configFields() map[string]*framework.FieldSchema {
	return map[string]*framework.FieldSchema{
		"client_id": {
			Type:         framework.TypeString,
			Description:  fmt.Sprintf("Client ID of the Manus Team User Management credential (starts with %s; at most %d characters). Required when the config is first written.", clientIDPrefix, maxClientIDLength),
			DisplayAttrs: &framework.DisplayAttributes{Name: "Client ID"},
		},
		"client_secret": {
			Type:         framework.TypeString,
			Description:  fmt.Sprintf("Client secret of the credential, shown once by Manus when it was created (at most %d characters). Required when the config is first written; write-only, never returned. A write that carries it must also carry base_url and ca_cert unless they are the defaults: the secret is sent only where the same write says.", maxClientSecretLength),
			DisplayAttrs: &framework.DisplayAttributes{Name: "Client secret", Sensitive: true},
		},
		"base_url": {
			Type:         framework.TypeString,
			Description:  fmt.Sprintf("Base URL of the Manus API (at most %d characters); the token endpoint is base_url + %s. Must be https; plain http is accepted only for a loopback IP address. A write that changes it must carry client_secret too. The plugin's registration may restrict it (%s).", maxBaseURLLength, tokenEndpointPath, allowedBaseURLsEnv),
			Default:      defaultBaseURL,
			DisplayAttrs: &framework.DisplayAttributes{Name: "Base URL"},
		},
		"request_timeout": {
			Type:         framework.TypeDurationSecond,
			Description:  fmt.Sprintf("How long one token request to Manus may take, in seconds or as a duration string (1s to %s).", shortDuration(maxRequestTimeout)),
			Default:      int(defaultRequestTimeout.Seconds()),
			DisplayAttrs: &framework.DisplayAttributes{Name: "Request timeout"},
		},
		"ca_cert": {
			Type:         framework.TypeString,
			Description:  fmt.Sprintf("PEM CERTIFICATE block(s), nothing else, trusted in addition to the system roots, e.g. the CA of a TLS-intercepting proxy: at most %d KiB and %d certificates. Write an empty string to remove. A write that changes it must carry client_secret too.", maxCACertBytes>>10, maxCACertificates),
			DisplayAttrs: &framework.DisplayAttributes{Name: "CA certificate", EditType: "file"},
		},
		"refresh_threshold": {
			Type:         framework.TypeDurationSecond,
			Description:  fmt.Sprintf("A new token is minted once the cached one has less than this much life left, capped at half the token's lifetime (1s to %s).", shortDuration(maxRefreshThreshold)),
			Default:      int(defaultRefreshThreshold.Seconds()),
			DisplayAttrs: &framework.DisplayAttributes{Name: "Refresh threshold"},
		},
		"leased_reads": {
			Type:         framework.TypeBool,
			Description:  "Whether token reads return a leased secret (true) or plain data without a Vault lease, with ttl, rotation_period and last_vault_rotation telling clients such as Vault Agent when to read again (false). Changing only this field mints nothing and keeps the cached token.",
			Default:      true,
			DisplayAttrs: &framework.DisplayAttributes{Name: "Leased reads"},
		},
		"verify_credentials": {
			Type:         framework.TypeBool,
			Description:  "Mint a token with the new settings before storing them, and store nothing if that fails. Set false to configure a mount that cannot reach Manus yet. Not stored.",
			Default:      true,
			DisplayAttrs: &framework.DisplayAttributes{Name: "Verify credentials"},
		},
	}
}

func configWriteResponses() map[int][]framework.Response {
	return map[int][]framework.Response{http.StatusOK: {{Description: "Stored (or, for a write of the stored values, nothing to store).", Fields: map[string]*framework.FieldSchema{
		"token_url":     responseField(framework.TypeString, "Token URL", "The token endpoint the client secret is sent to: base_url + "+tokenEndpointPath+"."),
		"trusted_roots": responseField(framework.TypeString, "Trusted roots", "What the endpoint's TLS certificate is checked against: the system roots, and ca_cert's certificates by subject if it is set."),
		"verified":      responseField(framework.TypeBool, "Verified", "Whether this write minted a token there before storing (verify_credentials=true and something that mints changed)."),
	}}}}
}

func configResponseFields() map[string]*framework.FieldSchema {
	fields := configFields()
	delete(fields, "client_secret")
	delete(fields, "verify_credentials")
	return fields
}

func (b *backend) configExists(ctx context.Context, req *logical.Request, _ *framework.FieldData) (bool, error) {
	cfg, err := readConfig(ctx, req.Storage)
	return cfg != nil, err
}

func (b *backend) pathConfigRead(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	cfg, err := readConfig(ctx, req.Storage)
	if err != nil || cfg == nil {
		return nil, err
	}
	return &logical.Response{Data: map[string]any{
		"client_id":         cfg.shownClientID(),
		"base_url":          cfg.BaseURL,
		"request_timeout":   int64(cfg.RequestTimeout.Seconds()),
		"ca_cert":           shownCACert(cfg.CACert),
		"refresh_threshold": int64(cfg.RefreshThreshold.Seconds()),
		"leased_reads":      cfg.LeasedReads,
	}}, nil
}

// pathConfigWrite merges, checks and (by default) verifies a write, without
// the backend lock, then commits it; a failure leaves the config as it was.
func (b *backend) pathConfigWrite(ctx context.Context, req *logical.Request, data *framework.FieldData) (*logical.Response, error) {
	if !b.node.mayWrite() {
		return nil, errForwardWrite
	}
	if err := rejectUnknownFields(data); err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	base, cfg, err := b.mergeConfigWrite(ctx, req.Storage, data)
	if resp, err := answerWriteError(err); resp != nil || err != nil {
		return resp, err
	}
	logger := b.log()
	switch {
	case sameConfig(cfg, base):
		logger.Info("config written with the values it already had; nothing stored, cached token kept")
		return configWritten(cfg, false), nil
	case base != nil && cfg.sameUpstreamAs(base):
		if err := b.commitReadMode(ctx, req.Storage, base, cfg); err != nil {
			return answerWriteError(err)
		}
		logger.Info("config written; read mode set, cached token kept", "leased_reads", cfg.LeasedReads)
		return configWritten(cfg, false), nil
	}
	cfg.Generation = newConfigGeneration()
	cache, err := b.newTokenCache(cfg)
	if err != nil {
		return nil, err
	}
	var verified *accessToken
	verify := data.Get("verify_credentials").(bool)
	if verify {
		if verified, err = cache.minter.mintToken(ctx); err != nil {
			cache.close(errMountReconfigured)
			return verificationFailure(err)
		}
	}
	if err := b.commitConfig(ctx, req.Storage, base, cfg, cache, verified); err != nil {
		cache.close(errMountReconfigured)
		return answerWriteError(err)
	}
	logger.Info("config written; cached token replaced", "client_id", cfg.shownClientID(), "base_url", cfg.BaseURL, "verified", verify)
	return configWritten(cfg, verify), nil
}

// answerWriteError turns what the writer must change into a 400.
func answerWriteError(err error) (*logical.Response, error) {
	var fieldErr *fieldError
	if errors.As(err, &fieldErr) || errors.Is(err, errConfigConflict) {
		return logical.ErrorResponse(err.Error()), nil
	}
	return nil, err
}

// configWritten shows the writer where the secret goes, and the warnings.
func configWritten(cfg *manusConfig, verified bool) *logical.Response {
	resp := &logical.Response{Data: map[string]any{
		"token_url":     tokenURLOf(cfg.BaseURL),
		"trusted_roots": trustedRoots(cfg.CACert),
		"verified":      verified,
	}}
	for _, w := range cfg.warnings() {
		resp.AddWarning(w)
	}
	return resp
}

// mergeConfigWrite returns the stored config (nil: none) and the checked
// config the write would store.
func (b *backend) mergeConfigWrite(ctx context.Context, s logical.Storage, data *framework.FieldData) (base, cfg *manusConfig, err error) {
	if base, err = readConfig(ctx, s); err != nil {
		return nil, nil, err
	}
	cfg = newDefaultConfig()
	if base != nil {
		*cfg = *base
	}
	if err := applyConfigFields(cfg, data); err != nil {
		return nil, nil, err
	}
	if err := cfg.validate(); err != nil {
		return nil, nil, err
	}
	if err := b.allowedBaseURLs.permit(cfg.BaseURL); err != nil {
		return nil, nil, err
	}
	written := func(field string) bool { _, ok := data.GetOk(field); return ok }
	return base, cfg, checkSecretDestination(base, cfg, written)
}

// applyConfigFields copies the fields written onto cfg.
func applyConfigFields(cfg *manusConfig, data *framework.FieldData) error {
	if v, ok := data.GetOk("client_id"); ok {
		cfg.ClientID = v.(string)
	}
	if v, ok := data.GetOk("client_secret"); ok {
		cfg.ClientSecret = v.(string)
	}
	if v, ok := data.GetOk("base_url"); ok {
		cfg.BaseURL = strings.TrimRight(v.(string), "/")
	}
	for _, duration := range []struct {
		field string
		value *time.Duration
	}{{"request_timeout", &cfg.RequestTimeout}, {"refresh_threshold", &cfg.RefreshThreshold}} {
		if v, ok := data.GetOk(duration.field); ok {
			if err := wholeSeconds(duration.field, data.Raw[duration.field]); err != nil {
				return err
			}
			*duration.value = time.Duration(v.(int)) * time.Second
		}
	}
	if v, ok := data.GetOk("ca_cert"); ok {
		canonical, err := canonicalCACert(v.(string))
		if err != nil {
			return err
		}
		cfg.CACert = canonical
	}
	if v, ok := data.GetOk("leased_reads"); ok {
		cfg.LeasedReads = v.(bool)
	}
	return nil
}

// wholeSeconds refuses a duration the field would cut to whole seconds
// without a word: "1.5s" would be stored as 1, "500ms" as 0.
func wholeSeconds(field string, raw any) error {
	var d time.Duration
	switch v := raw.(type) {
	case string:
		if parsed, err := time.ParseDuration(v); err == nil {
			d = parsed
		} else if f, err := strconv.ParseFloat(v, 64); err == nil {
			d = time.Duration(f * float64(time.Second))
		}
	case float64:
		d = time.Duration(v * float64(time.Second))
	case json.Number:
		f, _ := v.Float64()
		d = time.Duration(f * float64(time.Second))
	}
	if d%time.Second != 0 {
		return &fieldError{field, fmt.Sprintf("must be a whole number of seconds, got %s", d)}
	}
	return nil
}

// verificationFailure is a 400 when Manus refused the credentials or
// answered unusably, else a gateway status.
func verificationFailure(err error) (*logical.Response, error) {
	msg := "nothing was stored: verifying the credentials by minting a token failed: " + err.Error() +
		" (to store settings without checking them, write again with verify_credentials=false)"
	if upErr, ok := asUpstreamError(err); ok && upErr.kind != failRejected && upErr.kind != failBadResponse {
		return nil, logical.CodedError(upErr.vaultStatus(), msg)
	}
	return logical.ErrorResponse(msg), nil
}

func (b *backend) pathConfigDelete(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	if !b.node.mayWrite() {
		return nil, errForwardWrite
	}
	if err := b.deleteConfig(ctx, req.Storage); err != nil {
		return nil, err
	}
	b.log().Info("config deleted; cached token dropped")
	return nil, nil
}

// rejectUnknownFields: a misspelt field must not be dropped with a warning.
func rejectUnknownFields(data *framework.FieldData) error {
	var unknown []string
	for name := range data.Raw {
		if _, ok := data.Schema[name]; !ok {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	known := slices.Sorted(maps.Keys(data.Schema))
	return fmt.Errorf("unknown field(s) %s; accepted fields are %s", strings.Join(unknown, ", "), strings.Join(known, ", "))
}

const configHelp = `
Stores the Manus Team User Management API credential for this mount.

client_id and client_secret are required the first time. Later writes are
partial: fields left out keep their stored values.

A write that carries client_secret sends it only where the same write says:
it must carry base_url and ca_cert too, unless they are the defaults
(https://api.manus.im, the system roots), or it answers 400 naming the stored
destination and nothing is sent or stored. So rotating the secret is
"vault write <mount>/config client_secret=..." on a mount with the default
endpoint, and "vault write <mount>/config client_secret=... base_url=...
ca_cert=@ca.pem" on one with its own. Every stored write answers with where
the secret goes (token_url, trusted_roots) and whether it was verified.

By default a write mints a token with the new settings before storing them;
if Manus refuses, nothing is stored and the error carries the Manus code
(e.g. INVALID_CLIENT). verify_credentials=false skips that check.

A write that changes base_url or ca_cert must carry client_secret as well:
the stored secret is only ever sent where it was written for. Without it the
write answers 400 naming client_secret, and nothing is sent or stored. The
plugin's registration may restrict base_url (MANUS_ALLOWED_BASE_URLS).

A write that changes the credential, base_url, request_timeout, ca_cert or
refresh_threshold replaces the cached token: the token minted to verify the
write becomes the cached one, or, with verify_credentials=false, the next
read of <mount>/token mints one with the new settings. A write that changes
only leased_reads keeps the cached token and mints nothing, and a write of
the values already stored stores and mints nothing. To replace the token
without changing the config: vault write -f <mount>/token/refresh. A delete
drops the config and the token. client_secret is never returned by any read.

On a standby node that serves reads, writes and deletes are forwarded to the
active node, which alone verifies and stores.
`
