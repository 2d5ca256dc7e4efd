package manus

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/manus-community/vault-plugin-secrets-manus/internal/standin"
)

func TestConfigReadNeverReturnsSecret(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)

	resp, err := e.request(logical.ReadOperation, "config", nil)
	requireOK(t, resp, err)
	want := map[string]any{
		"client_id":         testClientID,
		"base_url":          e.baseURL,
		"request_timeout":   int64(10),
		"ca_cert":           "",
		"refresh_threshold": int64(600),
		"leased_reads":      true,
	}
	if !reflect.DeepEqual(resp.Data, want) {
		t.Fatalf("config read = %#v, want %#v", resp.Data, want)
	}
	assertNoSecretIn(t, resp)
}

func TestConfigReadOnUnconfiguredMountIsEmpty(t *testing.T) {
	e := newTestEnv(t)
	resp, err := e.request(logical.ReadOperation, "config", nil)
	if err != nil || resp != nil {
		t.Fatalf("got %#v, %v; want no response (404)", resp, err)
	}
}

func TestConfigDefaults(t *testing.T) {
	e := newTestEnv(t)
	resp, err := e.writeConfig(map[string]any{
		"client_id":          testClientID,
		"client_secret":      testClientSecret,
		"verify_credentials": false,
	})
	requireOK(t, resp, err)
	cfg, _ := readConfig(context.Background(), e.storage)
	if cfg.BaseURL != "https://api.manus.im" || cfg.RequestTimeout != 10*time.Second || cfg.RefreshThreshold != 10*time.Minute {
		t.Fatalf("defaults not applied: %+v", cfg)
	}
	client, err := newManusClient(cfg, time.Now, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	if got := client.tokenURL; got != "https://api.manus.im/api/user/manage/v1/oauth/token" {
		t.Fatalf("token URL = %q", got)
	}
}

func TestConfigWriteVerifiesAndCachesToken(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	if e.manus.Mints() != 1 {
		t.Fatalf("config write made %d mints, want 1 (verification)", e.manus.Mints())
	}
	if tok := accessTokenOf(e.mustReadToken()); tok != e.manus.Issued()[0] {
		t.Fatal("the first read did not reuse the token minted by verification")
	}
	if e.manus.Mints() != 1 {
		t.Fatalf("mints = %d after the first read, want 1", e.manus.Mints())
	}
}

func TestConfigWriteWithoutVerificationDoesNotCallManus(t *testing.T) {
	e := newTestEnv(t)
	resp, err := e.writeConfig(map[string]any{
		"client_id":          testClientID,
		"client_secret":      "not-checked-yet",
		"base_url":           "https://manus.invalid",
		"verify_credentials": false,
	})
	requireOK(t, resp, err)
	if e.manus.Requests() != 0 {
		t.Fatal("verify_credentials=false still called Manus")
	}
	if cfg, _ := readConfig(context.Background(), e.storage); cfg == nil || cfg.ClientSecret != "not-checked-yet" {
		t.Fatal("the config was not stored")
	}
	resp, err = e.request(logical.ReadOperation, "config", nil)
	requireOK(t, resp, err)
	if _, ok := resp.Data["verify_credentials"]; ok {
		t.Fatal("verify_credentials was stored; it is a per-write flag")
	}
}

func TestFailedVerificationStoresNothing(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	before, _ := readConfig(context.Background(), e.storage)

	resp, err := e.writeConfig(map[string]any{"client_secret": "wrong-secret-value", "base_url": e.baseURL})
	status, msg := failureOf(t, resp, err)
	if status != http.StatusBadRequest || !strings.Contains(msg, "INVALID_CLIENT") || !strings.Contains(msg, "nothing was stored") {
		t.Fatalf("got %d %q; want a 400 carrying INVALID_CLIENT that says nothing was stored", status, msg)
	}
	if strings.Contains(msg, "wrong-secret-value") {
		t.Fatal("the rejected secret was echoed in the error")
	}
	after, _ := readConfig(context.Background(), e.storage)
	if !reflect.DeepEqual(before, after) {
		t.Fatalf("stored config changed after a failed verification: %+v -> %+v", before, after)
	}
	// The cached token from the good config is still served.
	if accessTokenOf(e.mustReadToken()) != e.manus.Issued()[0] {
		t.Fatal("a failed config write dropped the cached token")
	}
}

func TestFailedVerificationOfNewMountStoresNothing(t *testing.T) {
	e := newTestEnv(t)
	e.manus.DeleteClient(testClientID)
	resp, err := e.writeConfig(e.validConfig())
	if _, msg := failureOf(t, resp, err); !strings.Contains(msg, "INVALID_CLIENT") {
		t.Fatalf("message %q lacks the Manus code", msg)
	}
	if cfg, _ := readConfig(context.Background(), e.storage); cfg != nil {
		t.Fatal("a config that failed verification was stored")
	}
}

func TestVerificationTimeoutIsGatewayTimeout(t *testing.T) {
	e := newTestEnv(t)
	e.manus.SetOutage(stall(5 * time.Second))
	data := e.validConfig()
	data["request_timeout"] = "1s"
	resp, err := e.writeConfig(data)
	status, msg := failureOf(t, resp, err)
	if status != http.StatusGatewayTimeout || !strings.Contains(msg, "request_timeout") {
		t.Fatalf("got %d %q; want 504 naming request_timeout", status, msg)
	}
}

func TestPartialUpdateKeepsOtherFields(t *testing.T) {
	e := newTestEnv(t)
	e.configure(map[string]any{"refresh_threshold": "15m", "request_timeout": 20, "leased_reads": false})

	// The same stand-in on another port: only base_url changes.
	other := httptest.NewServer(e.manus)
	t.Cleanup(other.Close)
	newURL := other.URL
	resp, err := e.writeConfig(map[string]any{"base_url": newURL + "/", "client_secret": testClientSecret})
	requireOK(t, resp, err) // verification mints with the kept secret
	cfg, _ := readConfig(context.Background(), e.storage)
	want := &manusConfig{
		ClientID:         testClientID,
		ClientSecret:     testClientSecret,
		BaseURL:          newURL,
		RequestTimeout:   20 * time.Second,
		RefreshThreshold: 15 * time.Minute,
		LeasedReads:      false,
		Generation:       cfg.Generation, // new on every write
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("after a base_url-only update config = %+v, want %+v", cfg, want)
	}
}

func TestConfigChangeDropsCachedToken(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	first := accessTokenOf(e.mustReadToken())

	e.manus.AddClient("tm_second", "second-secret")
	resp, err := e.writeConfig(map[string]any{"client_id": "tm_second", "client_secret": "second-secret", "base_url": e.baseURL, "verify_credentials": false})
	requireOK(t, resp, err)
	second := accessTokenOf(e.mustReadToken())
	if second == first || e.manus.Mints() != 2 {
		t.Fatalf("the token from the old credentials survived a config change (mints=%d)", e.manus.Mints())
	}
}

func TestConfigDeleteDropsTokenAndConfig(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.mustReadToken()
	resp, err := e.request(logical.DeleteOperation, "config", nil)
	requireOK(t, resp, err)
	if cfg, _ := readConfig(context.Background(), e.storage); cfg != nil {
		t.Fatal("config survived delete")
	}
	if status, _ := e.readTokenError(); status != http.StatusBadRequest {
		t.Fatalf("token read after config delete gave %d, want 400 (not configured)", status)
	}
}

func TestClientIDWithoutPrefixWarns(t *testing.T) {
	e := newTestEnv(t)
	e.manus.AddClient("legacy-id", testClientSecret)
	resp, err := e.writeConfig(map[string]any{"client_id": "legacy-id", "client_secret": testClientSecret, "base_url": e.baseURL})
	requireOK(t, resp, err)
	if resp == nil || len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], `"tm_"`) {
		t.Fatalf("want one warning about the tm_ prefix, got %#v", resp)
	}
	if cfg, _ := readConfig(context.Background(), e.storage); cfg == nil {
		t.Fatal("a client_id without the prefix was refused; it should only warn")
	}
}

