//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/manus-community/vault-plugin-secrets-manus/internal/standin"
)

var (
	prometheusOnce sync.Once
	prometheusBin  string
	prometheusErr  error
)

// findPrometheus takes $PROMETHEUS_BIN, else asks the repo's script, which
// finds or builds one. A missing Prometheus fails the test; it never skips.
func findPrometheus(t *testing.T) string {
	t.Helper()
	prometheusOnce.Do(func() {
		if prometheusBin = os.Getenv("PROMETHEUS_BIN"); prometheusBin != "" {
			return
		}
		cmd := exec.Command(filepath.Join(repoRoot, "scripts", "ensure-prometheus.sh"))
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			prometheusErr = fmt.Errorf("scripts/ensure-prometheus.sh: %w", err)
			return
		}
		prometheusBin = strings.TrimSpace(string(out))
	})
	if prometheusErr != nil {
		t.Fatal(prometheusErr)
	}
	return prometheusBin
}

// TestMetricsScrapedByPrometheus: a real Prometheus scrapes manus/metrics
// through the dev Vault every second with a token holding only the
// documented monitoring policy, and evaluates the documented alert rules
// (with a short `for:`). The mint counter it stores equals the stand-in's
// count of mints; during an outage the refresh-failing alert goes pending,
// then firing, and resolves when Manus is back; a token without the policy
// is refused with 403.
func TestMetricsScrapedByPrometheus(t *testing.T) {
	t.Parallel()
	v := startVault(t)
	manus := startManus(t)
	// A 60s token is due for refresh after 30s (half its life), leaving
	// 30s in which a failing refresh still has a token to serve.
	manus.SetLifetime(time.Minute)
	v.mountConfigured(manus)
	for _, name := range []string{"manus-monitoring", "manus-consumer"} {
		v.mustVault("policy", "write", name, filepath.Join(repoRoot, "docs", "policies", name+".hcl"))
	}
	monitoring := v.tokenWithPolicy("manus-monitoring")
	consumer := v.tokenWithPolicy("manus-consumer")

	checkRawMetricsThroughVault(t, v, manus, monitoring)
	checkMonitoringPolicy(t, v, monitoring, consumer)

	prom := startPrometheus(t, v, monitoring, consumer)
	if _, err := v.readToken("manus"); err != nil { // a cache hit
		t.Fatal(err)
	}
	prom.waitFor(t, "the mint counter to equal the stand-in's mints", func() bool {
		got, ok := prom.value(t, `vault_manus_token_mints_total{job="vault-manus",outcome="success"}`)
		return ok && got == float64(manus.Mints())
	})
	prom.waitFor(t, "the cache read to be counted", func() bool {
		got, ok := prom.value(t, `vault_manus_token_reads_total{job="vault-manus",outcome="cache"}`)
		return ok && got >= 1
	})
	prom.waitFor(t, "the scrape without the policy to be refused with 403", func() bool {
		target := prom.target(t, "vault-manus-denied")
		return target.Health == "down" && strings.Contains(target.LastError, "403")
	})
	if up, _ := prom.value(t, `up{job="vault-manus"}`); up != 1 {
		t.Fatalf("up{job=vault-manus} = %v", up)
	}

	runOutage(t, v, manus, prom)
}

// checkRawMetricsThroughVault reads the path as Prometheus will: a GET
// with the token as bearer credentials. Vault must pass the raw body and
// content type through from the plugin process.
func checkRawMetricsThroughVault(t *testing.T, v *vaultServer, manus *fakeManus, token string) {
	t.Helper()
	status, header, body := getWithBearer(t, v.addr+"/v1/manus/metrics", token)
	if status != http.StatusOK {
		t.Fatalf("GET manus/metrics with the monitoring token: HTTP %d: %s", status, body)
	}
	if ct := header.Get("Content-Type"); expfmt.ResponseFormat(header).FormatType() != expfmt.TypeTextPlain {
		t.Fatalf("Content-Type %q is not the text exposition format", ct)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("the exposition Vault passed on does not parse: %v\n%s", err, body)
	}
	if _, ok := families["vault_manus_build_info"]; !ok {
		t.Fatalf("no vault_manus_build_info in:\n%s", body)
	}
	if !strings.Contains(body, `vault_manus_build_info{version="`+pluginVersion+`"} 1`) {
		t.Errorf("build info does not name version %s:\n%s", pluginVersion, body)
	}
	for _, secret := range append(manus.Issued(), testClientSecret) {
		if strings.Contains(body, secret) {
			t.Fatal("the metrics carry the client secret or an access token")
		}
	}
	// The CLI prints the raw body with -format=raw.
	out, err := v.vaultAs(token, "read", "-format=raw", "manus/metrics")
	if err != nil || !strings.Contains(out, "# TYPE vault_manus_token_mints_total counter") {
		t.Errorf("vault read -format=raw manus/metrics: %v\n%s", err, out)
	}
}

