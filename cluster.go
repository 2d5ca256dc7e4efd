package manus

import (
	"errors"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"
)

// This file decides what the node the plugin runs on may do with the
// mount's storage, and so whether it may mint (a mint is persisted);
// docs/cluster.md explains the roles. What it may not do is answered with
// logical.ErrReadOnly before any work, which makes the server forward it.

const (
	// replicationStateMaxAge bounds how old a cached replication state may
	// be: it changes only on promotion, demotion or joining replication,
	// when the server sets the mount up again anyway.
	replicationStateMaxAge = time.Second

	// firstRefusalWindow and maxRefusalWindow bound how long a write
	// refused as read-only holds writes off: a stray refusal on an active
	// node costs a second, a node read-only without saying so tries (and
	// mints) rarely.
	firstRefusalWindow = time.Second
	maxRefusalWindow   = 30 * time.Minute
)

// clusterNode is the system view Vault hands the plugin, with the answers
// this node's role is read from kept in memory: each is a gRPC call back
// into Vault, and the framework asks before every operation (14 % of the
// plugin's CPU when asked on every read; BENCHMARKS.md). The external
// plugin's system view implements nothing beyond logical.SystemView, so
// wrapping it hides no optional interface.
type clusterNode struct {
	logical.SystemView
	clock   func() time.Time
	cached  atomic.Pointer[replicationStateReading]
	local   atomic.Pointer[bool]
	refused atomic.Pointer[refusal]
}

type replicationStateReading struct {
	state consts.ReplicationState
	at    time.Time
}

// refusal is storage refusing writes as read-only under a replication state
// that allows them: the node is treated as read-only until the state
// changes or the hold-off ends.
type refusal struct {
	state consts.ReplicationState
	holdOff
}

func newClusterNode(sys logical.SystemView, clock func() time.Time) *clusterNode {
	return &clusterNode{SystemView: sys, clock: clock}
}

// ReplicationState is Vault's answer, at most replicationStateMaxAge old.
// Concurrent misses each ask; the answers are the same.
func (n *clusterNode) ReplicationState() consts.ReplicationState {
	now := n.clock()
	if r := n.cached.Load(); r != nil && now.Sub(r.at) < replicationStateMaxAge && !now.Before(r.at) {
		return r.state
	}
	state := n.SystemView.ReplicationState()
	n.cached.Store(&replicationStateReading{state: state, at: now})
	return state
}

// LocalMount is Vault's answer, asked once: it is fixed when the mount is
// enabled.
func (n *clusterNode) LocalMount() bool {
	if local := n.local.Load(); local != nil {
		return *local
	}
	local := n.SystemView.LocalMount()
	n.local.Store(&local)
	return local
}

// mayWrite reports whether this node may write the mount's storage, and so
// mint, store a token or change the config. A performance secondary writes
// only its -local mounts: a replicated mount's mints go to the primary.
func (n *clusterNode) mayWrite() bool {
	state := n.ReplicationState()
	switch {
	case n.refusedUnder(state),
		state.HasState(consts.ReplicationPerformanceStandby),
		state.HasState(consts.ReplicationDRSecondary):
		return false
	case state.HasState(consts.ReplicationPerformanceSecondary):
		return n.LocalMount()
	}
	return true
}

// mayLease reports whether a token read answered here may carry a lease,
// which the server registers in this node's storage: a performance
// secondary's leases are its own.
func (n *clusterNode) mayLease() bool {
	state := n.ReplicationState()
	return !n.refusedUnder(state) &&
		!state.HasState(consts.ReplicationPerformanceStandby) &&
		!state.HasState(consts.ReplicationDRSecondary)
}

// role names the node for the status path.
func (n *clusterNode) role() string {
	state := n.ReplicationState()
	switch {
	case state.HasState(consts.ReplicationDRSecondary):
		return "dr secondary"
	case state.HasState(consts.ReplicationPerformanceSecondary) && state.HasState(consts.ReplicationPerformanceStandby):
		return "performance standby of a performance secondary"
	case state.HasState(consts.ReplicationPerformanceStandby):
		return "performance standby"
	case state.HasState(consts.ReplicationPerformanceSecondary):
		return "performance secondary"
	case n.refusedUnder(state):
		return "read-only storage"
	}
	return "active"
}

func (n *clusterNode) refusedUnder(state consts.ReplicationState) bool {
	r := n.refused.Load()
	return r != nil && r.state == state && r.inForce(n.clock())
}

// noteStorageError reports whether err is storage refusing a write as
// read-only, and remembers it; a write that went through (err nil) ends a
// run of refusals.
func (n *clusterNode) noteStorageError(err error) bool {
	if err == nil {
		n.refused.Store(nil)
	}
	if !isReadOnly(err) {
		return false
	}
	next := &refusal{state: n.ReplicationState()}
	if last := n.refused.Load(); last != nil && last.state == next.state {
		next.holdOff = last.holdOff
	}
	next.note(n.clock(), func(count int) time.Duration {
		return cappedDoubling(firstRefusalWindow, maxRefusalWindow, count-1)
	})
	n.refused.Store(next)
	return true
}

// isReadOnly matches the read-only error by its text, as Vault and OpenBao
// do: over the plugin's gRPC channel only the message survives
// (sdk/plugin/grpc_storage.go).
func isReadOnly(err error) bool {
	return err != nil && strings.Contains(err.Error(), logical.ErrReadOnly.Error())
}

// forwardError answers a request this node may not serve. Its text is
// logical.ErrReadOnly's, which makes the server forward the request; reason
// says why, for the metrics.
type forwardError struct{ reason string }

// The reasons a read is forwarded.
const (
	forwardForMint  = "mint"
	forwardForLease = "lease"
)

var (
	errForwardForMint  = &forwardError{forwardForMint}
	errForwardForLease = &forwardError{forwardForLease}
	errForwardWrite    = &forwardError{"write"}
)

func (e *forwardError) Error() string { return logical.ErrReadOnly.Error() }
func (e *forwardError) Unwrap() error { return logical.ErrReadOnly }

// forwardReason is why err forwards a request, or "" if it does not.
func forwardReason(err error) string {
	var fwd *forwardError
	if errors.As(err, &fwd) {
		return fwd.reason
	}
	return ""
}
