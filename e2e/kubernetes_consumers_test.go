//go:build e2e

package e2e

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// vsoStaticCredsIgnored are the fields the Vault Secrets Operator leaves
// out when it decides whether a non-leased ("static creds") secret changed
// (VSO v1.4.1, controllers/vaultdynamicsecret_controller.go, syncSecret):
// any other field that differs makes it rewrite the Kubernetes Secret and
// restart the rollout targets.
var vsoStaticCredsIgnored = []string{"ttl", "rotation_schedule", "rotation_period", "last_vault_rotation", "_raw"}

// TestKubernetesConsumersSeeOneSecretPerToken reads the same token twice,
// a second apart, in each read mode, and builds from each response the data
// VSO hashes for a VaultDynamicSecret with the recipe's
// transformation.excludes (taken from docs/kubernetes.md): the two hashes
// must be equal, so a re-read of the same token rewrites no Secret and
// restarts nothing. Without the exclusion they must differ (expires_in
// counts down), which is what makes the exclusion necessary and this test
// able to fail.
func TestKubernetesConsumersSeeOneSecretPerToken(t *testing.T) {
	excludes := recipeExcludes(t)
	for _, mode := range []struct {
		name   string
		leased bool
	}{{"leased", true}, {"non-leased", false}} {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			v := startVault(t)
			manus := startManus(t)
			v.mountConfigured(manus, "verify_credentials=false", fmt.Sprintf("leased_reads=%t", mode.leased))

			first := v.readForVSO(t, "manus/token")
			time.Sleep(1100 * time.Millisecond) // expires_in moves on by a second or two
			second := v.readForVSO(t, "manus/token")
			if first.Data["access_token"] != second.Data["access_token"] || manus.Mints() != 1 {
				t.Fatalf("two reads a second apart got different tokens or minted %d times; the test needs one token", manus.Mints())
			}
			if first.Data["expires_in"] == second.Data["expires_in"] {
				t.Fatalf("expires_in did not move (%v): the reads cannot show what the exclusion is for", first.Data["expires_in"])
			}
			if mode.leased {
				// VSO re-reads a non-renewable lease at renewalPercent.
				if first.LeaseID == "" || first.Renewable {
					t.Fatalf("leased read: lease %q renewable %t, want a non-renewable lease", first.LeaseID, first.Renewable)
				}
			} else {
				checkVSOStaticCreds(t, first)
			}

			key := make([]byte, 32)
			if _, err := rand.Read(key); err != nil {
				t.Fatal(err)
			}
			withRecipe := func(r vsoRead) []byte { return vsoMAC(t, key, r.Data, excludes) }
			if !hmac.Equal(withRecipe(first), withRecipe(second)) {
				t.Fatalf("with excludes %q, two reads of the same token hash differently:\n%v\n%v", excludes, redactToken(first.Data), redactToken(second.Data))
			}
			withoutRecipe := func(r vsoRead) []byte { return vsoMAC(t, key, r.Data, nil) }
			if hmac.Equal(withoutRecipe(first), withoutRecipe(second)) {
				t.Fatal("without the exclusion the two reads hash equally: the recipe's exclusion would not be needed, and this test could not fail")
			}
			// The recipe keeps everything a consumer needs.
			kept := vsoSecretData(t, first.Data, excludes)
			for _, field := range []string{"access_token", "token_type", "expires_at"} {
				if _, ok := kept[field]; !ok {
					t.Errorf("the recipe's Secret lacks %s", field)
				}
			}
		})
	}
}

// vsoRead is a read decoded as the Vault API client VSO uses decodes it:
// numbers as json.Number.
type vsoRead struct {
	LeaseID   string         `json:"lease_id"`
	Renewable bool           `json:"renewable"`
	Data      map[string]any `json:"data"`
}

func (v *vaultServer) readForVSO(t *testing.T, path string) vsoRead {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, v.addr+"/v1/"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Vault-Token", v.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: HTTP %d", path, resp.StatusCode)
	}
	dec := json.NewDecoder(resp.Body)
	dec.UseNumber()
	var out vsoRead
	if err := dec.Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkVSOStaticCreds checks what VSO needs to treat a non-leased read as
