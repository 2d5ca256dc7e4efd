package manus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"
)

// The mount's token is persisted so a plugin reload, a Vault restart or a
// leader change reuses it instead of minting. The backend writes it after a
// mint (persistToken), reads it when a cache is built (restoreStoredToken) or
// another node wrote it (reloadStoredToken), and deletes it when the
// credentials change (forgetStoredToken). Every write and delete holds
// persistMu, so a token is only ever stored under the config it was minted
// with.

// tokenStorageKey holds the mount's current token, seal-wrapped like config,
// so a plugin reload, a Vault restart or a leader change reuses it instead of
// minting: Manus counts every mint.
const tokenStorageKey = "token"

// storedToken is a persisted token and the config generation it was minted
// with; a token from another generation's credentials is never restored.
type storedToken struct {
	AccessToken      string    `json:"access_token"`
	MintedAt         time.Time `json:"minted_at"`
	ExpiresAt        time.Time `json:"expires_at"`
	ConfigGeneration string    `json:"config_generation"`
}

func (st *storedToken) token() *accessToken {
	return &accessToken{AccessToken: st.AccessToken, MintedAt: st.MintedAt, ExpiresAt: st.ExpiresAt}
}

func readStoredToken(ctx context.Context, s logical.Storage) (*storedToken, error) {
	entry, err := s.Get(ctx, tokenStorageKey)
	if err != nil || entry == nil {
		return nil, err
	}
	var st storedToken
	if err := entry.DecodeJSON(&st); err != nil {
		return nil, fmt.Errorf("decoding the stored token: %w", err)
	}
	return &st, nil
}

func writeStoredToken(ctx context.Context, s logical.Storage, tok *accessToken, generation string) error {
	entry, err := logical.StorageEntryJSON(tokenStorageKey, storedToken{
		AccessToken:      tok.AccessToken,
		MintedAt:         tok.MintedAt,
		ExpiresAt:        tok.ExpiresAt,
		ConfigGeneration: generation,
	})
	if err != nil {
		return err
	}
	return s.Put(ctx, entry)
}

// isReadOnly reports the storage refusal of a performance standby or a
// replication secondary, where skipping the write is expected.
func isReadOnly(err error) bool {
	return errors.Is(err, logical.ErrReadOnly)
}

// reloadStoredToken reads a token another node (or replication) persisted
// into the current cache, which keeps any mint in flight. Without a cache
// there is nothing to do: the next read loads config and token anyway.
func (b *backend) reloadStoredToken(ctx context.Context) {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.tokens.Load()
	if c == nil || b.storage == nil {
		return
	}
	cfg, err := readConfig(ctx, b.storage)
	if err != nil || cfg == nil {
		return
	}
	b.restoreStoredToken(ctx, b.storage, c, cfg)
}

// restoreStoredToken seeds c with the persisted token if it was minted with
// this config and can still back a lease. Failing to read it costs a mint,
// not the read.
func (b *backend) restoreStoredToken(ctx context.Context, s logical.Storage, c *tokenCache, cfg *manusConfig) {
	st, err := readStoredToken(ctx, s)
	if err != nil {
		b.Logger().Warn("could not read the persisted token; the next read mints a new one", "error", err)
		return
	}
	if st == nil || st.ConfigGeneration != cfg.Generation {
		return
	}
	tok := st.token()
	if !tok.servableAt(b.clock()) {
		b.Logger().Debug("the persisted token is too close to expiry to reuse")
		return
	}
	if c.restore(tok) {
		c.logger.Info("reusing the persisted Manus access token", "expires_at", tok.expiresAtText())
	}
}

// persistToken stores a newly minted token so restarts and other nodes
// reuse it, if the stored config is still the one it was minted with.
// Best-effort: a read-only node or a storage fault only costs a mint later,
// never the read that minted it.
func (b *backend) persistToken(logger hclog.Logger, tok *accessToken, generation string) {
	if b.storage == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b.persistMu.Lock()
	defer b.persistMu.Unlock()
	cfg, err := readConfig(ctx, b.storage)
	if err == nil && (cfg == nil || cfg.Generation != generation) {
		logger.Debug("not persisting the token: the config it was minted with has been replaced")
		return
	}
	if err == nil {
		err = writeStoredToken(ctx, b.storage, tok, generation)
	}
	switch {
	case err == nil:
	case isReadOnly(err):
		logger.Debug("not persisting the token: storage is read-only on this node")
	default:
		logger.Warn("could not persist the token; it stays cached in memory", "error", err)
	}
}

// forgetStoredToken removes the persisted token of replaced credentials. Its
// generation would keep it from being restored anyway; this keeps a token of
// deleted credentials out of storage. It shares persistMu with persistToken,
// so a mint of the old config cannot write its token back afterwards.
func (b *backend) forgetStoredToken(ctx context.Context, s logical.Storage) {
	b.persistMu.Lock()
	defer b.persistMu.Unlock()
	if err := s.Delete(ctx, tokenStorageKey); err != nil {
		b.Logger().Warn("could not delete the persisted token of the old config", "error", err)
	}
}
