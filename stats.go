package manus

import "sync/atomic"

// mountStats counts what one mount's backend has done since the plugin
// process started serving it.
type mountStats struct {
	mints          atomic.Int64 // tokens minted
	failedAttempts atomic.Int64 // token requests that failed
	retries        atomic.Int64 // token requests that were retries
	cacheHits      atomic.Int64 // reads served the cached token without minting
	staleServes    atomic.Int64 // reads served a cached token after a refresh failed
}
