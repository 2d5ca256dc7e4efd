//go:build e2e && openbao

package e2e

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The plugin on a 3-node OpenBao Raft cluster whose standbys serve reads
// themselves (OpenBao >= 2.5 on Raft, by default). The promise under test:
// every reader of a mount shares one upstream token, minted once per token
// lifetime, whichever node a request lands on, and every read succeeds on
// every node. The tests run one after the other, before the parallel
// single-node tests start, so the timing of one does not disturb another.

// TestOpenBaoClusterLeasedReadsThroughStandbys: leased token reads (the
// default) sent to each standby answer 200 with the token the active node
// holds, under a lease the active node registered, and Manus sees the one
// mint of the config write. A standby cannot register a lease (a storage
// write); OpenBao answers 500 "internal error" for a leased response built
// there instead of forwarding it, so the plugin must forward it first.
func TestOpenBaoClusterLeasedReadsThroughStandbys(t *testing.T) {
	const readsPerStandby = 10
	c := startOpenBaoCluster(t)
	c.configure() // verified: the one mint, on the active node
	want := c.manus.Issued()[0]

	failed, firstFailure := 0, ""
	var leaseID string
	for _, v := range c.standbys {
		for range readsPerStandby {
			status, resp, err := v.httpGet("manus/token")
			if status != http.StatusOK {
				if failed++; firstFailure == "" {
					firstFailure = fmt.Sprintf("HTTP %d: %v", status, err)
				}
				continue
			}
			if resp.Data["access_token"] != want || !strings.HasPrefix(resp.LeaseID, "manus/token/") || resp.LeaseDuration < 3500 {
				t.Fatalf("a leased read through standby %s: same token as the active node's %v, lease %q for %ds",
					v.addr, resp.Data["access_token"] == want, resp.LeaseID, resp.LeaseDuration)
			}
			leaseID = resp.LeaseID
		}
	}
	if failed > 0 {
		t.Errorf("%d of %d leased reads through the standbys failed; first: %s", failed, readsPerStandby*len(c.standbys), firstFailure)
	}
	if leaseID != "" {
		// The lease lives where leases can be written: on the active node.
		c.active.mustVault("lease", "lookup", leaseID)
	}
	if got := c.manus.Mints(); got != 1 {
		t.Errorf("%d mints, want 1 (the config write's)", got)
	}
}

