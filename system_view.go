package manus

import (
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"
)

// replicationStateMaxAge bounds how old a cached replication state may be.
// The state changes only when a node is promoted, demoted or joins
// replication, and the framework consults it only for operations flagged
// ForwardPerformanceStandby or ForwardPerformanceSecondary (none are, yet),
// so a second's delay in noticing a change is harmless.
const replicationStateMaxAge = time.Second

// replicationStateCache is the system view Vault hands the plugin, with
// ReplicationState answered from memory for up to replicationStateMaxAge.
//
// framework.Backend asks for the replication state before every operation
// declared with Operations, to decide whether to forward it. For an external
// plugin that question is a gRPC call back into Vault in the middle of every
// token read: the profile in BENCHMARKS.md put it at 14 % of the plugin's
// CPU and a second round trip per read. Every other method goes to Vault.
// The system view an external plugin receives implements nothing beyond
// logical.SystemView (no entropy.Sourcer, no ExtendedSystemView), so
// wrapping it hides no optional interface from the framework.
type replicationStateCache struct {
	logical.SystemView
	clock  func() time.Time
	cached atomic.Pointer[replicationStateReading]
}

type replicationStateReading struct {
	state consts.ReplicationState
	at    time.Time
}

func newReplicationStateCache(sys logical.SystemView, clock func() time.Time) *replicationStateCache {
	return &replicationStateCache{SystemView: sys, clock: clock}
}

func (c *replicationStateCache) ReplicationState() consts.ReplicationState {
	now := c.clock()
	if r := c.cached.Load(); r != nil && now.Sub(r.at) < replicationStateMaxAge && !now.Before(r.at) {
		return r.state
	}
	// Concurrent misses each ask Vault once; the answers are the same, so
	// whichever is stored last is as good as the others.
	state := c.SystemView.ReplicationState()
	c.cached.Store(&replicationStateReading{state: state, at: now})
	return state
}
