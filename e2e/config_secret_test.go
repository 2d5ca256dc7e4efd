//go:build e2e

package e2e

import (
	"crypto/tls"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/manus-community/vault-plugin-secrets-manus/internal/standin"
)

// TestDestinationChangeNeedsTheSecretThroughCLI: an operator who may update
// the config but does not hold the secret cannot send the stored secret to
// a host of their own, nor trust another CA with it, verified or not: the
// write answers 400 naming client_secret, a second loopback server receives
// nothing (then or on later reads), and the stored config is unchanged.
func TestDestinationChangeNeedsTheSecretThroughCLI(t *testing.T) {
	t.Parallel()
	v := startVault(t)
	manus := startManus(t)
	capture, captureURL := startCapture(t)
	v.mountConfigured(manus)
	operator := v.operatorToken()
	before := v.readSecret("manus/config").Data

	caFile := filepath.Join(t.TempDir(), "ca.pem")
	ca, err := standin.NewTestCA("a CA the operator runs")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, caFile, ca.PEM)
	for _, change := range [][]string{
		{"base_url=" + captureURL},
		{"base_url=" + captureURL, "verify_credentials=false"},
		{"base_url=" + manus.url + "/elsewhere", "verify_credentials=false"},
		{"ca_cert=@" + caFile, "verify_credentials=false"},
	} {
		out, err := v.vaultAs(operator, append([]string{"write", "manus/config"}, change...)...)
		if err == nil || !strings.Contains(out, "client_secret") || !strings.Contains(out, "Code: 400") {
			t.Errorf("write %q: %v; want a 400 naming client_secret", change, err)
		}
	}
	if after := v.readSecret("manus/config").Data; !reflect.DeepEqual(after, before) {
		t.Fatalf("a refused write changed the config:\n%v\n%v", before, after)
	}
	v.mustVault("write", "manus/config", "request_timeout=20") // verified: a mint now, from the stored secret
	v.readSecret("manus/token")
	if n := len(capture.Requests()); n != 0 {
		t.Fatalf("the loopback server an operator pointed base_url at received %d requests", n)
	}
	if manus.Mints() != 2 {
		t.Fatalf("%d mints at the configured endpoint, want 2", manus.Mints())
	}
	// Partial writes that move nothing stay partial.
	if _, err := v.vaultAs(operator, "write", "manus/config", "request_timeout=25", "refresh_threshold=15m"); err != nil {
		t.Fatalf("a write of timeouts alone was refused: %v", err)
	}
}

// rotatedSecret is the operator's new secret in the rotation tests; no
// request any capture server records may carry it.
const rotatedSecret = "r0tat3d5ecret9f8e7d6c5b4a39281706f5e4d3c2b1a0f9e8d7c6b5a4938271"

// TestPlantedBaseURLCannotCaptureARotationThroughCLI: an operator with
// update on config but not the secret plants base_url with a secret of
// their own (accepted: it carries one). The owner then rotates as before,
// client_secret alone: Vault answers 400 naming the planted token URL, and
// the capture server receives nothing of the new secret. Restated with
// base_url, the rotation goes where the owner said, and the answer says so.
func TestPlantedBaseURLCannotCaptureARotationThroughCLI(t *testing.T) {
	t.Parallel()
	v := startVault(t)
	manus := startManus(t)
	capture, captureURL := startCapture(t)
	v.mountConfigured(manus)
	manus.AddClient(testClientID, rotatedSecret)
	planter := v.operatorToken()
	if _, err := v.vaultAs(planter, "write", "manus/config", "base_url="+captureURL, "client_secret=the-planters-own", "verify_credentials=false"); err != nil {
		t.Fatalf("the planting write: %v", err)
	}

	out, err := v.vaultAs(rootToken, "write", "manus/config", "client_secret="+rotatedSecret)
	if err == nil || !strings.Contains(out, "Code: 400") || !strings.Contains(out, captureURL+"/api/user/manage/v1/oauth/token") || !strings.Contains(out, "base_url") {
		t.Fatalf("the rotation answered %v:\n%s\nwant a 400 naming the stored token URL (%s) and base_url", err, out, captureURL)
	}
	assertNoRequestCarries(t, capture.Requests(), rotatedSecret)

	out = v.mustVault("write", "manus/config", "client_secret="+rotatedSecret, "base_url="+manus.url)
	for _, want := range []string{"token_url", manus.url + "/api/user/manage/v1/oauth/token", "trusted_roots", "the system roots", "verified"} {
		if !strings.Contains(out, want) {
			t.Fatalf("the rotation's answer does not say where it was verified (%q):\n%s", want, out)
		}
	}
	v.readSecret("manus/token")
	assertNoRequestCarries(t, capture.Requests(), rotatedSecret)
}