func TestBadConfigInputIsRefusedAndKeepsStoredConfig(t *testing.T) {
	caPEM := testCertificatePEM(t)
	cases := []struct {
		name      string
		data      map[string]any
		wantField string
	}{
		{"empty client_id", map[string]any{"client_id": ""}, "client_id"},
		{"client_id with whitespace", map[string]any{"client_id": " tm_x"}, "client_id"},
		{"empty client_secret", map[string]any{"client_secret": ""}, "client_secret"},
		{"client_secret with newline", map[string]any{"client_secret": testClientSecret + "\n"}, "client_secret"},
		{"http to a remote host", map[string]any{"base_url": "http://api.manus.im"}, "base_url"},
		{"http to localhost by name", map[string]any{"base_url": "http://localhost:8080", "client_secret": testClientSecret}, "invalid base_url: must use https; plain http is allowed only for a loopback IP address"},
		{"http to LOCALHOST by name", map[string]any{"base_url": "http://LOCALHOST", "client_secret": testClientSecret}, "invalid base_url: must use https; plain http is allowed only for a loopback IP address"},
		{"unsupported scheme", map[string]any{"base_url": "ftp://api.manus.im"}, "base_url"},
		{"relative URL", map[string]any{"base_url": "api.manus.im"}, "base_url"},
		{"URL with query", map[string]any{"base_url": "https://api.manus.im/?a=b"}, "base_url"},
		{"URL with fragment", map[string]any{"base_url": "https://api.manus.im/#frag"}, "base_url"},
		{"URL with user info", map[string]any{"base_url": "https://user:pw@api.manus.im"}, "base_url"},
		{"timeout too small", map[string]any{"request_timeout": 0}, "request_timeout"},
		{"timeout too large", map[string]any{"request_timeout": "5m"}, "request_timeout"},
		{"timeout not a duration", map[string]any{"request_timeout": "soon"}, "request_timeout"},
		{"timeout with a fraction", map[string]any{"request_timeout": "1.5s"}, "invalid request_timeout: must be a whole number of seconds, got 1.5s"},
		{"timeout in milliseconds", map[string]any{"request_timeout": "500ms"}, "invalid request_timeout: must be a whole number of seconds, got 500ms"},
		{"timeout as a fractional number", map[string]any{"request_timeout": 2.5}, "invalid request_timeout: must be a whole number of seconds"},
		{"threshold with a fraction", map[string]any{"refresh_threshold": "90.5s"}, "invalid refresh_threshold: must be a whole number of seconds"},
		{"threshold too small", map[string]any{"refresh_threshold": 0}, "refresh_threshold"},
		{"threshold too large", map[string]any{"refresh_threshold": "13h"}, "refresh_threshold"},
		{"CA not PEM", map[string]any{"ca_cert": "not a certificate"}, "ca_cert"},
		{"CA truncated", map[string]any{"ca_cert": caPEM[:len(caPEM)/2]}, "ca_cert"},
		{"CA is a key", map[string]any{"ca_cert": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}, "ca_cert"},
		{"CA garbage DER", map[string]any{"ca_cert": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}, "ca_cert"},
		{"unknown field", map[string]any{"client_sercet": "typo"}, "client_sercet"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t)
			e.configure(nil)
			before, _ := readConfig(context.Background(), e.storage)
			mintsBefore := e.manus.Requests()

			resp, err := e.writeConfig(tc.data)
			status, msg := failureOf(t, resp, err)
			if status != http.StatusBadRequest || !strings.Contains(msg, tc.wantField) {
				t.Fatalf("got %d %q; want a 400 naming %s", status, msg, tc.wantField)
			}
			after, _ := readConfig(context.Background(), e.storage)
			if !reflect.DeepEqual(before, after) {
				t.Fatalf("bad input changed the stored config: %+v -> %+v", before, after)
			}
			if e.manus.Requests() != mintsBefore {
				t.Fatal("bad input still called Manus")
			}
		})
	}
}

