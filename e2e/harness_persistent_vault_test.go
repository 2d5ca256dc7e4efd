//go:build e2e

package e2e

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Harness, not tests: the non-dev Vault servers the resilience and upgrade
// tests need, on file storage or as a Raft cluster, initialised, unsealed and
// with the plugin registered. harness_test.go holds the dev-server harness.

// startFileVault starts a non-dev server with file storage, initialises it
// with one unseal key and unseals it.
func startFileVault(t *testing.T) *vaultServer {
	t.Helper()
	v := newVaultServer(t, freePort(t))
	configPath := filepath.Join(v.dir, "vault.hcl")
	writeFile(t, configPath, fmt.Sprintf(`
storage "file" {
  path = %q
}
listener "tcp" {
  address     = %q
  tls_disable = true
}
api_addr         = %q
plugin_directory = %q
disable_mlock    = true
`, filepath.Join(v.dir, "data"), strings.TrimPrefix(v.addr, "http://"), v.addr, pluginDir))
	v.args = []string{"server", "-config=" + configPath, "-log-level=trace"}
	v.start()
	v.waitHealth()
	v.initialise()
	v.unseal()
	v.waitHealth(http.StatusOK)
	return v
}

// initialise runs `vault operator init` with a single key share.
func (v *vaultServer) initialise() {
	v.t.Helper()
	var out struct {
		Keys      []string `json:"unseal_keys_b64"`
		RootToken string   `json:"root_token"`
	}
	v.vaultJSON(&out, "operator init", "-key-shares=1", "-key-threshold=1")
	if len(out.Keys) != 1 || out.RootToken == "" {
		v.t.Fatalf("operator init returned %d keys", len(out.Keys))
	}
	v.unsealKey, v.token = out.Keys[0], out.RootToken
}

func (v *vaultServer) unseal() {
	v.t.Helper()
	v.mustVault("operator", "unseal", v.unsealKey)
}

// restart stops the server and starts it again on the same storage, then
// unseals it.
func (v *vaultServer) restart() {
	v.t.Helper()
	v.stop()
	v.start()
	v.waitHealth()
	v.unseal()
	v.waitHealth(http.StatusOK)
}

// startRaftCluster starts n nodes with integrated storage on loopback. The
// first is initialised and unsealed; the others join it through retry_join
// and are unsealed with the same key. All share the plugin directory. On
// OpenBao the standbys serve reads themselves (standbyReadsConfig); on
// Vault (without Enterprise) they forward every request to the active node.
func startRaftCluster(t *testing.T, n int) []*vaultServer {
	t.Helper()
	nodes := make([]*vaultServer, n)
	for i := range nodes {
		nodes[i] = newVaultServer(t, freePort(t))
	}
	for i, v := range nodes {
		var joins strings.Builder
		for j, other := range nodes {
			if j != i {
				fmt.Fprintf(&joins, "  retry_join {\n    leader_api_addr = %q\n  }\n", other.addr)
			}
		}
		clusterAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		configPath := filepath.Join(v.dir, "vault.hcl")
		writeFile(t, configPath, fmt.Sprintf(`
storage "raft" {
  path                   = %q
  node_id                = "node%d"
  performance_multiplier = 1
%s}
listener "tcp" {
  address         = %q
  cluster_address = %q
  tls_disable     = true
}
api_addr         = %q
cluster_addr     = %q
plugin_directory = %q
disable_mlock    = true
%s`, v.dir, i+1, joins.String(), strings.TrimPrefix(v.addr, "http://"), clusterAddr, v.addr, "https://"+clusterAddr, pluginDir, standbyReadsConfig()))
		v.args = []string{"server", "-config=" + configPath, "-log-level=debug"}
	}

	leader := nodes[0]
	leader.start()
	leader.waitHealth()
	leader.initialise()
	leader.unseal()
	leader.waitHealth(http.StatusOK)
	// Autopilot promotes a joined node to voter once it has been stable
	// this long; only voters can elect a new leader.
	leader.mustVault("operator", "raft", "autopilot", "set-config", "-server-stabilization-time=1s")
	for _, v := range nodes[1:] {
		v.token, v.unsealKey = leader.token, leader.unsealKey
		v.start()
		v.waitHealth()
		v.unsealWhenJoined()
		v.waitHealth(http.StatusTooManyRequests) // unsealed standby
	}
	leader.waitForVoters(n)
	return nodes
}