// static credentials (vaultStaticCredsMetaDataFromData, isStaticCreds):
// last_vault_rotation in RFC 3339, rotation_period and ttl JSON integers,
// rotation_period at least 1 and ttl at least 1 (VSO re-reads at ttl+0.5s).
func checkVSOStaticCreds(t *testing.T, r vsoRead) {
	t.Helper()
	if r.LeaseID != "" {
		t.Fatalf("non-leased read has lease %q", r.LeaseID)
	}
	if s, ok := r.Data["last_vault_rotation"].(string); !ok {
		t.Fatalf("last_vault_rotation %#v is not a string", r.Data["last_vault_rotation"])
	} else if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
		t.Fatalf("last_vault_rotation: %v", err)
	}
	for _, field := range []string{"rotation_period", "ttl"} {
		n, ok := r.Data[field].(json.Number)
		if !ok {
			t.Fatalf("%s %#v is not a JSON number", field, r.Data[field])
		}
		if i, err := n.Int64(); err != nil || i < 1 {
			t.Fatalf("%s %v: want an integer of at least 1 (%v)", field, n, err)
		}
	}
}

// vsoSecretData builds the Kubernetes Secret data as VSO does for a
// VaultDynamicSecret with transformation.excludes and no templates
// (helpers.SecretDataBuilder.WithVaultData): excluded fields (Go regular
// expressions, unanchored, matched against the field name) are dropped,
// strings are kept as they are and everything else JSON-encoded, and _raw
// holds the whole response data as JSON.
func vsoSecretData(t *testing.T, data map[string]any, excludes []string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for k, v := range data {
		if slices.ContainsFunc(excludes, func(pat string) bool { return regexp.MustCompile(pat).MatchString(k) }) {
			continue
		}
		if s, ok := v.(string); ok {
			out[k] = []byte(s)
			continue
		}
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		out[k] = b
	}
	raw, err := json.Marshal(data)
	if err != nil {
		t.Fatal(err)
	}
	out["_raw"] = raw
	return out
}

// vsoMAC is the HMAC VSO compares between syncs of static credentials: of
// the Secret data less the fields it ignores.
func vsoMAC(t *testing.T, key []byte, data map[string]any, excludes []string) []byte {
	t.Helper()
	toMAC := maps.Clone(vsoSecretData(t, data, excludes))
	for _, k := range vsoStaticCredsIgnored {
		delete(toMAC, k)
	}
	message, err := json.Marshal(toMAC)
	if err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write(message)
	return mac.Sum(nil)
}

// recipeExcludes reads transformation.excludes from the VaultDynamicSecret
// recipes in docs/kubernetes.md: one list per read mode, the same in both.
func recipeExcludes(t *testing.T) []string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join(repoRoot, "docs", "kubernetes.md"))
	if err != nil {
		t.Fatal(err)
	}
	lists := regexp.MustCompile(`(?m)^\s*excludes:\s*\n((?:\s*- .*\n)+)`).FindAllSubmatch(doc, -1)
	if len(lists) != 2 {
		t.Fatalf("docs/kubernetes.md has %d transformation.excludes lists, want 2 (leased and non-leased)", len(lists))
	}
	var excludes []string
	for _, line := range strings.Split(strings.TrimSpace(string(lists[0][1])), "\n") {
		item := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "- "))
		excludes = append(excludes, strings.Trim(item, `"'`))
	}
	if !bytes.Equal(lists[0][1], lists[1][1]) {
		t.Fatalf("the two recipes exclude different fields:\n%s\n%s", lists[0][1], lists[1][1])
	}
	return excludes
}

// redactToken copies data with the access token replaced, for messages.
func redactToken(data map[string]any) map[string]any {
	out := maps.Clone(data)
	out["access_token"] = "<redacted>"
	return out
}