func TestCreateRequiresCredentials(t *testing.T) {
	for _, missing := range []string{"client_id", "client_secret"} {
		t.Run(missing, func(t *testing.T) {
			e := newTestEnv(t)
			data := e.validConfig()
			delete(data, missing)
			resp, err := e.writeConfig(data)
			if status, msg := failureOf(t, resp, err); status != http.StatusBadRequest || !strings.Contains(msg, missing) {
				t.Fatalf("got %d %q; want a 400 naming %s", status, msg, missing)
			}
		})
	}
}

func TestLoopbackHTTPBaseURLsAreAccepted(t *testing.T) {
	for _, u := range []string{"http://127.0.0.1:8080", "http://127.10.0.1", "http://[::1]:9000/prefix", "https://api.manus.im", "https://proxy.example.com/manus"} {
		if err := validateBaseURL(u); err != nil {
			t.Errorf("validateBaseURL(%q) = %v, want accepted", u, err)
		}
	}
}

func TestCACertIsAcceptedAndReturned(t *testing.T) {
	e := newTestEnv(t)
	caPEM := testCertificatePEM(t)
	e.configure(map[string]any{"ca_cert": caPEM})
	resp, err := e.request(logical.ReadOperation, "config", nil)
	requireOK(t, resp, err)
	if resp.Data["ca_cert"] != caPEM {
		t.Fatal("ca_cert was not stored as written")
	}
	// An empty string removes it.
	resp, err = e.writeConfig(map[string]any{"ca_cert": "", "client_secret": testClientSecret, "base_url": e.baseURL})
	requireOK(t, resp, err)
	if cfg, _ := readConfig(context.Background(), e.storage); cfg.CACert != "" {
		t.Fatal("ca_cert was not removed")
	}
}