// TestOpenBaoClusterNonLeasedReadsShareOneToken: leased_reads=false and
// 20-second tokens (refreshed at 10 s left, half the lifetime). Readers on
// all three nodes at once for a minute: every read succeeds, Manus sees one
// mint per rotation period, and the nodes serve the same token.
//
// Agreement allows the moment of a rotation: the active node mints,
// persists the token, and each standby takes it in its Invalidate a moment
// later. So a token served by any node must be the newest issued, or the
// one before it while Manus still accepts it. And the nodes' current tokens
// (the last each served) are compared ten times a second: they may differ
// only from a mint until each node's next read after the standbys'
// Invalidate, which is milliseconds (a Raft apply on loopback) plus one
// read interval (25 ms per node here) and a read's latency, well under a
// second even on a loaded machine. The bound is one second of disagreement
// per rotation allowed (7 s of the 60 s run, 12 %). It holds with room to
// spare when only the active node mints; a standby that mints and keeps a
// token of its own disagrees with the others until the next Invalidate,
// seconds at a time.
func TestOpenBaoClusterNonLeasedReadsShareOneToken(t *testing.T) {
	const (
		lifetime       = 20 * time.Second
		watchFor       = 60 * time.Second
		readersPerNode = 4
		readEvery      = 100 * time.Millisecond
	)
	c := startOpenBaoCluster(t)
	c.manus.SetLifetime(lifetime)
	c.configure("leased_reads=false")
	first := c.active.mustReadToken("manus")
	seconds, ok := first.Data["rotation_period"].(float64)
	period := time.Duration(seconds) * time.Second
	if !ok || period < lifetime/2-time.Second || period > lifetime/2 {
		t.Fatalf("rotation_period %v for %s tokens; want the refresh at half the lifetime", first.Data["rotation_period"], lifetime)
	}

	mintsBefore := c.manus.Mints()
	start := time.Now()
	reads := make([][]servedToken, len(c.nodes))
	var mu sync.Mutex
	var failures, offTokens []string
	var wg sync.WaitGroup
	for node, v := range c.nodes {
		for range readersPerNode {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var mine []servedToken
				for time.Since(start) < watchFor {
					resp, err := v.readToken("manus")
					at := time.Now()
					if err != nil {
						mu.Lock()
						failures = append(failures, fmt.Sprintf("%s at +%s: %v", c.name(v), at.Sub(start).Round(time.Millisecond), err))
						mu.Unlock()
					} else {
						tok, _ := resp.Data["access_token"].(string)
						mine = append(mine, servedToken{at: at, token: tok})
						if problem := c.notNewest(tok); problem != "" {
							mu.Lock()
							offTokens = append(offTokens, fmt.Sprintf("%s at +%s: %s", c.name(v), at.Sub(start).Round(time.Millisecond), problem))
							mu.Unlock()
						}
					}
					time.Sleep(readEvery)
				}
				mu.Lock()
				reads[node] = append(reads[node], mine...)
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	mints := c.manus.Mints() - mintsBefore
	allowed := int(watchFor/period) + 1
	const tick = 100 * time.Millisecond
	compared, disagreeing := disagreement(reads, start, watchFor, tick)
	allowedDisagreeing := allowed * int(time.Second/tick)
	for node, r := range reads {
		t.Logf("%s: %d reads", c.name(c.nodes[node]), len(r))
	}
	t.Logf("in %s of %s tokens rotated every %s: %d mints (allowed %d); nodes compared at %d instants %s apart, disagreed at %d (allowed %d); %d failed reads, %d reads of a token neither newest nor the valid one before",
		watchFor, lifetime, period, mints, allowed, compared, tick, disagreeing, allowedDisagreeing, len(failures), len(offTokens))

	if len(failures) > 0 {
		t.Errorf("%d reads failed; first: %s", len(failures), failures[0])
	}
	if mints > allowed {
		t.Errorf("%d mints in %s; want one per %s rotation period, at most %d", mints, watchFor, period, allowed)
	}
	if len(offTokens) > 0 {
		t.Errorf("%d reads served a token that is neither the newest issued nor the one before it while still valid; first: %s", len(offTokens), offTokens[0])
	}
	if compared < int(watchFor/tick)*9/10 {
		t.Errorf("the nodes could be compared at only %d of %d instants; a node served too few reads for the comparison to prove anything", compared, int(watchFor/tick))
	}
	if disagreeing > allowedDisagreeing {
		t.Errorf("the nodes served different tokens for %s of %s; want at most %s, one second per rotation", time.Duration(disagreeing)*tick, watchFor, time.Duration(allowedDisagreeing)*tick)
	}
}

// servedToken is one successful read: when its answer arrived, and the
// token in it.
type servedToken struct {
	at    time.Time
	token string
}

// notNewest says what is wrong with a token served just now, or "" if it is
// the newest Manus issued, or the one before it and still valid.
func (c *openBaoCluster) notNewest(tok string) string {
	issued := c.manus.Issued()
	n := len(issued)
	switch {
	case n > 0 && tok == issued[n-1]:
		return ""
	case n > 1 && tok == issued[n-2] && c.manus.IsValid(tok):
		return ""
	case c.manus.ClientOf(tok) == "":
		return "a token Manus never issued"
	}
	for i, t := range issued {
		if t == tok {
			return fmt.Sprintf("token %d of %d issued (valid: %v)", i+1, n, c.manus.IsValid(tok))
		}
	}
	return "unknown token"
}

// disagreement samples the token each node served last (its current
// token) at every tick of the run, and returns how many ticks had a current
// token on every node and in how many the nodes' current tokens differed.
func disagreement(reads [][]servedToken, start time.Time, watchFor, tick time.Duration) (compared, disagreeing int) {
	for _, nodeReads := range reads {
		slices.SortFunc(nodeReads, func(a, b servedToken) int { return a.at.Compare(b.at) })
	}
	next := make([]int, len(reads)) // per node, the first read after the tick
	for at := start.Add(tick); !at.After(start.Add(watchFor)); at = at.Add(tick) {
		current := make([]string, len(reads))
		for node, nodeReads := range reads {
			for next[node] < len(nodeReads) && !nodeReads[next[node]].at.After(at) {
				next[node]++
			}
			if next[node] > 0 {
				current[node] = nodeReads[next[node]-1].token
			}
		}
		if slices.Contains(current, "") {
			continue
		}
		compared++
		if slices.ContainsFunc(current, func(tok string) bool { return tok != current[0] }) {
			disagreeing++
		}
	}
	return compared, disagreeing
}

// name is how a node appears in messages: "active node (url)" or "standby
// (url)", as the cluster was when the test started.
func (c *openBaoCluster) name(v *vaultServer) string {
	if v == c.active {
		return "active node " + v.addr
	}
	return "standby " + v.addr
}

// TestOpenBaoClusterConfigWriteThroughStandbyMintsOnce: a config write sent
// to a standby (rotating to another client) verifies the new credential
// with exactly one mint, wherever that happens, and the new token is the
// one the cluster then serves. Without forwarding first, the standby
// verifies (sending the secret to Manus), its storage write is refused, and
// the active node verifies again.
func TestOpenBaoClusterConfigWriteThroughStandbyMintsOnce(t *testing.T) {
	const rotatedID, rotatedSecret = "tm_rotated_client", "rotated-secret-value"
	c := startOpenBaoCluster(t)
	c.manus.AddClient(rotatedID, rotatedSecret)
	c.configure()
	before := c.manus.Mints()

	standby := c.standbys[0]
	standby.mustVault("write", "manus/config", "client_id="+rotatedID, "client_secret="+rotatedSecret, "base_url="+c.manus.url)
	if got := c.manus.Mints() - before; got != 1 {
		t.Errorf("the config write through a standby minted %d times, want 1", got)
	}
	c.waitForConfig(rotatedID)
	tok := c.active.mustReadToken("manus").Data["access_token"].(string)
	if c.manus.ClientOf(tok) != rotatedID {
		t.Fatal("after the config write through a standby, the active node serves a token of the old client")
	}
	if got := c.manus.Mints() - before; got != 1 {
		t.Errorf("%d mints for the config write and the read after it, want 1: the write's verified token is the one served", got)
	}
	// The stand-in's contract check (no violations) runs when the test ends.
}

// TestOpenBaoClusterFailoverServesPersistedToken: the active node mints and
// persists the token; it is then killed (SIGKILL, no step-down). The node
// elected in its place serves the persisted token without a mint.
func TestOpenBaoClusterFailoverServesPersistedToken(t *testing.T) {
	c := startOpenBaoCluster(t)
	c.configure()
	first := c.active.mustReadToken("manus").Data["access_token"]

	c.active.kill()
	_, resp := tokenAfterFailover(t, c.standbys)
	if resp.Data["access_token"] != first || c.manus.Mints() != 1 {
		t.Fatalf("after the active node was killed: same token %v, mints %d; want the persisted token and no mint", resp.Data["access_token"] == first, c.manus.Mints())
	}
}

// TestOpenBaoClusterStatusAndMetricsOnStandby: manus/status read through a
// standby says the node cannot mint, that it is a performance standby and
// that its token came from storage (written by the active node); on the
// active node it says the opposite. A standby's metrics count the leased
// reads it forwarded.
func TestOpenBaoClusterStatusAndMetricsOnStandby(t *testing.T) {
	c := startOpenBaoCluster(t)
	c.configure()
	standby := c.standbys[0]
	for range 5 {
		if _, err := standby.readToken("manus"); err != nil {
			t.Errorf("a leased read through the standby: %v", err)
		}
	}

	for v, want := range map[*vaultServer]map[string]any{
		standby:  {"node_can_mint": false, "node_role": "performance standby", "token_source": "storage"},
		c.active: {"node_can_mint": true, "node_role": "active", "token_source": "minted on this node"},
	} {
		status := v.status()
		for field, value := range want {
			if got, ok := status[field]; !ok || got != value {
				t.Errorf("manus/status through the %s: %s = %#v (present %v), want %#v", c.name(v), field, got, ok, value)
			}
		}
	}

	const forwarded = "vault_manus_token_reads_forwarded_total"
	code, _, body := getWithBearer(t, standby.addr+"/v1/manus/metrics", standby.token)
	if code != http.StatusOK {
		t.Fatalf("GET manus/metrics through the standby: HTTP %d: %s", code, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("the standby's metrics do not parse: %v", err)
	}
	total := 0.0
	if family, ok := families[forwarded]; ok {
		for _, m := range family.GetMetric() {
			for _, label := range m.GetLabel() {
				if label.GetName() == "reason" && label.GetValue() == "lease" {
					total += m.GetCounter().GetValue()
				}
			}
		}
	}
	if total <= 0 {
		t.Errorf(`%s{reason="lease"} through the standby = %v after 5 leased reads sent to it, want > 0`, forwarded, total)
	}
}
