package manus

import (
	"context"
	"errors"
	"time"

	"github.com/hashicorp/go-hclog"
)

// loggingMinter logs every mint and failure. It logs durations, expiries and
// error codes only: never the token, never the secret.
type loggingMinter struct {
	client *manusClient
	logger hclog.Logger
}

func (m *loggingMinter) mintToken(ctx context.Context) (*accessToken, error) {
	started := time.Now()
	tok, err := m.client.mintToken(ctx)
	took := time.Since(started).Round(time.Millisecond)
	if err != nil {
		m.logger.Warn("minting a Manus access token failed", append(failureFields(err), "client_id", m.client.oauth.ClientID, "took", took)...)
		return nil, err
	}
	m.logger.Info("minted a Manus access token", "client_id", m.client.oauth.ClientID, "expires_at", tok.ExpiresAt.UTC().Format(time.RFC3339), "lifetime", tok.lifetime(), "took", took)
	return tok, nil
}

func (m *loggingMinter) close() { m.client.close() }

// failureFields describes an error for a structured log line.
func failureFields(err error) []any {
	var upErr *upstreamError
	if !errors.As(err, &upErr) {
		return []any{"error", err.Error()}
	}
	fields := []any{"error", upErr.Error()}
	if upErr.status != 0 {
		fields = append(fields, "http_status", upErr.status)
	}
	if upErr.code != "" {
		fields = append(fields, "manus_code", upErr.code)
	}
	return fields
}
