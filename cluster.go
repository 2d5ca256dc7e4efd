package manus

import (
	"errors"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"
)

// This file is the one place that decides what the node the plugin runs on
// may do with the mount's storage. Everything that would write there, and so
// everything that would call Manus for a token (a mint is persisted), asks
// it first:
//
//   - mayWrite: mint, store a token, write or delete the config. False on a
//     performance standby (Vault Enterprise, and OpenBao >= 2.5 standbys
//     serving reads), on a performance secondary for a replicated mount, on
//     a DR secondary, and on a node whose storage refused a write.
//   - mayLease: answer a token read with a lease, which the server registers
//     in the node's storage. False on a performance standby (and wherever
//     mayWrite is false for lack of any storage); true on the active node of
//     a performance secondary, whose leases are its own.
//
// A request that needs what the node may not do is answered with
// logical.ErrReadOnly before any work, and the server forwards it whole to
// the node that can (OpenBao sdk/logical/error.go ShouldForward matches the
// error's text, which is all that survives the plugin's gRPC channel).
// HashiCorp's engines decide the same way, from the system view's
// replication state (framework.Backend.WriteSafeReplicationState).
//
// Performance secondaries (other clusters replicating this one) forward
// mints to the primary: a secondary never mints for a replicated mount, so
// every cluster shares the primary's one token per token lifetime, which
// reaches the secondary through replication and Invalidate. A mount enabled
// with -local is the secondary's own and mints there.

// replicationStateMaxAge bounds how old a cached replication state may be.
// The state changes only when a node is promoted, demoted or joins
// replication (and the server then sets the mount up again, with a new
// backend), so a second's delay in noticing is harmless.
const replicationStateMaxAge = time.Second

// clusterNode is the system view Vault hands the plugin, with the answers
// this node's role is read from kept in memory.
//
// framework.Backend asks for the replication state before every operation
// declared with Operations, to decide whether to forward it, and the token
// path asks again. For an external plugin that question is a gRPC call back
// into Vault: the profile in BENCHMARKS.md put it at 14 % of the plugin's
// CPU when asked on every read. So ReplicationState is answered from memory
// for up to replicationStateMaxAge and LocalMount, fixed for a mount's life,
// is asked once. Every other method goes to Vault. The system view an
// external plugin receives implements nothing beyond logical.SystemView (no
// entropy.Sourcer, no ExtendedSystemView), so wrapping it hides no optional
// interface from the framework.
type clusterNode struct {
	logical.SystemView
	clock  func() time.Time
	cached atomic.Pointer[replicationStateReading]
	local  atomic.Pointer[bool]
	// refused is the last refusal of a write with the read-only error: a
	// node that shows itself read-only only that way is treated as one for
	// a while (refusal.until).
	refused atomic.Pointer[refusal]
}

// refusal is storage refusing writes as read-only under a replication state
// that allows them. Such a node is treated as read-only until the state
// changes or until ends, whichever is first. The window doubles with each
// refusal in a row, from firstRefusalWindow to maxRefusalWindow: an active
// node that met one stray refusal writes again a second later, while a node
// that is read-only without saying so tries (and mints) rarely.
type refusal struct {
	state consts.ReplicationState
	count int
	until time.Time
}

const (
	firstRefusalWindow = time.Second
	maxRefusalWindow   = 30 * time.Minute
)

type replicationStateReading struct {
	state consts.ReplicationState
	at    time.Time
}

func newClusterNode(sys logical.SystemView, clock func() time.Time) *clusterNode {
	return &clusterNode{SystemView: sys, clock: clock}
}

// ReplicationState is Vault's answer, at most replicationStateMaxAge old.
func (n *clusterNode) ReplicationState() consts.ReplicationState {
	now := n.clock()
	if r := n.cached.Load(); r != nil && now.Sub(r.at) < replicationStateMaxAge && !now.Before(r.at) {
		return r.state
	}
	// Concurrent misses each ask Vault once; the answers are the same, so
	// whichever is stored last is as good as the others.
	state := n.SystemView.ReplicationState()
	n.cached.Store(&replicationStateReading{state: state, at: now})
	return state
}

// LocalMount is Vault's answer, asked once: a mount is local or not from
// the moment it is enabled.
func (n *clusterNode) LocalMount() bool {
	if local := n.local.Load(); local != nil {
		return *local
	}
	local := n.SystemView.LocalMount()
	n.local.Store(&local)
	return local
}

// mayWrite reports whether this node may write the mount's storage, and so
// mint, store a token or change the config.
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

// mayLease reports whether a token read answered here may carry a lease:
// the server registers it in this node's storage.
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
	return r != nil && r.state == state && n.clock().Before(r.until)
}

// noteStorageError remembers a write that storage refused as read-only and
// reports whether err was such a refusal; a write that went through (err
// nil) ends a run of refusals.
func (n *clusterNode) noteStorageError(err error) bool {
	if err == nil {
		n.refused.Store(nil)
	}
	if !isReadOnly(err) {
		return false
	}
	state, count := n.ReplicationState(), 1
	if last := n.refused.Load(); last != nil && last.state == state {
		count = last.count + 1
	}
	n.refused.Store(&refusal{state: state, count: count, until: n.clock().Add(cappedDoubling(firstRefusalWindow, maxRefusalWindow, count-1))})
	return true
}

// isReadOnly reports a storage refusal of a node that cannot write. It
// matches the text, as Vault and OpenBao do: an external plugin's storage
// errors come back over gRPC as new errors carrying only the message
// (sdk/plugin/grpc_storage.go), so errors.Is(err, logical.ErrReadOnly) is
// false in a real server.
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