// TestPlantedCACertCannotCaptureARotationThroughCLI: the same with a
// planted ca_cert, for whoever is on the network path: here the HTTPS proxy
// the plugin was registered with, which relays to Manus until the CA is
// planted, then presents a certificate from the planted CA and records what
// it is sent.
func TestPlantedCACertCannotCaptureARotationThroughCLI(t *testing.T) {
	t.Parallel()
	const host = "manus.test"
	legitCA, plantedCA := newTestCA(t, "the endpoint's CA"), newTestCA(t, "a CA the planter runs")
	manus := startManus(t)
	legit := httptest.NewUnstartedServer(manus.Server)
	legit.TLS = serverTLS(t, legitCA, host)
	legit.StartTLS()
	t.Cleanup(legit.Close)
	proxy, proxyURL := startProxy(t, legit.Listener.Addr().String())

	v := startVault(t)
	v.registerPlugin("HTTPS_PROXY=" + proxyURL)
	v.mount("manus")
	caFiles := t.TempDir()
	writeFile(t, filepath.Join(caFiles, "legit.pem"), legitCA.PEM)
	writeFile(t, filepath.Join(caFiles, "both.pem"), legitCA.PEM+plantedCA.PEM)
	v.mustVault("write", "manus/config", "client_id="+testClientID, "client_secret="+testClientSecret,
		"base_url=https://"+host, "ca_cert=@"+filepath.Join(caFiles, "legit.pem"))
	if manus.Mints() != 1 {
		t.Fatalf("%d mints through the relaying proxy, want 1", manus.Mints())
	}
	manus.AddClient(testClientID, rotatedSecret) // the owner rotates in Manus
	planter := v.operatorToken()
	if _, err := v.vaultAs(planter, "write", "manus/config", "base_url=https://"+host, "ca_cert=@"+filepath.Join(caFiles, "both.pem"),
		"client_secret=the-planters-own", "verify_credentials=false"); err != nil {
		t.Fatalf("the planting write: %v", err)
	}
	proxy.Intercept(serverTLS(t, plantedCA, host))

	for _, rotation := range [][]string{{"client_secret=" + rotatedSecret}, {"client_secret=" + rotatedSecret, "base_url=https://" + host}} {
		out, err := v.vaultAs(rootToken, append([]string{"write", "manus/config"}, rotation...)...)
		if err == nil || !strings.Contains(out, "Code: 400") || !strings.Contains(out, "ca_cert") || !strings.Contains(out, "a CA the planter runs") {
			t.Fatalf("the rotation %q answered %v:\n%s\nwant a 400 naming ca_cert and its certificates", rotation, err, out)
		}
	}
	assertNoRequestCarries(t, proxy.Captured.Requests(), rotatedSecret)
}

// TestRegistrationRestrictsBaseURLThroughCLI: whoever registers the plugin
// can allow only some base URLs (-env MANUS_ALLOWED_BASE_URLS=...); a config
// writer cannot point the secret anywhere else, with or without it.
func TestRegistrationRestrictsBaseURLThroughCLI(t *testing.T) {
	t.Parallel()
	v := startVault(t)
	manus := startManus(t)
	capture, captureURL := startCapture(t)
	v.registerPlugin("MANUS_ALLOWED_BASE_URLS=https://api.manus.im " + manus.url)
	v.mount("manus")
	v.configure("manus", manus)
	out, err := v.vaultAs(rootToken, "write", "manus/config", "base_url="+captureURL, "client_secret="+testClientSecret)
	if err == nil || !strings.Contains(out, "Code: 400") || !strings.Contains(out, "MANUS_ALLOWED_BASE_URLS") {
		t.Fatalf("a write outside the allowed base URLs answered %v:\n%s", err, out)
	}
	if n := len(capture.Requests()); n != 0 {
		t.Fatalf("the disallowed destination received %d requests", n)
	}
	v.readSecret("manus/token")
}

// startCapture runs a host the plugin must send nothing (of a secret) to.
func startCapture(t *testing.T) (*standin.Recorder, string) {
	t.Helper()
	capture := &standin.Recorder{}
	server := httptest.NewServer(capture)
	t.Cleanup(server.Close)
	return capture, server.URL
}

// operatorToken is a token with the documented operator policy.
func (v *vaultServer) operatorToken() string {
	v.t.Helper()
	v.mustVault("policy", "write", "manus-operator", filepath.Join(repoRoot, "docs", "policies", "manus-operator.hcl"))
	return v.tokenWithPolicy("manus-operator")
}

func assertNoRequestCarries(t *testing.T, requests []string, secret string) {
	t.Helper()
	for _, r := range requests {
		if strings.Contains(r, secret) {
			t.Fatalf("the rotated secret reached a destination its writer did not confirm: %.100q", r)
		}
	}
}

func newTestCA(t *testing.T, name string) *standin.TestCA {
	t.Helper()
	ca, err := standin.NewTestCA(name)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func serverTLS(t *testing.T, ca *standin.TestCA, hosts ...string) *tls.Config {
	t.Helper()
	config, err := ca.ServerConfig(hosts...)
	if err != nil {
		t.Fatal(err)
	}
	return config
}

// startProxy runs a standin.Proxy to target on loopback and returns it and
// its URL.
func startProxy(t *testing.T, target string) (*standin.Proxy, string) {
	t.Helper()
	p := standin.NewProxy(target)
	server := httptest.NewServer(p)
	t.Cleanup(server.Close)
	return p, server.URL
}