func TestStorageFailureLeavesConfigUntouched(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	before, _ := readConfig(context.Background(), e.storage)
	e.storage.(*logical.InmemStorage).Underlying().FailPut(true)
	resp, err := e.writeConfig(map[string]any{"refresh_threshold": "20m"})
	e.storage.(*logical.InmemStorage).Underlying().FailPut(false)
	if err == nil && (resp == nil || !resp.IsError()) {
		t.Fatal("a storage failure was reported as success")
	}
	after, _ := readConfig(context.Background(), e.storage)
	if !reflect.DeepEqual(before, after) {
		t.Fatal("a failed write changed the stored config")
	}
	if accessTokenOf(e.mustReadToken()) != e.manus.Issued()[0] {
		t.Fatal("a failed write replaced the cached token")
	}
}

// assertNoSecretIn fails if a response carries the client secret anywhere.
func assertNoSecretIn(t *testing.T, resp *logical.Response) {
	t.Helper()
	if resp == nil {
		return
	}
	for k, v := range resp.Data {
		if s, ok := v.(string); ok && strings.Contains(s, testClientSecret) {
			t.Fatalf("response field %s carries the client secret", k)
		}
	}
	for _, w := range resp.Warnings {
		if strings.Contains(w, testClientSecret) {
			t.Fatal("a warning carries the client secret")
		}
	}
}

// testCertificatePEM returns a self-signed CA certificate.
func testCertificatePEM(t testing.TB) string {
	t.Helper()
	ca, err := standin.NewTestCA("test proxy CA")
	if err != nil {
		t.Fatal(err)
	}
	return ca.PEM
}

func TestSlowVerificationDoesNotBlockReads(t *testing.T) {
	e := newTestEnv(t)
	e.configure(map[string]any{"verify_credentials": false})
	e.b.Clean(context.Background()) // as after a plugin reload: nothing loaded
	e.b = e.newBackend()            // the read must load the cache
	e.manus.FailNext(stall(2 * time.Second))

	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = e.writeConfig(map[string]any{"request_timeout": 5}) // verifies, slowly
	}()
	time.Sleep(100 * time.Millisecond)
	started := time.Now()
	e.mustReadToken()
	if took := time.Since(started); took > time.Second { // the verification takes 2s
		t.Fatalf("a read waited %s for a config write's verification", took)
	}
	<-done
}