// standbyReadsConfig is the server configuration line for standby reads:
// on OpenBao they are on unless disable_standby_reads is set (the default
// since 2.5, stated here so the cluster tests do not depend on it); Vault
// does not know the key.
func standbyReadsConfig() string {
	if serverIsOpenBao() {
		return "disable_standby_reads = false\n"
	}
	return ""
}

// waitForVoters waits until the Raft configuration has n voters.
func (v *vaultServer) waitForVoters(n int) {
	v.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		var peers struct {
			Data struct {
				Config struct {
					Servers []struct {
						Voter bool `json:"voter"`
					} `json:"servers"`
				} `json:"config"`
			} `json:"data"`
		}
		v.vaultJSON(&peers, "operator raft list-peers")
		voters := 0
		for _, s := range peers.Data.Config.Servers {
			if s.Voter {
				voters++
			}
		}
		if voters == n {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	v.t.Fatalf("the Raft cluster did not reach %d voters", n)
}

// unsealWhenJoined retries unsealing until the node has joined the cluster.
func (v *vaultServer) unsealWhenJoined() {
	v.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, err := v.vault("operator", "unseal", v.unsealKey)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			v.t.Fatalf("node %s could not be unsealed: %v", v.addr, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// kill ends the server and its plugin processes at once with SIGKILL, as a
// crashed machine would: no step-down, no seal.
func (v *vaultServer) kill() {
	v.t.Helper()
	_ = syscall.Kill(-v.cmd.Process.Pid, syscall.SIGKILL)
	<-v.done
	v.stop()
}

// activeNode waits until one of nodes reports itself active: sys/health
// answers 200 on the active node and 429 on a standby, on Vault and on
// OpenBao alike (an OpenBao standby serving reads still answers 429 and
// "standby": true; it has no performance-standby code).
func activeNode(t *testing.T, nodes []*vaultServer) *vaultServer {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		for _, v := range nodes {
			if v.health() == http.StatusOK {
				return v
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatal("no node became active")
	return nil
}

// tokenAfterFailover waits until one of survivors is active and serves
// manus/token (a newly elected node takes a moment to set up its mounts),
// for up to a minute, and returns that node and its answer.
func tokenAfterFailover(t *testing.T, survivors []*vaultServer) (*vaultServer, secretResponse) {
	t.Helper()
	leader := activeNode(t, survivors)
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := leader.readToken("manus")
		if err == nil {
			return leader, resp
		}
		if time.Now().After(deadline) {
			t.Fatalf("no token from the new active node: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// readToken reads manus/token through the HTTP API of v.
func (v *vaultServer) readToken(mount string) (secretResponse, error) {
	status, resp, err := v.httpGet(mount + "/token")
	if err == nil && status != http.StatusOK {
		err = fmt.Errorf("HTTP %d", status)
	}
	return resp, err
}

func (v *vaultServer) mustReadToken(mount string) secretResponse {
	v.t.Helper()
	resp, err := v.readToken(mount)
	if err != nil {
		v.t.Fatalf("reading %s/token from %s: %v", mount, v.addr, err)
	}
	return resp
}

// waitForConfigOn waits until manus/config read through every node shows
// clientID. A standby that serves reads itself (OpenBao) has the mount and
// its config only once Raft has brought them there, a moment after the
// active node wrote them; a standby that forwards answers at once.
func waitForConfigOn(t *testing.T, nodes []*vaultServer, clientID string) {
	t.Helper()
	for _, v := range nodes {
		deadline := time.Now().Add(30 * time.Second)
		for {
			status, resp, err := v.httpGet("manus/config")
			if status == http.StatusOK && resp.Data["client_id"] == clientID {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %s does not serve manus/config with client_id %s: HTTP %d %v", v.addr, clientID, status, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}
