package manus

import (
	"bufio"
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/manus-community/vault-plugin-secrets-manus/internal/standin"
)

// TestUpstreamFailuresAreExplained drives every documented failure (and the
// undocumented ones a real network produces) through a token read and checks
// the operator sees a message that names the cause and carries the code.
func TestUpstreamFailuresAreExplained(t *testing.T) {
	big := `{"access_token":"` + strings.Repeat("x", 1<<20) + `","token_type":"Bearer","expires_in":3600}`
	cases := []struct {
		name       string
		fault      standin.Fault
		style      standin.ErrorStyle
		wantStatus int
		want       []string
	}{ // every case is an outage: the fault answers every attempt
		{"deleted credential", standin.Fault{}, standin.GRPCStyle, 502, []string{"HTTP 401 INVALID_CLIENT", "unknown or the credential was deleted", "config"}},
		{"deleted credential, RFC 6749 body", standin.Fault{}, standin.OAuthStyle, 502, []string{"HTTP 401 INVALID_CLIENT", "config"}},
		{"invalid request", standin.Fault{Status: 400, Body: `{"code":"INVALID_REQUEST","message":"client_id or client_secret is missing"}`}, 0, 502, []string{"HTTP 400 INVALID_REQUEST", "missing"}},
		{"invalid grant type", standin.Fault{Status: 400, Body: `{"code":"INVALID_GRANT_TYPE","message":"grant_type must be exactly client_credentials"}`}, 0, 502, []string{"HTTP 400 INVALID_GRANT_TYPE", "client_credentials"}},
		{"rate limited", standin.Fault{Status: 429, Body: `{"code":"RESOURCE_EXHAUSTED","message":"slow down"}`, Header: map[string]string{"Retry-After": "30"}}, 0, 502, []string{"rate limiting", "HTTP 429", "30s"}},
		{"rate limited, no body", standin.Fault{Status: 429, Body: ""}, 0, 502, []string{"rate limiting", "HTTP 429"}},
		{"internal error", standin.Fault{Status: 500, Body: `{"code":"INTERNAL","message":"retry with backoff"}`}, 0, 502, []string{"HTTP 500 INTERNAL", "Manus side"}},
		{"bad gateway HTML", standin.Fault{Status: 502, Body: "<html><body>Bad Gateway</body></html>", ContentType: "text/html"}, 0, 502, []string{"HTTP 502", "Manus side"}},
		{"200 with gRPC error body", standin.Fault{Status: 200, Body: `{"code":"INTERNAL","message":"oops"}`}, 0, 502, []string{"HTTP 200 INTERNAL"}},
		{"200 with RFC 6749 error body", standin.Fault{Status: 200, Body: `{"error":"invalid_client"}`}, 0, 502, []string{"INVALID_CLIENT"}},
		{"200 HTML page", standin.Fault{Status: 200, Body: "<html>login</html>", ContentType: "text/html"}, 0, 502, []string{"unusable response", "not a JSON object", "text/html"}},
		{"200 truncated JSON", standin.Fault{Status: 200, Body: `{"access_token":"abc","token_`}, 0, 502, []string{"unusable response"}},
		{"200 empty body", standin.Fault{Status: 200, Body: ""}, 0, 502, []string{"unusable response", "empty"}},
		{"200 empty access_token", standin.Fault{Status: 200, Body: `{"access_token":"","token_type":"Bearer","expires_in":3600}`}, 0, 502, []string{"access_token is missing"}},
		{"200 float expires_in", standin.Fault{Status: 200, Body: `{"access_token":"abc","token_type":"Bearer","expires_in":3600.5}`}, 0, 502, []string{"expires_in is not a whole number"}},
		{"200 word expires_in", standin.Fault{Status: 200, Body: `{"access_token":"abc","token_type":"Bearer","expires_in":"soon"}`}, 0, 502, []string{"expires_in is not a whole number"}},
		{"200 negative expires_in", standin.Fault{Status: 200, Body: `{"access_token":"abc","token_type":"Bearer","expires_in":-5}`}, 0, 502, []string{"expires_in is -5"}},
		{"200 wrong token_type", standin.Fault{Status: 200, Body: `{"access_token":"abc","token_type":"mac","expires_in":3600}`}, 0, 502, []string{`token_type is "mac"`}},
		{"200 empty token_type", standin.Fault{Status: 200, Body: `{"access_token":"abc","token_type":"","expires_in":3600}`}, 0, 502, []string{`token_type is ""`}},
		{"200 DPoP token_type", standin.Fault{Status: 200, Body: `{"access_token":"abc","token_type":"DPoP","expires_in":3600}`}, 0, 502, []string{`token_type is "DPoP"`}},
		{"400 RFC 6749 temporarily_unavailable", standin.Fault{Status: 400, Body: `{"error":"temporarily_unavailable","error_description":"overloaded"}`}, 0, 502, []string{"HTTP 400 TEMPORARILY_UNAVAILABLE", "Manus side"}},
		{"400 RFC 6749 server_error", standin.Fault{Status: 400, Body: `{"error":"server_error"}`}, 0, 502, []string{"HTTP 400 SERVER_ERROR", "Manus side"}},
		{"oversized body", standin.Fault{Status: 200, Body: big}, 0, 502, []string{"larger than 64 KiB"}},
		{"redirect", standin.Fault{Status: 307, Body: "", Header: map[string]string{"Location": "https://elsewhere.example/token"}}, 0, 502, []string{"redirect", "HTTP 307"}},
		{"permission denied", standin.Fault{Status: 403, Body: `{"code":"PERMISSION_DENIED","message":"team suspended"}`}, 0, 502, []string{"HTTP 403 PERMISSION_DENIED", "team suspended"}},
		{"timeout", stall(3 * time.Second), 0, 504, []string{"within 1s", "request_timeout"}},
		{"timeout, answer arrives late", stall(1200 * time.Millisecond), 0, 504, []string{"within 1s", "request_timeout"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t)
			e.configure(map[string]any{"verify_credentials": false, "request_timeout": 1})
			e.manus.SetErrorStyle(tc.style)
			if tc.fault.Status == 0 && tc.fault.Stall == 0 {
				e.manus.DeleteClient(testClientID)
			} else {
				e.manus.SetOutage(tc.fault)
			}
			status, msg := e.readTokenError()
			if status != tc.wantStatus {
				t.Errorf("status = %d, want %d (%s)", status, tc.wantStatus, msg)
			}
			for _, want := range tc.want {
				if !strings.Contains(msg, want) {
					t.Errorf("message %q lacks %q", msg, want)
				}
			}
			if strings.Contains(msg, "xxxxxxxx") || strings.Contains(msg, "<html") {
				t.Errorf("message quotes the upstream body: %q", msg)
			}
			// Transient failures get every attempt; verdicts on the
			// request get one. Timeouts outlast the reader's wait.
			if tc.wantStatus == 502 {
				want := 1
				if strings.Contains(tc.name, "rate limited, no body") || strings.Contains(tc.name, "internal") ||
					strings.Contains(tc.name, "bad gateway") || strings.Contains(tc.name, "gRPC error body") ||
					strings.Contains(tc.name, "temporarily_unavailable") || strings.Contains(tc.name, "server_error") {
					want = testRetryPolicy.attempts
				}
				if got := e.manus.Requests(); got != want {
					t.Errorf("%d token requests, want %d", got, want)
				}
			}
		})
	}
}