func TestConcurrentConfigWriteIsRefusedNotLost(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.manus.FailNext(stall(500 * time.Millisecond)) // the first write's verification

	first := make(chan error, 1)
	go func() {
		resp, err := e.writeConfig(map[string]any{"request_timeout": 7})
		if err == nil && resp != nil && resp.IsError() {
			err = resp.Error()
		}
		first <- err
	}()
	time.Sleep(100 * time.Millisecond)
	resp, err := e.writeConfig(map[string]any{"request_timeout": 9})
	requireOK(t, resp, err)
	if err := <-first; err == nil || !strings.Contains(err.Error(), "another write changed") {
		t.Fatalf("the slower write: %v; want it refused", err)
	}
	if cfg, _ := readConfig(context.Background(), e.storage); cfg.RequestTimeout != 9*time.Second {
		t.Fatalf("stored request_timeout = %s; the later, completed write must win", cfg.RequestTimeout)
	}
}

func TestSecretWrittenAsClientIDIsNotLogged(t *testing.T) {
	e := newTestEnv(t)
	// The cleanup check fails the test if the secret reaches the log.
	resp, err := e.writeConfig(map[string]any{"client_id": testClientSecret, "client_secret": testClientSecret, "base_url": e.baseURL})
	if _, msg := failureOf(t, resp, err); strings.Contains(msg, testClientSecret) {
		t.Fatal("the error quotes the secret written as client_id")
	}
	resp, err = e.writeConfig(map[string]any{"client_id": testClientSecret, "client_secret": testClientSecret, "base_url": e.baseURL, "verify_credentials": false})
	requireOK(t, resp, err)
	for _, w := range resp.Warnings {
		if strings.Contains(w, testClientSecret) {
			t.Fatal("the prefix warning quotes the secret written as client_id")
		}
	}
	e.readTokenError()
	if !strings.Contains(e.logs.String(), "withheld") {
		t.Fatal("the log lines do not show the withheld client_id; the check would prove nothing")
	}
}

// newCaptureServer is a loopback host a config write could point the
// plugin at; it records whatever reaches it.
func newCaptureServer(t *testing.T) (*standin.Recorder, string) {
	t.Helper()
	recorder := &standin.Recorder{}
	server := httptest.NewServer(recorder)
	t.Cleanup(server.Close)
	return recorder, server.URL
}

// TestDestinationChangeNeedsTheSecret: a write that changes where the
// stored secret goes (base_url, any part of it) or whom the plugin trusts
// with it (ca_cert) must carry client_secret. Without it: a 400 naming
// client_secret, nothing sent to the new destination (verified or not, then
// or on a later read), nothing stored. Other partial writes stay partial.
func TestDestinationChangeNeedsTheSecret(t *testing.T) {
	capture, captureURL := newCaptureServer(t)
	otherCA := testCertificatePEM(t)
	for name, change := range map[string]map[string]any{
		"another host":                {"base_url": captureURL},
		"another path":                {"base_url": captureURL + "/proxy"},
		"another CA":                  {"ca_cert": otherCA},
		"another host, verified":      {"base_url": captureURL, "verify_credentials": true},
		"host and an unrelated field": {"base_url": captureURL, "request_timeout": 20},
	} {
		t.Run(name, func(t *testing.T) {
			e := newTestEnv(t)
			e.configure(nil)
			stored, _ := readConfig(context.Background(), e.storage)
			if _, ok := change["verify_credentials"]; !ok {
				change["verify_credentials"] = false
			}
			resp, err := e.writeConfig(change)
			status, msg := failureOf(t, resp, err)
			if status != http.StatusBadRequest || !strings.Contains(msg, "client_secret") {
				t.Fatalf("got %d %q; want a 400 naming client_secret", status, msg)
			}
			if now, _ := readConfig(context.Background(), e.storage); *now != *stored {
				t.Fatal("the refused write changed the stored config")
			}
			e.clock.Advance(55 * time.Minute) // the next read mints
			e.mustReadToken()
			if got := capture.Requests(); len(got) != 0 {
				t.Fatalf("the other destination received %d requests: the stored secret left for it", len(got))
			}
		})
	}

	// With the secret, the writer sends their own secret where they like.
	e := newTestEnv(t)
	e.configure(nil)
	resp, err := e.writeConfig(map[string]any{"base_url": e.baseURL + "/", "client_secret": testClientSecret, "ca_cert": otherCA})
	requireOK(t, resp, err)
	// And writes that move nothing need no secret.
	resp, err = e.writeConfig(map[string]any{"request_timeout": 20, "refresh_threshold": 300, "leased_reads": false})
	requireOK(t, resp, err)
}