// checkMonitoringPolicy: the monitoring token reads metrics and nothing
// else; a consumer token cannot read metrics.
func checkMonitoringPolicy(t *testing.T, v *vaultServer, monitoring, consumer string) {
	t.Helper()
	for _, path := range []string{"manus/token", "manus/status", "manus/config"} {
		if status, _, _ := getWithBearer(t, v.addr+"/v1/"+path, monitoring); status != http.StatusForbidden {
			t.Errorf("the monitoring token read %s: HTTP %d, want 403", path, status)
		}
	}
	if status, _, _ := getWithBearer(t, v.addr+"/v1/manus/metrics", consumer); status != http.StatusForbidden {
		t.Errorf("a consumer token read manus/metrics: HTTP %d, want 403", status)
	}
}

// runOutage takes Manus down once the token is due for refresh and follows
// the refresh-failing alert through pending and firing to resolved.
func runOutage(t *testing.T, v *vaultServer, manus *fakeManus, prom *prometheusServer) {
	t.Helper()
	const alert = "ManusTokenRefreshFailing"
	if state := prom.alertState(t, alert); state != "" {
		t.Fatalf("%s is %s before any failure", alert, state)
	}
	cached := manus.Issued()[len(manus.Issued())-1]
	expiresAt := manus.ExpiresAt(cached)
	dueAt := expiresAt.Add(-30 * time.Second)
	time.Sleep(time.Until(dueAt.Add(500 * time.Millisecond)))

	manus.SetOutage(standin.Unavailable())
	var seen []string
	for state := ""; state != "firing"; {
		if time.Now().After(expiresAt.Add(-3 * time.Second)) {
			t.Fatalf("%s did not fire while the cached token still served (states seen: %v)", alert, seen)
		}
		// Readers keep coming: each read after the back-off window tries
		// a refresh, and meanwhile gets the stale token.
		if _, err := v.readToken("manus"); err != nil {
			t.Fatalf("a read failed with the cached token still valid: %v", err)
		}
		state = prom.alertState(t, alert)
		if state != "" && (len(seen) == 0 || seen[len(seen)-1] != state) {
			seen = append(seen, state)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The poll above can miss the pending phase: a read that waits on a
	// mint with its retries takes longer than the shortened `for:`.
	// Prometheus's own ALERTS series records every evaluation, so the order
	// is checked there.
	pendingAt, ok := prom.firstSample(t, `ALERTS{alertname="`+alert+`",alertstate="pending"}`)
	firingAt, firing := prom.firstSample(t, `ALERTS{alertname="`+alert+`",alertstate="firing"}`)
	if !ok || !firing || !pendingAt.Before(firingAt) {
		t.Fatalf("%s: ALERTS shows pending from %v (%v) and firing from %v (%v); want pending, then firing (polled states: %v)",
			alert, pendingAt, ok, firingAt, firing, seen)
	}
	t.Logf("%s fired %s before the token's expiry", alert, time.Until(expiresAt).Round(time.Second))
	if failed, _ := prom.value(t, `vault_manus_token_mints_total{job="vault-manus",outcome="failure"}`); failed < 1 {
		t.Errorf("failed mints in Prometheus = %v during the outage", failed)
	}

	// Manus returns: the next read after the back-off window mints, and
	// the alert resolves while the old token is still valid, so it is the
	// mint, not the expiry, that ends it.
	manus.ClearOutage()
	prom.waitFor(t, alert+" to resolve after Manus returned", func() bool {
		_, _ = v.readToken("manus") // the back-off may refuse the first
		return prom.alertState(t, alert) == ""
	})
	if time.Now().After(expiresAt) {
		t.Fatalf("%s resolved only after the old token expired", alert)
	}
	prom.waitFor(t, "the mint counter to equal the stand-in's mints after the outage", func() bool {
		got, ok := prom.value(t, `vault_manus_token_mints_total{job="vault-manus",outcome="success"}`)
		failed, _ := prom.value(t, `vault_manus_consecutive_failed_mints{job="vault-manus"}`)
		return ok && got == float64(manus.Mints()) && failed == 0
	})
}

func getWithBearer(t *testing.T, url, token string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(body)
}

// prometheusServer is one `prometheus` process scraping a Vault.
type prometheusServer struct {
	addr    string // http://127.0.0.1:port
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
}

// startPrometheus runs Prometheus with a one-second scrape and evaluation
// interval, the documented alert rules with every `for:` cut to 3s, a job
// scraping manus/metrics with the monitoring token and one with a token
// that lacks the policy. It is stopped when the test ends.
func startPrometheus(t *testing.T, v *vaultServer, monitoring, denied string) *prometheusServer {
	t.Helper()
	bin := findPrometheus(t)
	dir := t.TempDir()
	rules, err := os.ReadFile(filepath.Join(repoRoot, "docs", "prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	shortRules := regexp.MustCompile(`(?m)^(\s+for:) \S+$`).ReplaceAll(rules, []byte("$1 3s"))
	writeFile(t, filepath.Join(dir, "alerts.yml"), string(shortRules))
	writeFile(t, filepath.Join(dir, "monitoring-token"), monitoring)
	writeFile(t, filepath.Join(dir, "denied-token"), denied)
	target := strings.TrimPrefix(v.addr, "http://")
	job := func(name, tokenFile string) string {
		return fmt.Sprintf(`  - job_name: %s
    metrics_path: /v1/manus/metrics
    authorization:
      credentials_file: %s
    static_configs:
      - targets: [%q]
`, name, filepath.Join(dir, tokenFile), target)
	}
	writeFile(t, filepath.Join(dir, "prometheus.yml"), `global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - `+filepath.Join(dir, "alerts.yml")+`
scrape_configs:
`+job("vault-manus", "monitoring-token")+job("vault-manus-denied", "denied-token"))

	port := freePort(t)
	p := &prometheusServer{addr: fmt.Sprintf("http://127.0.0.1:%d", port), logPath: filepath.Join(dir, "prometheus.log")}
	logFile, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin,
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+strings.TrimPrefix(p.addr, "http://"),
	)
	p.cmd.Dir = dir
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	p.cmd.SysProcAttr = processAttrs()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	liveGroups.Store(p.cmd.Process.Pid, struct{}{})
	p.done = make(chan struct{})
	go func() {
		_ = p.cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	t.Cleanup(func() { p.stop(t) })
	p.waitFor(t, "Prometheus to be ready", func() bool {
		select {
		case <-p.done:
			t.Fatalf("prometheus exited:\n%s", p.logTail())
		default:
		}
		if !listensOn(p.cmd.Process.Pid, port) {
			return false // not up yet, or what answers is not this Prometheus
		}
		resp, err := http.Get(p.addr + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p
}

func (p *prometheusServer) stop(t *testing.T) {
	pgid := p.cmd.Process.Pid
	terminateGroup(pgid, p.done)
	liveGroups.Delete(pgid)
	if t.Failed() {
		t.Logf("prometheus log (tail):\n%s", p.logTail())
	}
}

func (p *prometheusServer) logTail() string {
	data, _ := os.ReadFile(p.logPath)
	if len(data) > 6000 {
		data = data[len(data)-6000:]
	}
	return string(data)
}

// waitFor polls cond for up to 45 seconds.
func (p *prometheusServer) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s\nprometheus log:\n%s", what, p.logTail())
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// api GETs a Prometheus HTTP API path and decodes its data field.
func (p *prometheusServer) api(t *testing.T, path string, data any) {
	t.Helper()
	resp, err := http.Get(p.addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var envelope struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&envelope); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	if envelope.Status != "success" {
		t.Fatalf("GET %s: %s", path, envelope.Error)
	}
	if err := json.Unmarshal(envelope.Data, data); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

// value runs an instant query that should select at most one series.
func (p *prometheusServer) value(t *testing.T, query string) (float64, bool) {
	t.Helper()
	var data struct {
		Result []struct {
			Value [2]any `json:"value"`
		} `json:"result"`
	}
	p.api(t, "/api/v1/query?query="+url.QueryEscape(query), &data)
	switch len(data.Result) {
	case 0:
		return 0, false
	case 1:
		text, _ := data.Result[0].Value[1].(string)
		f, err := strconv.ParseFloat(text, 64)
		return f, err == nil
	}
	t.Fatalf("%s selects %d series", query, len(data.Result))
	return 0, false
}

// firstSample is the time of the oldest sample of selector in the last five
// minutes, and whether it had any.
func (p *prometheusServer) firstSample(t *testing.T, selector string) (time.Time, bool) {
	t.Helper()
	var data struct {
		Result []struct {
			Values [][2]any `json:"values"`
		} `json:"result"`
	}
	p.api(t, "/api/v1/query?query="+url.QueryEscape(selector+"[5m]"), &data)
	var first time.Time
	for _, series := range data.Result {
		for _, sample := range series.Values {
			seconds, _ := sample[0].(float64)
			at := time.UnixMilli(int64(seconds * 1000))
			if first.IsZero() || at.Before(first) {
				first = at
			}
		}
	}
	return first, !first.IsZero()
}

// alertState is "pending", "firing" or "" (inactive) for the named alert.
func (p *prometheusServer) alertState(t *testing.T, name string) string {
	t.Helper()
	var data struct {
		Alerts []struct {
			Labels map[string]string `json:"labels"`
			State  string            `json:"state"`
		} `json:"alerts"`
	}
	p.api(t, "/api/v1/alerts", &data)
	for _, a := range data.Alerts {
		if a.Labels["alertname"] == name && a.Labels["job"] == "vault-manus" {
			return a.State
		}
	}
	return ""
}

type scrapeTarget struct {
	Labels    map[string]string `json:"labels"`
	Health    string            `json:"health"`
	LastError string            `json:"lastError"`
}

func (p *prometheusServer) target(t *testing.T, job string) scrapeTarget {
	t.Helper()
	var data struct {
		ActiveTargets []scrapeTarget `json:"activeTargets"`
	}
	p.api(t, "/api/v1/targets", &data)
	for _, target := range data.ActiveTargets {
		if target.Labels["job"] == job {
			return target
		}
	}
	return scrapeTarget{}
}
