package manus

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
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
				Callback:     b.pathConfigWrite,
				Summary:      "Store the Manus credential; by default it is verified by minting a token first.",
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "configure"},
				Responses:    configWriteResponses(),
				// Writes always store (and may mint): only the node that
				// may write does them (cluster.go).
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

// configWriteResponses describe a stored write's answer: where the client
// secret goes.
func configWriteResponses() map[int][]framework.Response {
	field := func(t framework.FieldType, name, desc string) *framework.FieldSchema {
		return &framework.FieldSchema{Type: t, Description: desc, DisplayAttrs: &framework.DisplayAttributes{Name: name}}
	}
	return map[int][]framework.Response{http.StatusOK: {{Description: "Stored (or, for a write of the stored values, nothing to store).", Fields: map[string]*framework.FieldSchema{
		"token_url":     field(framework.TypeString, "Token URL", "The token endpoint the client secret is sent to: base_url + "+tokenEndpointPath+"."),
		"trusted_roots": field(framework.TypeString, "Trusted roots", "What the endpoint's TLS certificate is checked against: the system roots, and ca_cert's certificates by subject if it is set."),
		"verified":      field(framework.TypeBool, "Verified", "Whether this write minted a token there before storing (verify_credentials=true and something that mints changed)."),
	}}}}
}

// configResponseFields are the fields a config read returns: all stored
// settings except the secret.
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

// pathConfigWrite merges the written fields over the stored config, checks
// the result (and by default the credentials themselves), and only then
// stores it. Any failure leaves the stored config as it was.
//
// Verification can take a whole mint (up to 45s), so it runs without the
// backend lock: reads keep using the current cache meanwhile. The lock is
// taken only to store, after checking nobody else stored a config since.
func (b *backend) pathConfigWrite(ctx context.Context, req *logical.Request, data *framework.FieldData) (*logical.Response, error) {
	if !b.node.mayWrite() {
		return nil, errForwardWrite
	}
	if err := rejectUnknownFields(data); err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	base, cfg, err := mergeConfigWrite(ctx, req.Storage, data, b.allowedBaseURLs)
	if err != nil {
		var fieldErr *fieldError
		if errors.As(err, &fieldErr) {
			return logical.ErrorResponse(err.Error()), nil
		}
		return nil, err
	}
	logger := b.mountLogger(req.MountPoint)
	switch {
	case sameConfig(cfg, base):
		logger.Info("config written with the values it already had; nothing stored, cached token kept")
		return configWritten(cfg, false), nil
	case base != nil && cfg.sameUpstreamAs(base):
		return b.storeReadMode(ctx, req, base, cfg)
	}
	cfg.Generation = newConfigGeneration()

	cache, err := b.newTokenCache(cfg, req.MountPoint)
	if err != nil {
		return nil, err
	}
	verify := data.Get("verify_credentials").(bool)
	var verified *accessToken
	if verify {
		if verified, err = cache.mintNow(ctx); err != nil {
			cache.close(errMountReconfigured)
			return verificationFailure(err)
		}
	}
	if resp, err := b.storeConfig(ctx, req, base, cfg, cache); resp != nil || err != nil {
		cache.close(errMountReconfigured)
		return resp, err
	}
	// The verified token becomes the cached one; it is persisted only now
	// that its config is stored, so a failed write cannot replace the
	// stored one. The cache was not the mount's when it minted, so this is
	// the token's one write.
	if verified != nil {
		b.store.persist(logger, verified, cfg.Generation)
	}
	logger.Info("config written; cached token replaced", "client_id", cfg.loggableClientID(), "base_url", cfg.BaseURL, "verified", verify)
	return configWritten(cfg, verify), nil
}

// configWritten answers a stored config write: where the client secret is
// sent (and was, if verified), so the writer sees the destination they
// confirmed, and the config's warnings.
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

