package manus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/manus-community/vault-plugin-secrets-manus/internal/standin"
)

// The helpers every unit test file shares: the injected clock, the test
// environment (a backend on logical.InmemStorage in front of the strict
// Manus stand-in from internal/standin), requests through the framework as
// Vault would send them, and the assertions that apply to every response.

const (
	testClientID     = "tm_RRa7dgjD_AFhru6AnZJ8W"
	testClientSecret = "a1b2c3d4e5f6789012345678901234567890abcdef1234567890abcdef123456"
)

// testRetryPolicy keeps the default attempts and budget with delays short
// enough for unit tests.
var testRetryPolicy = retryPolicy{
	attempts:  defaultRetryPolicy.attempts,
	baseDelay: time.Millisecond,
	maxDelay:  4 * time.Millisecond,
	budget:    defaultRetryPolicy.budget,
	sleep:     sleepContext,
}

// testClock is an injected clock the tests move by hand.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock() *testClock {
	return &testClock{now: time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// syncBuffer collects the backend's log output from many goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testEnv is a backend on in-memory storage with an injected clock, talking
// to a strict stand-in for Manus over loopback HTTP.
type testEnv struct {
	t       testing.TB
	b       *backend
	storage logical.Storage
	clock   *testClock
	manus   *standin.Server
	baseURL string
	logs    *syncBuffer
	// system, when set, is the system view Vault gives the next backend.
	system logical.SystemView
}

func newTestEnv(t testing.TB) *testEnv {
	t.Helper()
	manus := standin.New()
	manus.AddClient(testClientID, testClientSecret)
	server := httptest.NewServer(manus)
	t.Cleanup(server.Close)

	e := &testEnv{
		t:       t,
		storage: &logical.InmemStorage{},
		clock:   newTestClock(),
		manus:   manus,
		baseURL: server.URL,
		logs:    &syncBuffer{},
	}
	e.b = e.newBackend()
	t.Cleanup(func() {
		e.b.Clean(context.Background())
		e.assertNoContractViolations()
		e.assertLogsHoldNoSecrets()
	})
	return e
}

// secondMount is another mount of the same plugin process: its own storage
// and backend, the same Manus, clock and log.
func (e *testEnv) secondMount() *testEnv {
	other := *e
	other.storage = &logical.InmemStorage{}
	other.b = other.newBackend()
	e.t.Cleanup(func() { other.b.Clean(context.Background()) })
	return &other
}

// newBackend builds a backend on the env's storage, as Vault does for a
// mount on a plugin reload or on another node.
func (e *testEnv) newBackend() *backend {
	e.t.Helper()
	b := newBackend(e.clock.Now)
	b.retry = testRetryPolicy
	conf := logical.TestBackendConfig()
	conf.StorageView = e.storage
	conf.Logger = hclog.New(&hclog.LoggerOptions{Level: hclog.Trace, Output: e.logs})
	if e.system != nil {
		conf.System = e.system
	}
	if err := b.setup(context.Background(), conf); err != nil {
		e.t.Fatal(err)
	}
	return b
}

func (e *testEnv) request(op logical.Operation, path string, data map[string]any) (*logical.Response, error) {
	return e.b.HandleRequest(context.Background(), &logical.Request{
		Operation:  op,
		Path:       path,
		Data:       data,
		Storage:    e.storage,
		MountPoint: "manus/",
	})
}

// writeConfig writes config as the CLI would: create on a fresh mount,
// update afterwards.
func (e *testEnv) writeConfig(data map[string]any) (*logical.Response, error) {
	var op logical.Operation = logical.UpdateOperation
	if cfg, err := readConfig(context.Background(), e.storage); err == nil && cfg == nil {
		op = logical.CreateOperation
	}
	return e.request(op, "config", data)
}

func (e *testEnv) validConfig() map[string]any {
	return map[string]any{
		"client_id":     testClientID,
		"client_secret": testClientSecret,
		"base_url":      e.baseURL,
	}
}

// configure writes a valid config and fails the test if that fails.
func (e *testEnv) configure(extra map[string]any) {
	e.t.Helper()
	data := e.validConfig()
	for k, v := range extra {
		data[k] = v
	}
	resp, err := e.writeConfig(data)
	requireOK(e.t, resp, err)
}

// mustReadToken reads <mount>/token and fails the test on error, or if the
// answer is not in the stored config's read mode: a leased secret, or data
// without one.
func (e *testEnv) mustReadToken() *logical.Response {
	e.t.Helper()
	resp, err := e.request(logical.ReadOperation, "token", nil)
	requireOK(e.t, resp, err)
	cfg, _ := readConfig(context.Background(), e.storage)
	switch leased := cfg == nil || cfg.LeasedReads; {
	case resp == nil || resp.Data["access_token"] == nil:
		e.t.Fatalf("token read returned no token: %#v", resp)
	case leased && resp.Secret == nil:
		e.t.Fatalf("a leased read returned no leased secret: %#v", resp)
	case !leased && resp.Secret != nil:
		e.t.Fatalf("a non-leased read returned a lease: %#v", resp.Secret)
	}
	return resp
}

// concurrentReads runs n token reads at once and returns the tokens they
// got; a failed read fails the test.
func (e *testEnv) concurrentReads(n int) []string {
	tokens := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := e.request(logical.ReadOperation, "token", nil)
			if err != nil || resp == nil || resp.IsError() || resp.Data["access_token"] == nil {
				e.t.Errorf("concurrent read %d failed: %v", i, err)
				return
			}
			tokens[i] = accessTokenOf(resp)
		}()
	}
	wg.Wait()
	return tokens
}

