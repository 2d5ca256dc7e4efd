package manus

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"
)

// tokenStorageKey holds the mount's current token, persisted so restarts
// and every node reuse it instead of minting (docs/architecture.md).
const tokenStorageKey = "token"

// persistTimeout bounds one write of the stored token. It runs detached from
// any request, so nothing else would end a write stuck on unreachable
// storage; five seconds is far above a healthy write and short enough not to
// hold the store's lock, which a config write waits for, for long.
const persistTimeout = 5 * time.Second

// storedToken is a persisted token and the config generation it was minted
// with. Rejected marks a token Manus refused, so no node serves it again.
type storedToken struct {
	AccessToken      string    `json:"access_token"`
	MintedAt         time.Time `json:"minted_at"`
	ExpiresAt        time.Time `json:"expires_at"`
	ConfigGeneration string    `json:"config_generation"`
	Rejected         bool      `json:"rejected,omitempty"`
}

func (st *storedToken) token() *accessToken {
	return &accessToken{AccessToken: st.AccessToken, MintedAt: st.MintedAt, ExpiresAt: st.ExpiresAt}
}

func storedTokenOf(tok *accessToken, generation string, rejected bool) storedToken {
	return storedToken{AccessToken: tok.AccessToken, MintedAt: tok.MintedAt, ExpiresAt: tok.ExpiresAt, ConfigGeneration: generation, Rejected: rejected}
}

// tokenStore persists one mount's token. Every write and delete holds its
// lock, so a token is only ever stored under the config it was minted with.
type tokenStore struct {
	storage logical.Storage
	node    *clusterNode
	logger  func() hclog.Logger // with the mount, once known
	mu      sync.Mutex
}

// persist stores a newly minted token if the stored config is still the one
// it was minted with, and not over a token minted after it, nor over its
// own rejection mark: a mint's write can land after later writes. Best-effort:
// a read-only node or a storage fault costs a mint later, never the read.
func (s *tokenStore) persist(tok *accessToken, generation string) {
	s.write(storedTokenOf(tok, generation, false), func(stored *storedToken) bool {
		return !storedAtOrAfter(stored, tok, generation) || stored.AccessToken == tok.AccessToken && !stored.Rejected
	})
}

// markRejected stores tok as rejected by Manus, so other nodes drop it on
// Invalidate and no restart takes it; not over a token minted after it,
// and whether or not the mint's own write has landed yet.
func (s *tokenStore) markRejected(tok *accessToken, generation string) {
	s.write(storedTokenOf(tok, generation, true), func(stored *storedToken) bool {
		return !storedAtOrAfter(stored, tok, generation) || stored.AccessToken == tok.AccessToken
	})
}

// storedAtOrAfter reports whether stored is a token of generation minted no
// earlier than tok.
func storedAtOrAfter(stored *storedToken, tok *accessToken, generation string) bool {
	return stored != nil && stored.ConfigGeneration == generation && !stored.MintedAt.Before(tok.MintedAt)
}

// write stores st if the stored config has st's generation and over allows
// writing over the token stored now (nil: none).
func (s *tokenStore) write(st storedToken, over func(stored *storedToken) bool) {
	ctx, cancel := context.WithTimeout(context.Background(), persistTimeout)
	defer cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	cfg, err := readConfig(ctx, s.storage)
	if err == nil && (cfg == nil || cfg.Generation != st.ConfigGeneration) {
		s.logger().Debug("not storing the token: the config it was minted with has been replaced")
		return
	}
	var stored *storedToken
	if err == nil {
		stored, err = s.read(ctx)
	}
	if err == nil && !over(stored) {
		s.logger().Debug("not storing the token: the stored one is newer")
		return
	}
	if err == nil {
		var entry *logical.StorageEntry
		if entry, err = logical.StorageEntryJSON(tokenStorageKey, st); err == nil {
			err = s.storage.Put(ctx, entry)
		}
	}
	switch readOnly := s.node.noteStorageError(err); {
	case err == nil:
	case readOnly:
		s.logger().Debug("not storing the token: storage is read-only on this node")
	default:
		s.logger().Warn("could not store the token; it stays cached in memory", "error", err)
	}
}

// forget removes the stored token of replaced credentials. Its generation
// would keep it from being taken anyway; this keeps a token of deleted
// credentials out of storage, and, under the lock, a mint of the old config
// from writing its token back.
func (s *tokenStore) forget(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.storage.Delete(ctx, tokenStorageKey); err != nil {
		s.logger().Warn("could not delete the stored token of the old config", "error", err)
	}
}

// load reads the stored token; nil if there is none or it cannot be read,
// which costs a mint, not the read.
func (s *tokenStore) load(ctx context.Context) *storedToken {
	st, err := s.read(ctx)
	if err != nil {
		s.logger().Warn("could not read the stored token; the next read mints a new one", "error", err)
	}
	return st
}

func (s *tokenStore) read(ctx context.Context) (*storedToken, error) {
	entry, err := s.storage.Get(ctx, tokenStorageKey)
	if err != nil || entry == nil {
		return nil, err
	}
	var st storedToken
	if err := entry.DecodeJSON(&st); err != nil {
		return nil, fmt.Errorf("decoding the stored token: %w", err)
	}
	return &st, nil
}