func TestConnectionFailureIsExplained(t *testing.T) {
	e := newTestEnv(t)
	closed := closedLoopbackURL(t)
	e.configure(map[string]any{"verify_credentials": false, "base_url": closed})
	status, msg := e.readTokenError()
	if status != http.StatusBadGateway || !strings.Contains(msg, "could not reach") || !strings.Contains(msg, "refused") {
		t.Fatalf("got %d %q; want 502 saying the connection was refused", status, msg)
	}
}

// TestEchoingUpstreamCannotLeakSecret: an upstream or proxy that reflects the
// request form (client_secret included) into its error must not get the
// secret into a Vault error.
func TestEchoingUpstreamCannotLeakSecret(t *testing.T) {
	secrets := []string{
		testClientSecret,
		"s3cr3t+with/special=chars&more%", // changes under form encoding
		"Q7zX_9kLm-P2vR8wY4nT6bJ1",        // could pass for an error code
	}
	faults := []standin.Fault{
		{Status: 401, Body: `{"error":"` + standin.EchoedSecret + `"}`},                                                            // the secret as the code
		{Status: 401, Body: `{"code":"INVALID_CLIENT","message":"` + strings.Repeat("x", 191) + " " + standin.EchoedSecret + `"}`}, // across the 200-character cut
		{Status: 401, Body: `{"error":"` + standin.EchoedForm + `"}`},
		{Status: 400, Body: `{"code":"INVALID_REQUEST","message":"cannot parse ` + standin.EchoedForm + `"}`},
		{Status: 401, Body: `{"error":"invalid_client","error_description":"unknown client in ` + standin.EchoedForm + `"}`},
		{Status: 502, Body: "<html>upstream error for " + standin.EchoedForm + "</html>", ContentType: "text/html"},
		{Status: 200, Body: "echo: " + standin.EchoedForm, ContentType: "text/plain"},
		{Status: 500, Body: `{"code":"INTERNAL","message":"` + standin.EchoedForm + `"}`},
	}
	for _, secret := range secrets {
		for i, fault := range faults {
			t.Run(fmt.Sprintf("%.6s/%d", secret, i), func(t *testing.T) {
				e := newTestEnv(t)
				e.manus.AddClient(testClientID, secret)
				e.configure(map[string]any{"client_secret": secret, "verify_credentials": false})
				e.manus.SetOutage(fault)
				_, msg := e.readTokenError()
				if leaked := runOfSecret(msg, secret, 8); leaked != "" {
					t.Fatalf("%q of the client secret leaked into the error: %q", leaked, msg)
				}
				if strings.Contains(e.logs.String(), secret) || strings.Contains(e.logs.String(), url.QueryEscape(secret)) {
					t.Fatal("the client secret leaked into the log")
				}
			})
		}
	}
}

