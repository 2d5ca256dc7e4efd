package manus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

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

// newConfigGeneration tags one written config; the token stored with it
// carries the same tag.
func newConfigGeneration() string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return hex.EncodeToString(b)
}

// isReadOnly reports the storage refusal of a performance standby or a
// replication secondary, where skipping the write is expected.
func isReadOnly(err error) bool {
	return errors.Is(err, logical.ErrReadOnly)
}