// TestConcurrentReadModeWriteIsNotLost: a write that changes only
// leased_reads, stored while another write is being verified, is seen by
// that write's conflict check, in both directions.
func TestConcurrentReadModeWriteIsNotLost(t *testing.T) {
	for _, from := range []bool{true, false} {
		t.Run(fmt.Sprintf("from leased_reads=%v", from), func(t *testing.T) {
			e := newTestEnv(t)
			e.configure(map[string]any{"leased_reads": from})
			e.manus.FailNext(stall(500 * time.Millisecond)) // the slow write's verification
			slow := make(chan error, 1)
			go func() {
				resp, err := e.writeConfig(map[string]any{"request_timeout": 7})
				if err == nil && resp != nil && resp.IsError() {
					err = resp.Error()
				}
				slow <- err
			}()
			time.Sleep(100 * time.Millisecond)
			resp, err := e.writeConfig(map[string]any{"leased_reads": !from})
			requireOK(t, resp, err)
			slowErr := <-slow
			cfg, _ := readConfig(context.Background(), e.storage)
			if slowErr == nil && cfg.LeasedReads != !from {
				t.Fatalf("both writes answered success but leased_reads is %v: the read-mode write was lost", cfg.LeasedReads)
			}
			if slowErr != nil && !strings.Contains(slowErr.Error(), "another write changed") {
				t.Fatalf("the slow write failed for another reason: %v", slowErr)
			}
			if resp := e.mustReadToken(); (resp.Secret != nil) != cfg.LeasedReads {
				t.Fatal("reads do not answer in the stored read mode")
			}
		})
	}
}

// TestCACertHoldsOnlyBoundedCertificates: ca_cert takes PEM CERTIFICATE
// blocks only, within its size and count bounds; text around the blocks (a
// pasted private key, a note) is refused, so it is never stored or shown.
func TestCACertHoldsOnlyBoundedCertificates(t *testing.T) {
	ca := testCertificatePEM(t)
	key := "MC4CAQAwBQYDK2VwBCIEIAn0tPrivateKeyMaterialNotToBeStored0123456"
	for name, value := range map[string]string{
		"a key pasted before":   key + "\n" + ca,
		"a key pasted after":    ca + key + "\n",
		"a note between blocks": ca + "subject=CN=proxy\n" + ca,
		"too large":             strings.Repeat(ca, (maxCACertBytes/len(ca))+1),
		"too many":              strings.Repeat(ca, maxCACertificates+1),
	} {
		t.Run(name, func(t *testing.T) {
			e := newTestEnv(t)
			e.configure(nil)
			resp, err := e.writeConfig(map[string]any{"ca_cert": value, "client_secret": testClientSecret, "verify_credentials": false})
			status, msg := failureOf(t, resp, err)
			if status != http.StatusBadRequest || !strings.Contains(msg, "ca_cert") || strings.Contains(msg, key) {
				t.Fatalf("got %d %q; want a 400 naming ca_cert, without the text", status, msg)
			}
			if cfg, _ := readConfig(context.Background(), e.storage); cfg.CACert != "" {
				t.Fatal("a refused ca_cert was stored")
			}
		})
	}
	// The bounds themselves are accepted, and read back as certificates.
	e := newTestEnv(t)
	e.configure(map[string]any{"ca_cert": strings.Repeat(ca, min(maxCACertificates, maxCACertBytes/len(ca)))})
	resp, err := e.request(logical.ReadOperation, "config", nil)
	requireOK(t, resp, err)
	if !strings.HasPrefix(resp.Data["ca_cert"].(string), "-----BEGIN CERTIFICATE-----") {
		t.Fatal("the stored ca_cert does not read back as certificates")
	}
}