// TestProxyAndCACert reaches an https base URL through an HTTPS_PROXY that
// tunnels to a TLS stand-in whose certificate only ca_cert makes trusted.
func TestProxyAndCACert(t *testing.T) {
	manus := standin.New()
	manus.AddClient(testClientID, testClientSecret)
	tlsServer := httptest.NewTLSServer(manus)
	defer tlsServer.Close()
	caPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsServer.Certificate().Raw}))

	proxy, proxyURL := startProxy(t, tlsServer.Listener.Addr().String())
	t.Setenv("HTTPS_PROXY", proxyURL)
	t.Setenv("NO_PROXY", "")

	e := newTestEnv(t)
	e.manus = manus
	// httptest's certificate is issued for example.com.
	resp, err := e.writeConfig(map[string]any{
		"client_id":     testClientID,
		"client_secret": testClientSecret,
		"base_url":      "https://example.com",
		"ca_cert":       caPEM,
	})
	requireOK(t, resp, err)
	if got := proxy.Hosts(); len(got) != 1 || got[0] != "example.com:443" {
		t.Fatalf("proxy saw CONNECT %q, want one to example.com:443", got)
	}
	if manus.Mints() != 1 {
		t.Fatal("the mint did not reach Manus through the proxy")
	}

	// Without ca_cert the proxy's tunnel leads to an untrusted certificate.
	resp, err = e.writeConfig(map[string]any{"ca_cert": "", "client_secret": testClientSecret, "base_url": "https://example.com"})
	if _, msg := failureOf(t, resp, err); !strings.Contains(msg, "certificate") {
		t.Fatalf("without ca_cert: %q, want a certificate error", msg)
	}
}

// TestStandinCatchesContractBreaches proves the stand-in is strict enough to
// fail a plugin that sent the credentials any other way.
func TestStandinCatchesContractBreaches(t *testing.T) {
	manus := standin.New()
	manus.AddClient(testClientID, testClientSecret)
	server := httptest.NewServer(manus)
	defer server.Close()
	tokenURL := server.URL + tokenEndpointPath

	basic := clientcredentials.Config{ClientID: testClientID, ClientSecret: testClientSecret, TokenURL: tokenURL, AuthStyle: oauth2.AuthStyleInHeader}
	if _, err := basic.Token(context.Background()); err == nil {
		t.Error("HTTP Basic credentials were accepted")
	}
	withScope := clientcredentials.Config{ClientID: testClientID, ClientSecret: testClientSecret, TokenURL: tokenURL, AuthStyle: oauth2.AuthStyleInParams, Scopes: []string{"users"}}
	if _, err := withScope.Token(context.Background()); err == nil {
		t.Error("an extra form field was accepted")
	}
	if status, _ := post(t, tokenURL, "application/json", `{"grant_type":"client_credentials"}`); status != http.StatusBadRequest {
		t.Errorf("a JSON body got HTTP %d", status)
	}
	if status, _ := post(t, tokenURL+"?client_secret=x", "application/x-www-form-urlencoded", "grant_type=client_credentials&client_id=a&client_secret=b"); status != http.StatusBadRequest {
		t.Errorf("a query string got HTTP %d", status)
	}
	if got := len(manus.Violations()); got != 4 {
		t.Fatalf("stand-in recorded %d violations, want 4: %q", got, manus.Violations())
	}
	if manus.Mints() != 0 {
		t.Fatal("the stand-in minted for a request that broke the contract")
	}

	form := url.Values{"grant_type": {"password"}, "client_id": {testClientID}, "client_secret": {testClientSecret}}
	if status, body := post(t, tokenURL, "application/x-www-form-urlencoded", form.Encode()); status != http.StatusBadRequest || !strings.Contains(body, `"code":"INVALID_GRANT_TYPE"`) {
		t.Fatalf("wrong grant type: HTTP %d %s", status, body)
	}
	form = url.Values{"grant_type": {"client_credentials"}, "client_id": {testClientID}}
	if status, body := post(t, tokenURL, "application/x-www-form-urlencoded", form.Encode()); status != http.StatusBadRequest || !strings.Contains(body, `"code":"INVALID_REQUEST"`) {
		t.Fatalf("missing secret: HTTP %d %s", status, body)
	}
}

