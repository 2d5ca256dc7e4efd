//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/manus-community/vault-plugin-secrets-manus/internal/standin"
)

// TestRegisterVersionAndMultiplexedMounts covers registration by checksum
// and version, and two mounts with their own credentials served by one
// plugin process.
func TestRegisterVersionAndMultiplexedMounts(t *testing.T) {
	t.Parallel()
	v := startVault(t)
	manus := startManus(t)
	manus.AddClient("tm_sandbox_client", "sandbox-secret-value")
	v.registerPlugin()

	var info struct {
		Name    string `json:"name"`
		SHA256  string `json:"sha256"`
		Version string `json:"version"`
	}
	v.vaultJSON(&info, "plugin info", "-version="+pluginVersion, "secret", pluginName)
	if info.Version != pluginVersion || info.SHA256 != pluginSHA256 {
		t.Fatalf("plugin info = %+v, want version %s and sha256 %s", info, pluginVersion, pluginSHA256)
	}

	v.mount("manus")
	v.mount("manus-sandbox")
	var mounts map[string]struct {
		Type                 string `json:"type"`
		RunningPluginVersion string `json:"running_plugin_version"`
		RunningSha256        string `json:"running_sha256"`
	}
	v.vaultJSON(&mounts, "secrets list")
	for _, path := range []string{"manus/", "manus-sandbox/"} {
		if got := mounts[path].RunningPluginVersion; got != pluginVersion {
			t.Errorf("%s runs plugin version %q, want %q", path, got, pluginVersion)
		}
	}

	v.configure("manus", manus)
	v.mustVault("write", "manus-sandbox/config", "client_id=tm_sandbox_client", "client_secret=sandbox-secret-value", "base_url="+manus.url)
	prod := v.readSecret("manus/token").Data["access_token"].(string)
	sandbox := v.readSecret("manus-sandbox/token").Data["access_token"].(string)
	if prod == sandbox {
		t.Fatal("the two mounts returned the same token")
	}
	if manus.ClientOf(prod) != testClientID || manus.ClientOf(sandbox) != "tm_sandbox_client" {
		t.Fatal("a mount's token was minted with another mount's credentials")
	}
	if n := v.pluginProcesses(); n != 1 {
		t.Fatalf("%d plugin processes serve two mounts, want 1 (multiplexed)", n)
	}
}

// TestConfigAndTokenThroughCLI: config hides the secret; the token comes
// back with a non-renewable lease sized to the token's life.
func TestConfigAndTokenThroughCLI(t *testing.T) {
	t.Parallel()
	v := startVault(t)
	manus := startManus(t)
	v.mountConfigured(manus)

	config := v.mustVault("read", "-format=json", "manus/config")
	if strings.Contains(config, testClientSecret) || strings.Contains(config, "client_secret") {
		t.Fatalf("config read shows the secret: %s", config)
	}
	if !strings.Contains(config, testClientID) {
		t.Fatalf("config read lacks client_id: %s", config)
	}

	tok := v.readSecret("manus/token")
	access, _ := tok.Data["access_token"].(string)
	if access == "" || access != manus.Issued()[0] {
		t.Fatalf("token read = %+v, want the stand-in's token", tok.Data)
	}
	if tok.Renewable {
		t.Fatal("the token lease is renewable")
	}
	// The lease is the remaining life less the one-minute margin; the token
	// was minted by the config write, a moment (longer on a loaded machine)
	// before this read.
	expiresIn, _ := tok.Data["expires_in"].(float64)
	if tok.LeaseDuration < 3500 || tok.LeaseDuration > 3540 || float64(tok.LeaseDuration) < expiresIn-61 || float64(tok.LeaseDuration) > expiresIn-59 {
		t.Fatalf("lease_duration = %d with expires_in %v, want expires_in minus 60 s for a fresh one-hour token", tok.LeaseDuration, expiresIn)
	}
	if !strings.HasPrefix(tok.LeaseID, "manus/token/") {
		t.Fatalf("lease_id = %q", tok.LeaseID)
	}
	if tok.Data["token_type"] != "Bearer" {
		t.Fatalf("token_type = %v", tok.Data["token_type"])
	}
	if _, err := time.Parse(time.RFC3339, tok.Data["expires_at"].(string)); err != nil {
		t.Fatalf("expires_at: %v", err)
	}
	if n, _ := tok.Data["expires_in"].(json.Number); n == "" {
		if f, ok := tok.Data["expires_in"].(float64); !ok || f < 3590 || f > 3600 {
			t.Fatalf("expires_in = %v", tok.Data["expires_in"])
		}
	}

	field := strings.TrimSpace(v.mustVault("read", "-field=access_token", "manus/token"))
	if field != access || manus.Mints() != 1 {
		t.Fatalf("second read: token %q, mints %d; want the cached token and 1 mint", field, manus.Mints())
	}
}

