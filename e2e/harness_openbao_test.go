//go:build e2e && openbao

package e2e

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

// Harness, not tests: with the build tag openbao (`make test-openbao`) the
// server, CLI and Agent are the OpenBao binary in BAO_BIN, and the cluster
// tests in openbao_cluster_test.go get a 3-node OpenBao Raft cluster whose
// standbys serve reads themselves.

func init() {
	findServer = findOpenBao
	requiredServer = &serverRelease{product: "OpenBao", version: [3]int{2, 5, 0}}
}

// findOpenBao takes the server from BAO_BIN, and only from there: the
// suite is run the way a user who downloaded an OpenBao release runs it.
func findOpenBao() (string, error) {
	bin := os.Getenv("BAO_BIN")
	if bin == "" {
		return "", errors.New("BAO_BIN is not set: the OpenBao suite needs the path of an OpenBao 2.5 or newer server binary " +
			"(BAO_BIN=/path/to/bao make test-openbao)")
	}
	info, err := os.Stat(bin)
	if err != nil {
		return "", fmt.Errorf("BAO_BIN: %w", err)
	}
	if info.IsDir() || info.Mode()&0o111 == 0 {
		return "", fmt.Errorf("BAO_BIN=%s is not an executable file", bin)
	}
	return bin, nil
}

// standbyReadsLogLine is what an OpenBao standby logs when it starts serving
// reads itself (vault/ha.go); a cluster test without it would prove nothing.
const standbyReadsLogLine = "enabling horizontal scalability (reads)"

// openBaoCluster is a 3-node OpenBao Raft cluster with standby reads on, the
// plugin registered by sha256 and version and mounted at manus/, and the
// stand-in; configure writes the mount's config.
type openBaoCluster struct {
	t        *testing.T
	nodes    []*vaultServer
	active   *vaultServer
	standbys []*vaultServer
	manus    *fakeManus
}

func startOpenBaoCluster(t *testing.T) *openBaoCluster {
	t.Helper()
	nodes := startRaftCluster(t, 3)
	c := &openBaoCluster{t: t, nodes: nodes, active: activeNode(t, nodes), manus: startManus(t)}
	c.standbys = c.others(c.active)
	for _, v := range c.standbys {
		if !strings.Contains(v.log(), standbyReadsLogLine) {
			t.Fatalf("standby %s did not enable standby reads (no %q in its log)", v.addr, standbyReadsLogLine)
		}
	}
	c.active.registerPlugin()
	c.active.mount("manus")
	return c
}

// others are the nodes but v.
func (c *openBaoCluster) others(v *vaultServer) []*vaultServer {
	var out []*vaultServer
	for _, n := range c.nodes {
		if n != v {
			out = append(out, n)
		}
	}
	return out
}

// configure writes manus/config through the active node, then waits until
// every node's plugin serves the config (the mount and the config reach the
// standbys through Raft, a moment later).
func (c *openBaoCluster) configure(extra ...string) {
	c.t.Helper()
	c.active.configure("manus", c.manus, extra...)
	c.waitForConfig(testClientID)
}

// waitForConfig waits until manus/config read through every node shows
// clientID.
func (c *openBaoCluster) waitForConfig(clientID string) {
	c.t.Helper()
	waitForConfigOn(c.t, c.nodes, clientID)
}

// status reads manus/status through v.
func (v *vaultServer) status() map[string]any {
	v.t.Helper()
	status, resp, err := v.httpGet("manus/status")
	if err != nil || status != 200 {
		v.t.Fatalf("reading manus/status through %s: HTTP %d: %v", v.addr, status, err)
	}
	return resp.Data
}