func post(t *testing.T, target, contentType, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(target, contentType, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(answer)
}

// runOfSecret returns the first run of n characters of secret (or of its
// form encoding) that text holds in any letter case, or "".
func runOfSecret(text, secret string, n int) string {
	lower := strings.ToLower(text)
	for _, form := range []string{secret, url.QueryEscape(secret)} {
		form = strings.ToLower(form)
		for i := 0; i+n <= len(form); i++ {
			if strings.Contains(lower, form[i:i+n]) {
				return form[i : i+n]
			}
		}
	}
	return ""
}

// startProxy runs a standin.Proxy to target on loopback and returns it and
// its URL.
func startProxy(t *testing.T, target string) (*standin.Proxy, string) {
	p := standin.NewProxy(target)
	server := httptest.NewServer(p)
	t.Cleanup(server.Close)
	return p, server.URL
}

// formEchoServer answers every request with a malformed status line made of
// pad and the request's form body (or, without one, its bearer token): a
// broken host or proxy, whose bytes Go's HTTP client quotes in its error.
func formEchoServer(t *testing.T, pad int) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				req, err := http.ReadRequest(bufio.NewReader(conn))
				if err != nil {
					return
				}
				body, _ := io.ReadAll(req.Body)
				echo := string(body)
				if echo == "" {
					echo = strings.TrimPrefix(req.Header.Get("Authorization"), "Bearer ")
				}
				_, _ = fmt.Fprintf(conn, "HTTP/1.1 %s%s\r\n\r\n", strings.Repeat("x", pad), echo)
			}()
		}
	}()
	return "http://" + l.Addr().String()
}

// TestConnectionFailureCannotLeakPartOfTheSecret: a transport error quotes
// what a broken upstream sent back, here the request form. However long the
// quote, and wherever a length limit cuts it, no run of the secret reaches
// the reader's error, the log or status' last_error: the secret is removed
// before anything is shortened.
func TestConnectionFailureCannotLeakPartOfTheSecret(t *testing.T) {
	for pad := 0; pad <= 300; pad += 2 {
		t.Run(fmt.Sprint(pad), func(t *testing.T) {
			e := newTestEnv(t)
			e.configure(map[string]any{"verify_credentials": false, "base_url": formEchoServer(t, pad)})
			_, msg := e.readTokenError()
			if !strings.Contains(msg, "could not reach") {
				t.Fatalf("the failure took another path: %q", msg)
			}
			lastError, _ := e.readStatus(false)["last_error"].(string)
			for where, text := range map[string]string{"the error": msg, "last_error": lastError, "the log": e.logs.String()} {
				if leaked := runOfSecret(text, testClientSecret, 5); leaked != "" {
					t.Fatalf("%q of the client secret reached %s: %q", leaked, where, text)
				}
			}
		})
	}
}

// TestProbeConnectionFailureCannotLeakPartOfTheToken: the same for the
// bearer token the status probe sends.
func TestProbeConnectionFailureCannotLeakPartOfTheToken(t *testing.T) {
	const token = "TOKEN_qwertyuiopasdfghjklzxcvbnm_QWERTYUIOPASDFGHJKL"
	for pad := 0; pad <= 300; pad += 2 {
		t.Run(fmt.Sprint(pad), func(t *testing.T) {
			e := newTestEnv(t)
			e.configure(nil)
			e.seedForProbe(formEchoServer(t, pad), token)
			probeError, _ := e.readStatus(true)["probe_error"].(string)
			if leaked := runOfSecret(probeError, token, 5); leaked != "" {
				t.Fatalf("%q of the token reached probe_error: %q", leaked, probeError)
			}
		})
	}
}