func TestUnconfiguredMountSaysWhatToDo(t *testing.T) {
	t.Parallel()
	v := startVault(t)
	v.registerPlugin()
	v.mount("manus")
	_, err := v.vault("read", "manus/token")
	if err == nil || !strings.Contains(err.Error(), "Code: 400") || !strings.Contains(err.Error(), "config") {
		t.Fatalf("unconfigured read: %v; want a 400 that says to write config", err)
	}
}

// TestConcurrentReadsMintOnce: 200 concurrent reads through Vault's HTTP API
// cost Manus exactly one mint.
func TestConcurrentReadsMintOnce(t *testing.T) {
	t.Parallel()
	v := startVault(t)
	manus := startManus(t)
	v.mountConfigured(manus, "verify_credentials=false")
	manus.FailNext(standin.Fault{Stall: 300 * time.Millisecond}) // every reader arrives while the mint is in flight

	responses, errs := v.parallelReads("manus/token", 200)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
	}
	if got := manus.Requests(); got != 1 {
		t.Fatalf("200 concurrent reads made %d token requests, want 1", got)
	}
	leases := map[string]bool{}
	for _, r := range responses {
		if r.Data["access_token"] != manus.Issued()[0] {
			t.Fatal("a reader got a different token")
		}
		leases[r.LeaseID] = true
	}
	if len(leases) != 200 {
		t.Fatalf("%d distinct leases for 200 reads", len(leases))
	}
}

// TestLeaseRevokeAndDisable: revoking a token lease succeeds without touching
// Manus, and the mount can be disabled with leases outstanding.
func TestLeaseRevokeAndDisable(t *testing.T) {
	t.Parallel()
	v := startVault(t)
	manus := startManus(t)
	v.mountConfigured(manus)

	first := v.readSecret("manus/token")
	v.readSecret("manus/token")
	v.mustVault("lease", "revoke", first.LeaseID)
	if _, err := v.vault("lease", "lookup", first.LeaseID); err == nil {
		t.Fatal("the revoked lease still exists")
	}
	after := v.readSecret("manus/token")
	if after.Data["access_token"] != first.Data["access_token"] {
		t.Fatal("revoking one lease changed the shared token")
	}
	v.mustVault("secrets", "disable", "manus/")

	var count struct {
		Data struct {
			Counts int `json:"lease_count"`
		} `json:"data"`
	}
	v.vaultJSON(&count, "read", "sys/leases/count", "type=irrevocable")
	if count.Data.Counts != 0 {
		t.Fatalf("%d irrevocable leases left after disabling the mount", count.Data.Counts)
	}
	if manus.Mints() != 1 {
		t.Fatalf("mints = %d; revoking and disabling must not call Manus", manus.Mints())
	}
}

// TestConfigChangeThroughCLI: new credentials take effect on the next read;
// a wrong secret is refused with the Manus code and changes nothing.
func TestConfigChangeThroughCLI(t *testing.T) {
	t.Parallel()
	v := startVault(t)
	manus := startManus(t)
	manus.AddClient("tm_rotated_client", "rotated-secret-value")
	v.mountConfigured(manus)
	before := v.readSecret("manus/token").Data["access_token"].(string)

	_, err := v.vault("write", "manus/config", "client_secret=definitely-wrong", "base_url="+manus.url)
	if err == nil || !strings.Contains(err.Error(), "INVALID_CLIENT") {
		t.Fatalf("wrong secret: %v; want an error carrying INVALID_CLIENT", err)
	}
	if v.readSecret("manus/token").Data["access_token"] != before {
		t.Fatal("a refused config write changed the token")
	}

	v.mustVault("write", "manus/config", "client_id=tm_rotated_client", "client_secret=rotated-secret-value", "base_url="+manus.url)
	after := v.readSecret("manus/token").Data["access_token"].(string)
	if after == before || manus.ClientOf(after) != "tm_rotated_client" {
		t.Fatal("the next read after a config change did not use the new credentials")
	}

	// A deleted credential surfaces as INVALID_CLIENT on the next mint.
	manus.DeleteClient("tm_rotated_client")
	v.mustVault("write", "manus/config", "refresh_threshold=1h", "verify_credentials=false")
	_, err = v.vault("read", "manus/token")
	if err == nil || !strings.Contains(err.Error(), "INVALID_CLIENT") {
		t.Fatalf("read with a deleted credential: %v; want INVALID_CLIENT", err)
	}
}

