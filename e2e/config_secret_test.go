//go:build e2e

package e2e

import (
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
	capture := &standin.Recorder{}
	captureServer := httptest.NewServer(capture)
	t.Cleanup(captureServer.Close)
	v.mountConfigured(manus)
	v.mustVault("policy", "write", "manus-operator", filepath.Join(repoRoot, "docs", "policies", "manus-operator.hcl"))
	operator := v.tokenWithPolicy("manus-operator")
	before := v.readSecret("manus/config").Data

	caFile := filepath.Join(t.TempDir(), "ca.pem")
	ca, err := standin.NewTestCA("a CA the operator runs")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, caFile, ca.PEM)
	for _, change := range [][]string{
		{"base_url=" + captureServer.URL},
		{"base_url=" + captureServer.URL, "verify_credentials=false"},
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
	v.mustVault("write", "-f", "manus/token/refresh") // a mint now, from the stored config
	v.readSecret("manus/token")
	if n := len(capture.Requests()); n != 0 {
		t.Fatalf("the loopback server an operator pointed base_url at received %d requests", n)
	}
	if manus.Mints() != 2 {
		t.Fatalf("%d mints at the configured endpoint, want 2", manus.Mints())
	}
	// Partial writes that move nothing stay partial.
	if _, err := v.vaultAs(operator, "write", "manus/config", "request_timeout=20", "refresh_threshold=15m"); err != nil {
		t.Fatalf("a write of timeouts alone was refused: %v", err)
	}
}
