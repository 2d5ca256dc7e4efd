package manus

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"
)

// The promises of cluster.go, on nodes whose system view reports what an
// OpenBao standby or a Vault Enterprise performance standby or secondary
// reports, and whose storage refuses writes with the error as it reaches an
// external plugin (the text only). The active node and the other node share
// one storage, one Manus stand-in and one clock.

// otherNode is another node of e's cluster: a backend of its own on e's
// storage, whose system view reports state. Unless writable, its storage
// refuses writes as a standby's does.
func (e *testEnv) otherNode(state consts.ReplicationState, writable bool) *testEnv {
	e.t.Helper()
	node := *e
	sys := newCountingSystemView()
	sys.setState(state)
	node.system = sys
	if !writable {
		node.storage = readOnlyStorage{e.storage}
	}
	node.b = node.newBackend()
	e.t.Cleanup(func() { node.b.Clean(context.Background()) })
	return &node
}

func (e *testEnv) standby() *testEnv {
	return e.otherNode(consts.ReplicationPerformanceStandby, false)
}

// forwarded reports whether err makes the server forward the request: it
// carries the read-only error's text (OpenBao's logical.ShouldForward).
func forwarded(err error) bool {
	return err != nil && strings.Contains(err.Error(), "cannot write to readonly storage")
}

// TestStandbyNeverCallsManus: on a standby with nothing cached or stored,
// everything that would mint, lease or write is forwarded before any work.
func TestStandbyNeverCallsManus(t *testing.T) {
	for _, mode := range readModes {
		t.Run(mode.name, func(t *testing.T) {
			active := newTestEnv(t)
			active.configure(map[string]any{"verify_credentials": false, "leased_reads": mode.leased})
			standby := active.standby()
			stored, _ := readConfig(context.Background(), active.storage)

			for name, request := range map[string]func() (*logical.Response, error){
				"token read": func() (*logical.Response, error) { return standby.request(logical.ReadOperation, "token", nil) },
				"status probe": func() (*logical.Response, error) {
					return standby.request(logical.ReadOperation, "status", map[string]any{"probe": true})
				},
				"token refresh": func() (*logical.Response, error) {
					return standby.request(logical.UpdateOperation, "token/refresh", nil)
				},
				"config delete":  func() (*logical.Response, error) { return standby.request(logical.DeleteOperation, "config", nil) },
				"config rewrite": func() (*logical.Response, error) { return standby.writeConfig(standby.validConfig()) },
				"config change": func() (*logical.Response, error) {
					return standby.writeConfig(map[string]any{"request_timeout": 20})
				},
			} {
				if _, err := request(); !forwarded(err) {
					t.Errorf("%s on a standby answered %v; want the read-only error that forwards it", name, err)
				}
			}
			if n := active.manus.Requests() + active.manus.UserCalls(); n != 0 {
				t.Fatalf("the standby called Manus %d times", n)
			}
			if now, _ := readConfig(context.Background(), active.storage); !sameConfig(now, stored) {
				t.Fatal("the standby changed the stored config")
			}
			status := standby.readStatus(false)
			if status["node_can_mint"] != false || status["node_role"] != "performance standby" {
				t.Fatalf("status on a standby: node_can_mint %v, node_role %v", status["node_can_mint"], status["node_role"])
			}
		})
	}
}

// TestStandbyServesTheActiveNodesToken: a standby answers a non-leased read
// with the token the active node stored, and forwards a leased read, whose
// lease it could not register, without minting either way.
func TestStandbyServesTheActiveNodesToken(t *testing.T) {
	for _, mode := range readModes {
		t.Run(mode.name, func(t *testing.T) {
			active := newTestEnv(t)
			active.configure(mode.config()) // verified: the token is stored
			minted := active.manus.Issued()[0]
			standby := active.standby()

			resp, err := standby.request(logical.ReadOperation, "token", nil)
			switch {
			case mode.leased && !forwarded(err):
				t.Fatalf("a leased read on a standby answered %v; want it forwarded", err)
			case !mode.leased && (err != nil || accessTokenOf(resp) != minted):
				t.Fatalf("a non-leased read on a standby did not get the active node's token: %v", err)
			}
			if active.manus.Mints() != 1 {
				t.Fatalf("%d mints; the standby minted", active.manus.Mints())
			}
			status := standby.readStatus(false)
			if status["token_source"] != "storage" || status["token_loaded_at"] == nil {
				t.Fatalf("status on the standby: token_source %v, token_loaded_at %v", status["token_source"], status["token_loaded_at"])
			}
			if want := map[bool]int64{true: 1, false: 0}[mode.leased]; status["reads_forwarded_for_lease"] != want || status["reads_forwarded_for_mint"] != int64(0) {
				t.Fatalf("reads_forwarded_for_lease = %v (want %d), reads_forwarded_for_mint = %v (want 0)", status["reads_forwarded_for_lease"], want, status["reads_forwarded_for_mint"])
			}
		})
	}
}