// TestNoSecretsInLogsOrAudit runs a full scenario with the server at trace
// level and a file audit device, then searches every log for the secret and
// every issued token.
func TestNoSecretsInLogsOrAudit(t *testing.T) {
	t.Parallel()
	v := startVault(t)
	manus := startManus(t)
	auditPath := filepath.Join(v.dir, "audit.log")
	v.mustVault("audit", "enable", "file", "file_path="+auditPath)
	v.registerPlugin()
	v.mount("manus")

	v.configure("manus", manus)
	v.vault("write", "manus/config", "client_secret=wrong-"+testClientSecret, "base_url="+manus.url) // refused by Manus
	tok := v.readSecret("manus/token")
	v.mustVault("lease", "revoke", tok.LeaseID)
	v.mustVault("write", "manus/config", "verify_credentials=false", "request_timeout=5")
	v.readSecret("manus/token")
	manus.FailNext(standin.Fault{Status: 400, Body: `{"code":"INVALID_REQUEST","message":"` + standin.EchoedForm + `"}`})
	v.mustVault("write", "manus/config", "verify_credentials=false", "refresh_threshold=2h")
	v.vault("read", "manus/token") // fails with an echoed form
	v.mustVault("secrets", "disable", "manus")

	serverLog := v.log()
	audit, err := os.ReadFile(auditPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(serverLog, "minted a Manus access token") {
		t.Fatal("the plugin's log lines are not in the server log; the scan would prove nothing")
	}
	if !strings.Contains(string(audit), "manus/token") {
		t.Fatal("the audit log has no token reads; the scan would prove nothing")
	}
	secrets := append([]string{testClientSecret}, manus.Issued()...)
	if len(secrets) < 3 {
		t.Fatalf("only %d secrets to look for", len(secrets))
	}
	for _, s := range secrets {
		if strings.Contains(serverLog, s) {
			t.Errorf("server log contains a secret (%.8s...)", s)
		}
		if strings.Contains(string(audit), s) {
			t.Errorf("audit log contains a secret (%.8s...)", s)
		}
	}
}

// TestPathHelpAndOpenAPI: path-help describes every field, and the OpenAPI
// document lists both paths.
func TestPathHelpAndOpenAPI(t *testing.T) {
	t.Parallel()
	v := startVault(t)
	v.registerPlugin()
	v.mount("manus")

	tokenHelp := v.mustVault("path-help", "manus/token")
	for _, field := range []string{"access_token", "token_type", "expires_at", "expires_in", "not renewable", "does not revoke"} {
		if !strings.Contains(tokenHelp, field) {
			t.Errorf("path-help manus/token lacks %q", field)
		}
	}
	configHelp := v.mustVault("path-help", "manus/config")
	for _, field := range []string{"client_id", "client_secret", "base_url", "request_timeout", "ca_cert", "refresh_threshold", "verify_credentials"} {
		if !strings.Contains(configHelp, field) {
			t.Errorf("path-help manus/config lacks %q", field)
		}
	}

	var doc struct {
		Data struct {
			Paths      map[string]json.RawMessage `json:"paths"`
			Components json.RawMessage            `json:"components"`
		} `json:"data"`
	}
	v.vaultJSON(&doc, "read", "sys/internal/specs/openapi")
	spec := doc.Data
	for _, p := range []string{"/manus/token", "/manus/config", "/manus/status"} {
		if _, ok := spec.Paths[p]; !ok {
			t.Errorf("OpenAPI document lacks %s", p)
		}
	}
	var components any
	_ = json.Unmarshal(spec.Components, &components)
	if !propertyIsSensitive(components, "client_secret") {
		t.Error("OpenAPI does not mark client_secret as sensitive")
	}
	if !propertyIsSensitive(components, "access_token") {
		t.Error("OpenAPI does not mark access_token as sensitive")
	}
}

// propertyIsSensitive looks through an OpenAPI tree for a property named
// name whose display attributes mark it sensitive.
func propertyIsSensitive(node any, name string) bool {
	switch n := node.(type) {
	case map[string]any:
		if props, ok := n["properties"].(map[string]any); ok {
			if prop, ok := props[name].(map[string]any); ok {
				if attrs, ok := prop["x-vault-displayAttrs"].(map[string]any); ok && attrs["sensitive"] == true {
					return true
				}
			}
		}
		for _, child := range n {
			if propertyIsSensitive(child, name) {
				return true
			}
		}
	case []any:
		for _, child := range n {
			if propertyIsSensitive(child, name) {
				return true
			}
		}
	}
	return false
}

// TestPoliciesFromTheDocs loads the policies in docs/policies and checks
// what each lets a token do.
func TestPoliciesFromTheDocs(t *testing.T) {
	t.Parallel()
	v := startVault(t)
	manus := startManus(t)
	v.mountConfigured(manus)
	for _, name := range []string{"manus-consumer", "manus-operator"} {
		v.mustVault("policy", "write", name, filepath.Join(repoRoot, "docs", "policies", name+".hcl"))
	}
	consumer := v.tokenWithPolicy("manus-consumer")
	operator := v.tokenWithPolicy("manus-operator")

	if _, err := v.vaultAs(consumer, "read", "-field=access_token", "manus/token"); err != nil {
		t.Errorf("consumer cannot read the token: %v", err)
	}
	for _, args := range [][]string{
		{"read", "manus/config"},
		{"read", "manus/status"},
		{"write", "manus/config", "base_url=https://evil.example"},
		{"delete", "manus/config"},
	} {
		if _, err := v.vaultAs(consumer, args...); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("consumer could run %q: %v", args, err)
		}
	}

	if _, err := v.vaultAs(operator, "read", "manus/config"); err != nil {
		t.Errorf("operator cannot read config: %v", err)
	}
	if _, err := v.vaultAs(operator, "read", "manus/status", "probe=true"); err != nil {
		t.Errorf("operator cannot read status: %v", err)
	}
	if _, err := v.vaultAs(operator, "write", "manus/config", "refresh_threshold=15m"); err != nil {
		t.Errorf("operator cannot update config: %v", err)
	}
	if _, err := v.vaultAs(operator, "lease", "revoke", "-prefix", "manus/token"); err != nil {
		t.Errorf("operator cannot revoke token leases: %v", err)
	}
	if _, err := v.vaultAs(operator, "secrets", "disable", "manus"); err == nil {
		t.Error("operator could disable the mount; the policy should not allow sys/mounts")
	}
}

