package manus

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"
)

// countingSystemView stands for Vault's side of the plugin connection and
// counts the replication-state questions that would each be a gRPC call.
type countingSystemView struct {
	*logical.StaticSystemView
	mu    sync.Mutex
	state consts.ReplicationState
	calls int
}

func (v *countingSystemView) ReplicationState() consts.ReplicationState {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.calls++
	return v.state
}

func (v *countingSystemView) setState(s consts.ReplicationState) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.state = s
}

func (v *countingSystemView) callCount() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.calls
}

func newCountingSystemView() *countingSystemView {
	return &countingSystemView{StaticSystemView: &logical.StaticSystemView{
		DefaultLeaseTTLVal: 768 * time.Hour,
		MaxLeaseTTLVal:     768 * time.Hour,
	}}
}

func TestTokenReadsAskVaultForReplicationStateAtMostOncePerSecond(t *testing.T) {
	e := newTestEnv(t)
	sys := newCountingSystemView()
	e.withSystemView(sys)
	e.configure(nil)
	e.mustReadToken()
	before := sys.callCount()
	if before == 0 {
		t.Fatal("the framework never asked for the replication state: the cache is untested")
	}

	e.concurrentReads(200)
	for range 100 {
		e.mustReadToken()
	}
	if got := sys.callCount(); got != before {
		t.Fatalf("300 reads within a second asked Vault %d more times, want 0", got-before)
	}

	e.clock.Advance(replicationStateMaxAge)
	e.mustReadToken()
	if got := sys.callCount(); got != before+1 {
		t.Fatalf("a read after %s asked Vault %d more times, want 1", replicationStateMaxAge, got-before)
	}
}

func TestReplicationStateCacheFollowsVaultWithinMaxAge(t *testing.T) {
	clock := newTestClock()
	sys := newCountingSystemView()
	sys.setState(consts.ReplicationPerformancePrimary)
	view := newClusterNode(sys, clock.Now)

	if got := view.ReplicationState(); got != consts.ReplicationPerformancePrimary {
		t.Fatalf("first answer %v, want Vault's performance-primary state", got)
	}
	sys.setState(consts.ReplicationPerformanceStandby)
	clock.Advance(replicationStateMaxAge - time.Millisecond)
	if got := view.ReplicationState(); got.HasState(consts.ReplicationPerformanceStandby) {
		t.Fatal("answer refreshed before the max age")
	}
	clock.Advance(time.Millisecond)
	if got := view.ReplicationState(); !got.HasState(consts.ReplicationPerformanceStandby) {
		t.Fatalf("answer %v after the max age, want Vault's new performance-standby state", got)
	}

	// A clock that steps back must not pin an old answer.
	sys.setState(0)
	clock.Advance(-time.Hour)
	if got := view.ReplicationState(); got.HasState(consts.ReplicationPerformanceStandby) {
		t.Fatal("after the clock stepped back the cache kept its old answer")
	}

	// Everything else is Vault's answer, untouched.
	if got := view.MaxLeaseTTL(); got != 768*time.Hour {
		t.Fatalf("MaxLeaseTTL = %s, want Vault's 768h", got)
	}
}

func TestSetupLeavesTheCallersSystemViewAlone(t *testing.T) {
	sys := newCountingSystemView()
	conf := logical.TestBackendConfig()
	conf.System = sys
	b := newBackend(wallClock)
	if err := b.setup(context.Background(), conf); err != nil {
		t.Fatal(err)
	}
	defer b.Clean(context.Background())
	if conf.System != sys {
		t.Fatal("setup replaced the system view in the caller's config")
	}
	if _, ok := b.System().(*clusterNode); !ok {
		t.Fatalf("backend system view is %T, want the cluster node view", b.System())
	}
}

// refuseOnce refuses the next write with the read-only error, as a storage
// hiccup on an active node might, then writes again.
type refuseOnce struct {
	logical.Storage
	refused atomic.Bool
}

func (r *refuseOnce) Put(ctx context.Context, entry *logical.StorageEntry) error {
	if r.refused.CompareAndSwap(false, true) {
		return errReadOnlyOverGRPC
	}
	return r.Storage.Put(ctx, entry)
}

// TestOneReadOnlyRefusalDoesNotLatchTheActiveNode: an active node whose
// storage refuses one write with the read-only text forwards for a second,
// then writes and mints again, rather than forwarding every write and mint
// until its replication state changes, which on an active node is never.
func TestOneReadOnlyRefusalDoesNotLatchTheActiveNode(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.storage = &refuseOnce{Storage: e.storage}
	resp, err := e.writeConfig(map[string]any{"request_timeout": 20})
	if !forwarded(err) {
		t.Fatalf("the refused write answered %v, %v; want the read-only error", resp, err)
	}
	e.clock.Advance(firstRefusalWindow)
	resp, err = e.writeConfig(map[string]any{"request_timeout": 20})
	requireOK(t, resp, err)
	if e.readStatus(false)["node_can_mint"] != true {
		t.Fatal("a write went through, but the node still says it cannot mint")
	}
	e.clock.Advance(time.Hour)
	e.mustReadToken()
}

// TestRefusalWindowDoubles: refusals in a row under one replication state
// hold writes off for a window doubling up to maxRefusalWindow; a write that
// goes through, or a new replication state, ends it.
func TestRefusalWindowDoubles(t *testing.T) {
	clock := newTestClock()
	sys := newCountingSystemView()
	n := newClusterNode(sys, clock.Now)
	for i := range 16 {
		n.noteStorageError(errReadOnlyOverGRPC)
		want := min(firstRefusalWindow<<i, maxRefusalWindow)
		clock.Advance(want - time.Millisecond)
		if n.mayWrite() {
			t.Fatalf("refusal %d: the node may write before %s", i+1, want)
		}
		clock.Advance(time.Millisecond)
		if !n.mayWrite() {
			t.Fatalf("refusal %d: the node may not write after %s", i+1, want)
		}
	}
	n.noteStorageError(nil)
	n.noteStorageError(errReadOnlyOverGRPC)
	clock.Advance(firstRefusalWindow)
	if !n.mayWrite() {
		t.Fatal("a write that went through did not end the run of refusals")
	}
	n.noteStorageError(errReadOnlyOverGRPC)
	sys.setState(consts.ReplicationPerformancePrimary)
	clock.Advance(replicationStateMaxAge)
	if !n.mayWrite() {
		t.Fatal("a new replication state did not end the refusal")
	}
}