// TestCacheBuildDoesNotHoldTheBackendLock: a cold read building the cache
// (reading storage, parsing ca_cert) does not keep Invalidate, which Vault
// calls with a time limit, waiting.
func TestCacheBuildDoesNotHoldTheBackendLock(t *testing.T) {
	e := newTestEnv(t)
	gate := e.coldBackendOnGatedStorage()
	read := make(chan struct{})
	go func() {
		defer close(read)
		_, _ = e.request(logical.ReadOperation, "token", nil)
	}()
	<-gate.entered // the build is reading the config
	invalidated := make(chan struct{})
	go func() {
		e.b.InvalidateKey(context.Background(), configStorageKey)
		close(invalidated)
	}()
	select {
	case <-invalidated:
	case <-time.After(2 * time.Second):
		t.Error("Invalidate waited for a cache build")
	}
	close(gate.release)
	<-read
	<-invalidated
}

// coldBackendOnGatedStorage configures the mount (unverified) and replaces
// its backend with a cold one on storage whose first config read waits for
// the gate.
func (e *testEnv) coldBackendOnGatedStorage() *gatedStorage {
	e.t.Helper()
	e.configure(map[string]any{"verify_credentials": false})
	gate := &gatedStorage{Storage: e.storage, entered: make(chan struct{}), release: make(chan struct{})}
	e.storage = gate
	e.b.Clean(context.Background())
	e.b = e.newBackend()
	return gate
}

// gatedStorage holds the first read of the config until released.
type gatedStorage struct {
	logical.Storage
	once    sync.Once
	entered chan struct{}
	release chan struct{}
}

func (g *gatedStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	if key == configStorageKey {
		g.once.Do(func() {
			close(g.entered)
			<-g.release
		})
	}
	return g.Storage.Get(ctx, key)
}

// TestSuspectClientIDIsWithheldFromReads: a client_id the plugin keeps out
// of its logs because it may be a pasted secret is kept out of config and
// status reads too.
func TestSuspectClientIDIsWithheldFromReads(t *testing.T) {
	e := newTestEnv(t)
	resp, err := e.writeConfig(map[string]any{"client_id": testClientSecret, "client_secret": testClientSecret, "base_url": e.baseURL, "verify_credentials": false})
	requireOK(t, resp, err)
	config, err := e.request(logical.ReadOperation, "config", nil)
	requireOK(t, config, err)
	status := e.readStatus(false)
	for what, shown := range map[string]any{"config": config.Data["client_id"], "status": status["client_id"]} {
		if s, _ := shown.(string); strings.Contains(s, testClientSecret) || !strings.Contains(s, "withheld") {
			t.Errorf("a %s read shows client_id %q; want it withheld", what, s)
		}
	}
}

// TestVerifiedConfigWriteStoresItsTokenOnce: the verification mint's token
// is stored once, after the config it was minted with, and nothing claims
// otherwise in the log.
func TestVerifiedConfigWriteStoresItsTokenOnce(t *testing.T) {
	e := newTestEnv(t)
	counting := &countingPuts{Storage: e.storage}
	e.storage = counting
	e.b.Clean(context.Background())
	e.b = e.newBackend()
	e.configure(nil)
	minted := e.manus.Issued()[0]
	e.waitForStoredToken(minted)
	time.Sleep(50 * time.Millisecond) // a second write, if any, would land now
	if n := counting.puts(tokenStorageKey); n != 1 {
		t.Fatalf("the verified token was written %d times, want once", n)
	}
	if strings.Contains(e.logs.String(), "has been replaced") {
		t.Fatal("the log says the config was replaced; nothing replaced it")
	}
}