// readTokenError reads <mount>/token expecting a failure and returns its
// HTTP status and message.
func (e *testEnv) readTokenError() (int, string) {
	e.t.Helper()
	resp, err := e.request(logical.ReadOperation, "token", nil)
	return failureOf(e.t, resp, err)
}

func (e *testEnv) assertNoContractViolations() {
	if v := e.manus.Violations(); len(v) > 0 {
		e.t.Errorf("the plugin broke the token endpoint contract: %q", v)
	}
}

func (e *testEnv) assertLogsHoldNoSecrets() {
	logs := e.logs.String()
	if strings.Contains(logs, testClientSecret) {
		e.t.Errorf("the client secret appears in the plugin log")
	}
	for _, tok := range e.manus.Issued() {
		if strings.Contains(logs, tok) {
			e.t.Errorf("an access token appears in the plugin log")
		}
	}
}

func requireOK(t testing.TB, resp *logical.Response, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	if resp != nil && resp.IsError() {
		t.Fatalf("unexpected error response: %v", resp.Error())
	}
}

// failureOf returns the HTTP status Vault would send for a failed request
// and its message; it fails the test if the request succeeded.
func failureOf(t testing.TB, resp *logical.Response, err error) (int, string) {
	t.Helper()
	var coded logical.HTTPCodedError
	switch {
	case errors.As(err, &coded):
		return coded.Code(), coded.Error()
	case err != nil:
		return http.StatusInternalServerError, err.Error()
	case resp != nil && resp.IsError():
		return http.StatusBadRequest, resp.Error().Error()
	}
	t.Fatalf("expected the request to fail, but it succeeded (fields %v)", keysOf(resp))
	return 0, ""
}

func keysOf(resp *logical.Response) []string {
	if resp == nil {
		return nil
	}
	keys := make([]string, 0, len(resp.Data))
	for k := range resp.Data {
		keys = append(keys, k)
	}
	return keys
}

func accessTokenOf(resp *logical.Response) string {
	return resp.Data["access_token"].(string)
}

// waitFor polls cond until it holds, failing the test after five seconds.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting for a condition")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func closedLoopbackURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

// readStatus reads <mount>/status and checks it never carries the secret or
// any issued token.
func (e *testEnv) readStatus(probe bool) map[string]any {
	e.t.Helper()
	resp, err := e.request(logical.ReadOperation, "status", map[string]any{"probe": probe})
	requireOK(e.t, resp, err)
	for k, v := range resp.Data {
		text := fmt.Sprint(v)
		if strings.Contains(text, testClientSecret) {
			e.t.Fatalf("status field %s shows the client secret", k)
		}
		for _, tok := range e.manus.Issued() {
			if strings.Contains(text, tok) {
				e.t.Fatalf("status field %s shows an access token", k)
			}
		}
	}
	return resp.Data
}

// readMode is one of the two ways a token read answers. The cache's
// behaviour (one mint per lifetime, stale-while-error, back-off,
// persistence) is the same in both; the tests that check it run in each.
type readMode struct {
	name   string
	leased bool
}

var readModes = []readMode{{"leased", true}, {"non-leased", false}}

func (m readMode) config() map[string]any { return map[string]any{"leased_reads": m.leased} }

// holdFor is how long a reader keeps the token of resp before it reads
// again: its lease, or, without one, ttl plus the second Vault Agent adds.
func (m readMode) holdFor(t testing.TB, resp *logical.Response) time.Duration {
	t.Helper()
	if m.leased {
		return resp.Secret.TTL
	}
	return time.Duration(rereadTTL(t, resp)+1) * time.Second
}

func stall(d time.Duration) standin.Fault { return standin.Fault{Stall: d} }

func standinBody(status int, body string) standin.Fault {
	return standin.Fault{Status: status, Body: body}
}

// withSystemView swaps the env's backend for one Vault set up with sys.
func (e *testEnv) withSystemView(sys logical.SystemView) {
	e.t.Helper()
	old := e.b
	e.system = sys
	e.b = e.newBackend()
	old.Clean(context.Background())
}

// readStoredToken reads the mount's stored token from s, as another node
// or a restart would find it.
func readStoredToken(ctx context.Context, s logical.Storage) (*storedToken, error) {
	return (&tokenStore{storage: s}).read(ctx)
}

func writeStoredToken(ctx context.Context, s logical.Storage, st storedToken) error {
	entry, err := logical.StorageEntryJSON(tokenStorageKey, st)
	if err != nil {
		return err
	}
	return s.Put(ctx, entry)
}