// TestReplacedClientsCloseTheirConnections: each config write builds a new
// client (and transport); the one it replaces, and the one a dropped config
// leaves, close their connections instead of keeping them, and their
// goroutines, open until the idle timeout.
func TestReplacedClientsCloseTheirConnections(t *testing.T) {
	e := newTestEnv(t)
	var mu sync.Mutex
	open := map[net.Conn]bool{}
	server := httptest.NewUnstartedServer(e.manus)
	server.Config.ConnState = func(c net.Conn, state http.ConnState) {
		mu.Lock()
		defer mu.Unlock()
		switch state {
		case http.StateNew:
			open[c] = true
		case http.StateClosed, http.StateHijacked:
			delete(open, c)
		}
	}
	server.Start()
	t.Cleanup(server.Close)
	openConns := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(open)
	}
	e.configure(map[string]any{"base_url": server.URL})
	for i := range 10 {
		resp, err := e.writeConfig(map[string]any{"request_timeout": 11 + i}) // verified: each mints with a new client
		requireOK(t, resp, err)
	}
	if e.manus.Mints() != 11 {
		t.Fatalf("%d mints; each write should have minted once", e.manus.Mints())
	}
	waitFor(t, func() bool { return openConns() <= 1 })
	e.b.InvalidateKey(context.Background(), configStorageKey) // another node changed the config
	waitFor(t, func() bool { return openConns() == 0 })
}

// TestOversizedAnswerHeaderIsCut: a status line (or headers) far beyond
// anything Manus sends is cut at maxResponseHeaderBytes, so a broken or
// hostile upstream cannot make the plugin read, and search for the secret,
// megabytes per attempt; the error says so and quotes none of it.
func TestOversizedAnswerHeaderIsCut(t *testing.T) {
	e := newTestEnv(t)
	e.configure(map[string]any{"verify_credentials": false, "base_url": formEchoServer(t, 4<<20)})
	_, msg := e.readTokenError()
	if !strings.Contains(msg, "could not reach") || !strings.Contains(msg, fmt.Sprint(maxResponseHeaderBytes)) || strings.Contains(msg, "xxxxxxxx") {
		t.Fatalf("got %q; want the header cap named, and nothing of the answer quoted", msg)
	}
}

// TestWithheldClientIDNeverLeavesUpstreamText: a client_id that reads and
// logs withhold (it may be a pasted secret) is removed from upstream text
// like the secret: an upstream that echoes the form, or the ID, gets it into
// no reader's error, no last_error and no log line.
func TestWithheldClientIDNeverLeavesUpstreamText(t *testing.T) {
	const withheld = "9f8e7d6c5b4a39281706f5e4d3c2b1a0f9e8d7c6"
	for name, fault := range map[string]*standin.Fault{
		"form echoed in the message": {Status: 400, Body: `{"code":"INVALID_REQUEST","message":"cannot parse ` + standin.EchoedForm + `"}`},
		"form echoed as the code":    {Status: 401, Body: `{"error":"` + standin.EchoedForm + `"}`},
		"form echoed in HTML":        {Status: 502, Body: "<html>" + standin.EchoedForm + "</html>", ContentType: "text/html"},
		"form in a broken status":    nil,
	} {
		t.Run(name, func(t *testing.T) {
			e := newTestEnv(t)
			e.manus.AddClient(withheld, testClientSecret)
			baseURL := e.baseURL
			if fault == nil {
				baseURL = formEchoServer(t, 0)
			}
			resp, err := e.writeConfig(map[string]any{"client_id": withheld, "client_secret": testClientSecret, "base_url": baseURL, "verify_credentials": false})
			requireOK(t, resp, err)
			if fault != nil {
				e.manus.SetOutage(*fault)
			}
			_, msg := e.readTokenError()
			lastError, _ := e.readStatus(false)["last_error"].(string)
			for where, text := range map[string]string{"the error": msg, "last_error": lastError, "the log": e.logs.String()} {
				if leaked := runOfSecret(text, withheld, 8); leaked != "" {
					t.Fatalf("%q of the withheld client_id reached %s: %q", leaked, where, text)
				}
			}
		})
	}
}
