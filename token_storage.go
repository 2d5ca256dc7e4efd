package manus

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"
)

// The mount's token is persisted so a plugin reload, a Vault restart, a
// leader change and every other node of a cluster reuse it instead of
// minting: Manus counts every mint. A token cache hands its mints to the
// tokenStore (persist); the backend restores the stored token into a cache
// it builds and, on Invalidate, when another node wrote it (restore, both),
// and forgets it when the credentials change. Every write and delete holds the store's
// lock, so a token is only ever stored under the config it was minted with.

// tokenStorageKey holds the mount's current token, seal-wrapped like config.
const tokenStorageKey = "token"

// persistTimeout bounds one write of the stored token. It runs detached from
// any request (after the readers of a mint are answered), so nothing else
// would end a write stuck on unreachable storage; five seconds is far above
// a healthy write (milliseconds on Raft) and short enough that a stuck write
// does not hold the store's lock, which a config write's forget waits for,
// for long.
const persistTimeout = 5 * time.Second

// storedToken is a persisted token and the config generation it was minted
// with; a token from another generation's credentials is never restored.
// Rejected marks a token Manus refused (the status probe's 401), so that no
// node serves it again.
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

func writeStoredToken(ctx context.Context, s logical.Storage, st storedToken) error {
	entry, err := logical.StorageEntryJSON(tokenStorageKey, st)
	if err != nil {
		return err
	}
	return s.Put(ctx, entry)
}

// tokenStore persists one mount's token in the mount's storage.
type tokenStore struct {
	storage logical.Storage
	node    *clusterNode
	logger  hclog.Logger
	// mu orders writes and deletes of the stored token.
	mu sync.Mutex
}

// persist stores a newly minted token so restarts and other nodes reuse
// it, if the stored config is still the one it was minted with.
// Best-effort: a read-only node or a storage fault only costs a mint later,
// never the read that minted it.
// A token minted before the stored one is not written over it: mints can
// persist out of order (a refresh may start before the last mint's write).
func (s *tokenStore) persist(logger hclog.Logger, tok *accessToken, generation string) {
	s.write(logger, storedTokenOf(tok, generation, false), func(stored *storedToken) bool {
		return stored == nil || stored.ConfigGeneration != generation || !stored.MintedAt.After(tok.MintedAt)
	})
}

// markRejected stores tok as rejected by Manus, so other nodes drop it on
// Invalidate and no restart restores it; only if it is still the stored
// token, or the mark would write over a newer one.
func (s *tokenStore) markRejected(logger hclog.Logger, tok *accessToken, generation string) {
	s.write(logger, storedTokenOf(tok, generation, true), func(stored *storedToken) bool {
		return stored != nil && stored.AccessToken == tok.AccessToken
	})
}

func storedTokenOf(tok *accessToken, generation string, rejected bool) storedToken {
	return storedToken{AccessToken: tok.AccessToken, MintedAt: tok.MintedAt, ExpiresAt: tok.ExpiresAt, ConfigGeneration: generation, Rejected: rejected}
}

// write stores st if the stored config is still the one it was minted with
// and over allows writing over the token stored now (nil: none).
func (s *tokenStore) write(logger hclog.Logger, st storedToken, over func(stored *storedToken) bool) {
	ctx, cancel := context.WithTimeout(context.Background(), persistTimeout)
	defer cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	cfg, err := readConfig(ctx, s.storage)
	if err == nil && (cfg == nil || cfg.Generation != st.ConfigGeneration) {
		logger.Debug("not storing the token: the config it was minted with has been replaced")
		return
	}
	var stored *storedToken
	if err == nil {
		stored, err = readStoredToken(ctx, s.storage)
	}
	if err == nil && !over(stored) {
		logger.Debug("not storing the token: the stored one is newer")
		return
	}
	if err == nil {
		err = writeStoredToken(ctx, s.storage, st)
	}
	switch readOnly := s.node.noteStorageError(err); {
	case err == nil:
	case readOnly:
		logger.Debug("not storing the token: storage is read-only on this node")
	default:
		logger.Warn("could not store the token; it stays cached in memory", "error", err)
	}
}

// forget removes the stored token of replaced credentials. Its generation
// would keep it from being restored anyway; this keeps a token of deleted
// credentials out of storage. It shares the lock with persist, so a mint of
// the old config cannot write its token back afterwards.
func (s *tokenStore) forget(ctx context.Context, storage logical.Storage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := storage.Delete(ctx, tokenStorageKey); err != nil {
		s.logger.Warn("could not delete the stored token of the old config", "error", err)
	}
}

// restore seeds c with the stored token if it was minted with c's config,
// was not rejected and can still be served. Failing to read it costs a mint,
// not the read.
func (s *tokenStore) restore(ctx context.Context, storage logical.Storage, c *tokenCache) {
	st, err := readStoredToken(ctx, storage)
	switch {
	case err != nil:
		s.logger.Warn("could not read the stored token; the next read mints a new one", "error", err)
	case st == nil || st.ConfigGeneration != c.config().Generation:
	case st.Rejected:
		c.dropRejected(st.AccessToken)
	case !st.token().servableAt(c.clock()):
		s.logger.Debug("the stored token is too close to expiry to reuse")
	case c.restore(st.token()):
		c.logger.Info("took the stored Manus access token", "expires_at", st.token().expiresAtText())
	}
}