// countingPuts counts writes per key.
type countingPuts struct {
	logical.Storage
	mu     sync.Mutex
	counts map[string]int
}

func (c *countingPuts) Put(ctx context.Context, entry *logical.StorageEntry) error {
	c.mu.Lock()
	if c.counts == nil {
		c.counts = map[string]int{}
	}
	c.counts[entry.Key]++
	c.mu.Unlock()
	return c.Storage.Put(ctx, entry)
}

func (c *countingPuts) puts(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[key]
}

// TestCredentialLengthsAreBounded: client_id, client_secret and base_url
// are bounded (Manus's own are far shorter), so one mount's config writer
// cannot make the shared plugin process hold, send and search upstream
// answers for megabytes. Over a bound: a 400 naming the field, nothing sent
// or stored; at the bound, accepted.
func TestCredentialLengthsAreBounded(t *testing.T) {
	long := func(prefix string, n int) string { return prefix + strings.Repeat("a", n-len(prefix)) }
	for field, limit := range map[string]int{"client_id": maxClientIDLength, "client_secret": maxClientSecretLength, "base_url": maxBaseURLLength} {
		prefix := map[string]string{"client_id": clientIDPrefix, "base_url": "https://example.com/"}[field]
		t.Run(field, func(t *testing.T) {
			e := newTestEnv(t)
			e.configure(nil)
			before, _ := readConfig(context.Background(), e.storage)
			over := map[string]any{"client_secret": testClientSecret, "base_url": e.baseURL}
			over[field] = long(prefix, limit+1)
			resp, err := e.writeConfig(over)
			status, msg := failureOf(t, resp, err)
			if status != http.StatusBadRequest || !strings.HasPrefix(msg, "invalid "+field) || !strings.Contains(msg, fmt.Sprint(limit)) {
				t.Fatalf("over the bound: %d %q; want a 400 naming %s and its bound", status, msg, field)
			}
			if after, _ := readConfig(context.Background(), e.storage); !reflect.DeepEqual(before, after) || e.manus.Requests() != 1 {
				t.Fatal("a value over the bound was stored or sent")
			}
			at := map[string]any{"client_secret": testClientSecret, "base_url": e.baseURL, "verify_credentials": false}
			at[field] = long(prefix, limit)
			resp, err = e.writeConfig(at)
			requireOK(t, resp, err)
		})
	}
}

// TestCACertSizeBoundAlone: a ca_cert over the size bound with fewer
// certificates than the count bound is refused for its size.
func TestCACertSizeBoundAlone(t *testing.T) {
	ca := testCertificatePEM(t)
	for name, value := range map[string]string{
		"one certificate in white space": ca + strings.Repeat(" \n", maxCACertBytes/2),
		"a few certificates, spaced out": strings.Repeat(ca+strings.Repeat("\n", maxCACertBytes/4), 4),
	} {
		t.Run(name, func(t *testing.T) {
			if n := strings.Count(value, "BEGIN CERTIFICATE"); n > maxCACertificates || len(value) <= maxCACertBytes {
				t.Fatalf("the case holds %d certificates in %d bytes: not over the size alone", n, len(value))
			}
			e := newTestEnv(t)
			e.configure(nil)
			resp, err := e.writeConfig(map[string]any{"ca_cert": value, "client_secret": testClientSecret, "base_url": e.baseURL, "verify_credentials": false})
			status, msg := failureOf(t, resp, err)
			if status != http.StatusBadRequest || !strings.Contains(msg, "ca_cert") || !strings.Contains(msg, fmt.Sprintf("at most %d KiB", maxCACertBytes>>10)) {
				t.Fatalf("got %d %q; want a 400 for ca_cert's size", status, msg)
			}
		})
	}
}