// TestStatusAndProbeThroughCLI: the operator's status path on a healthy
// mount and with a deleted credential, probe included.
func TestStatusAndProbeThroughCLI(t *testing.T) {
	t.Parallel()
	v := startVault(t)
	manus := startManus(t)
	v.mountConfigured(manus)
	v.readSecret("manus/token")

	var status struct {
		Data map[string]any `json:"data"`
	}
	v.vaultJSON(&status, "read", "manus/status", "probe=true")
	// Status is read after the probe, so it counts the probe's own read
	// of the cached token beside the read before.
	for k, want := range map[string]any{
		"configured": true, "client_id": testClientID, "token_cached": true,
		"mints": float64(1), "reads_from_cache": float64(2), "probe_ok": true, "probe_http_status": float64(200),
	} {
		if status.Data[k] != want {
			t.Errorf("healthy status %s = %v, want %v", k, status.Data[k], want)
		}
	}
	if manus.UserCalls() != 1 {
		t.Fatalf("the probe made %d users API calls", manus.UserCalls())
	}

	manus.DeleteClient(testClientID)
	manus.RevokeTokensOf(testClientID)
	out := v.mustVault("read", "-format=json", "manus/status", "probe=true")
	for _, secret := range append([]string{testClientSecret}, manus.Issued()...) {
		if strings.Contains(out, secret) {
			t.Fatal("status shows a secret")
		}
	}
	status.Data = nil
	if err := json.Unmarshal([]byte(out), &status); err != nil {
		t.Fatal(err)
	}
	if status.Data["probe_ok"] != false || status.Data["probe_http_status"] != float64(401) || status.Data["probe_manus_code"] != "UNAUTHENTICATED" {
		t.Fatalf("deleted credential: probe_ok=%v status=%v code=%v", status.Data["probe_ok"], status.Data["probe_http_status"], status.Data["probe_manus_code"])
	}
}

// TestStatusShowsTheLeaseOfATunedMount: with the mount's max lease TTL tuned
// below the token's life, a read gets that lease and status reports the
// same, not the plugin's own request.
func TestStatusShowsTheLeaseOfATunedMount(t *testing.T) {
	t.Parallel()
	v := startVault(t)
	manus := startManus(t)
	v.mountConfigured(manus)
	v.mustVault("secrets", "tune", "-max-lease-ttl=30s", "manus/")

	if tok := v.readSecret("manus/token"); tok.LeaseDuration != 30 {
		t.Fatalf("a read on a mount tuned to 30s got a %ds lease", tok.LeaseDuration)
	}
	var status struct {
		Data map[string]any `json:"data"`
	}
	v.vaultJSON(&status, "read", "manus/status")
	if status.Data["token_lease_ttl"] != float64(30) {
		t.Fatalf("status token_lease_ttl = %v, want the 30s a read gets", status.Data["token_lease_ttl"])
	}
}