// TestStandbyTakesTheNextTokenOnInvalidate: once its token is due, a
// standby forwards reads (the active node mints) until Invalidate brings it
// the new token, which it then serves itself.
func TestStandbyTakesTheNextTokenOnInvalidate(t *testing.T) {
	active := newTestEnv(t)
	active.configure(map[string]any{"leased_reads": false})
	standby := active.standby()
	first := accessTokenOf(standby.mustReadToken())

	active.clock.Advance(55 * time.Minute) // due for refresh, still servable
	if _, err := standby.request(logical.ReadOperation, "token", nil); !forwarded(err) {
		t.Fatalf("a standby read of a token due for refresh answered %v; want it forwarded", err)
	}
	second := accessTokenOf(active.mustReadToken()) // the forwarded read, on the active node
	active.waitForStoredToken(second)
	if _, err := standby.request(logical.ReadOperation, "token", nil); !forwarded(err) {
		t.Fatal("before Invalidate the standby served something other than a forward")
	}
	standby.b.InvalidateKey(context.Background(), tokenStorageKey)
	if got := accessTokenOf(standby.mustReadToken()); got == first || got != second {
		t.Fatal("after Invalidate the standby did not serve the active node's new token")
	}
	if active.manus.Mints() != 2 {
		t.Fatalf("%d mints, want 2 (one per token)", active.manus.Mints())
	}
}

// TestStandbyNeverServesATokenOfAReplacedConfig: after the config changes,
// on Invalidate or on a cold cache, a standby serves only a token stored
// under the new config, and forwards while there is none.
func TestStandbyNeverServesATokenOfAReplacedConfig(t *testing.T) {
	active := newTestEnv(t)
	active.configure(map[string]any{"leased_reads": false})
	standby := active.standby()
	old := accessTokenOf(standby.mustReadToken())

	resp, err := active.writeConfig(map[string]any{"request_timeout": 20, "verify_credentials": false})
	requireOK(t, resp, err)
	standby.b.InvalidateKey(context.Background(), configStorageKey)
	if _, err := standby.request(logical.ReadOperation, "token", nil); !forwarded(err) {
		t.Fatalf("with no token stored under the new config, a standby read answered %v; want it forwarded", err)
	}

	// A stored token of another generation (a delete that failed, say)
	// is not served by a cold standby either.
	st := storedToken{AccessToken: old, MintedAt: active.clock.Now(), ExpiresAt: active.clock.Now().Add(time.Hour), ConfigGeneration: "an-old-generation"}
	if err := writeStoredToken(context.Background(), active.storage, st); err != nil {
		t.Fatal(err)
	}
	cold := active.standby()
	if _, err := cold.request(logical.ReadOperation, "token", nil); !forwarded(err) {
		t.Fatalf("a cold standby served a token of a replaced config: %v", err)
	}

	// The new config's token, once the active node stores it, is served.
	minted := accessTokenOf(active.mustReadToken())
	active.waitForStoredToken(minted)
	standby.b.InvalidateKey(context.Background(), tokenStorageKey)
	if got := accessTokenOf(standby.mustReadToken()); got != minted {
		t.Fatal("the standby did not take the new config's token")
	}
	if active.manus.Mints() != 2 {
		t.Fatalf("%d mints, want 2", active.manus.Mints())
	}
}

// TestPerformanceSecondaryForwardsMints: a performance secondary (another
// cluster replicating this one) never mints for a replicated mount. It
// serves the primary's token, replicated into its storage, in both modes
// (its leases are its own), and forwards a read whose token is due, and
// every write, to the primary: one token for every cluster.
func TestPerformanceSecondaryForwardsMints(t *testing.T) {
	for _, mode := range readModes {
		t.Run(mode.name, func(t *testing.T) {
			primary := newTestEnv(t)
			primary.configure(mode.config())
			minted := primary.manus.Issued()[0]
			secondary := primary.otherNode(consts.ReplicationPerformanceSecondary, false)
			if got := accessTokenOf(secondary.mustReadToken()); got != minted {
				t.Fatal("the secondary did not serve the primary's token")
			}
			if _, err := secondary.writeConfig(map[string]any{"request_timeout": 20}); !forwarded(err) {
				t.Fatalf("a config write on a secondary answered %v; want it forwarded", err)
			}
			primary.clock.Advance(55 * time.Minute)
			if _, err := secondary.request(logical.ReadOperation, "token", nil); !forwarded(err) {
				t.Fatalf("a read of a due token on a secondary answered %v; want it forwarded to the primary", err)
			}
			// A standby of the secondary cannot register leases either.
			primary.clock.Advance(-55 * time.Minute)
			secondaryStandby := primary.otherNode(consts.ReplicationPerformanceSecondary|consts.ReplicationPerformanceStandby, false)
			resp, err := secondaryStandby.request(logical.ReadOperation, "token", nil)
			if mode.leased != forwarded(err) || (!mode.leased && accessTokenOf(resp) != minted) {
				t.Fatalf("a read on a secondary's standby answered %v", err)
			}
			if primary.manus.Requests() != 1 {
				t.Fatalf("%d token requests; only the primary's one mint was due", primary.manus.Requests())
			}
		})
	}
}

// TestLocalMountOnASecondaryMintsThere: a mount enabled with -local on a
// performance secondary has storage of its own, writable on the
// secondary's active node, and mints there.
func TestLocalMountOnASecondaryMintsThere(t *testing.T) {
	e := newTestEnv(t)
	sys := newCountingSystemView()
	sys.setState(consts.ReplicationPerformanceSecondary)
	sys.LocalMountVal = true
	e.withSystemView(sys)
	e.configure(nil)
	if e.manus.Mints() != 1 || accessTokenOf(e.mustReadToken()) != e.manus.Issued()[0] {
		t.Fatal("a local mount on a secondary did not mint and serve its own token")
	}
	if e.readStatus(false)["node_can_mint"] != true {
		t.Fatal("status says a local mount on a secondary cannot mint")
	}
}