// mergeConfigWrite returns the stored config (nil if none) and the config a
// write would store: the written fields over the stored ones, checked. A
// *fieldError names what the writer must change.
func mergeConfigWrite(ctx context.Context, s logical.Storage, data *framework.FieldData, allowed allowedBaseURLs) (base, cfg *manusConfig, err error) {
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
	if err := allowed.permit(cfg.BaseURL); err != nil {
		return nil, nil, err
	}
	written := func(field string) bool { _, ok := data.GetOk(field); return ok }
	if err := checkSecretDestination(base, cfg, written); err != nil {
		return nil, nil, err
	}
	return base, cfg, nil
}

// storeConfig writes cfg and installs its cache, unless the stored config is
// no longer base (another write got in while this one was verified).
func (b *backend) storeConfig(ctx context.Context, req *logical.Request, base, cfg *manusConfig, cache *tokenCache) (*logical.Response, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if resp, err := b.writeConfigOverLocked(ctx, req, base, cfg); resp != nil || err != nil {
		return resp, err
	}
	b.store.forget(ctx, req.Storage)
	b.swapTokenCacheLocked(cache, errMountReconfigured)
	return nil, nil
}

// writeConfigOverLocked stores cfg if the stored config is still base, and
// otherwise stores nothing and answers why. Every stored write changes the
// config, so comparing whole configs sees every write that got in. b.mu
// must be held.
func (b *backend) writeConfigOverLocked(ctx context.Context, req *logical.Request, base, cfg *manusConfig) (*logical.Response, error) {
	current, err := readConfig(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	if !sameConfig(current, base) {
		return logical.ErrorResponse("nothing was stored: another write changed this mount's config in the meantime (while this one was being verified); read the config and write again"), nil
	}
	err = writeConfig(ctx, req.Storage, cfg)
	if b.node.noteStorageError(err) {
		return nil, errForwardWrite
	}
	return nil, err
}

// storeReadMode stores a config that differs from the stored one in the read
// mode only. Nothing upstream changed, so there is nothing to verify: it
// keeps the generation (and so the persisted token other nodes restore), and
// the cached token, whose next read answers in the new mode.
func (b *backend) storeReadMode(ctx context.Context, req *logical.Request, base, cfg *manusConfig) (*logical.Response, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if resp, err := b.writeConfigOverLocked(ctx, req, base, cfg); resp != nil || err != nil {
		return resp, err
	}
	if c := b.tokens.Load(); c != nil && c.config().Generation == cfg.Generation {
		c.setReadMode(cfg.LeasedReads)
	}
	b.mountLogger(req.MountPoint).Info("config written; read mode set, cached token kept", "leased_reads", cfg.LeasedReads)
	return configWritten(cfg, false), nil
}

// applyConfigFields copies the fields present in the request onto cfg; absent
// fields keep their current values. A ca_cert is checked here and kept in
// its canonical form: its certificates, re-encoded, and nothing else.
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
	if v, ok := data.GetOk("request_timeout"); ok {
		cfg.RequestTimeout = time.Duration(v.(int)) * time.Second
	}
	if v, ok := data.GetOk("ca_cert"); ok {
		canonical, err := canonicalCACert(v.(string))
		if err != nil {
			return err
		}
		cfg.CACert = canonical
	}
	if v, ok := data.GetOk("refresh_threshold"); ok {
		cfg.RefreshThreshold = time.Duration(v.(int)) * time.Second
	}
	if v, ok := data.GetOk("leased_reads"); ok {
		cfg.LeasedReads = v.(bool)
	}
	return nil
}

// verificationFailure reports why the credentials were not stored.
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
	b.mu.Lock()
	defer b.mu.Unlock()
	err := req.Storage.Delete(ctx, configStorageKey)
	if b.node.noteStorageError(err) {
		return nil, errForwardWrite
	}
	if err != nil {
		return nil, fmt.Errorf("deleting config: %w", err)
	}
	b.store.forget(ctx, req.Storage)
	b.swapTokenCacheLocked(nil, errConfigDeleted)
	b.mountLogger(req.MountPoint).Info("config deleted; cached token dropped")
	return nil, nil
}

// rejectUnknownFields turns the framework's "ignored parameters" warning into
// an error: a misspelt field must not be silently dropped from a config.
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
	known := make([]string, 0, len(data.Schema))
	for name := range data.Schema {
		known = append(known, name)
	}
	sort.Strings(known)
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
