package manus

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/manus-community/vault-plugin-secrets-manus/internal/standin"
)

func TestTokenLifetime(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	cases := []struct {
		name    string
		tok     oauth2.Token
		want    time.Duration
		wantErr bool
	}{
		{"documented hour", oauth2.Token{ExpiresIn: 3600}, time.Hour, false},
		{"missing or zero falls back", oauth2.Token{}, fallbackTokenLifetime, false},
		{"negative", oauth2.Token{ExpiresIn: -1}, 0, true},
		{"huge is capped", oauth2.Token{ExpiresIn: 1 << 31}, maxTokenLifetime, false},
		{"form-encoded expiry", oauth2.Token{Expiry: now.Add(20 * time.Minute)}, 20 * time.Minute, false},
		{"form-encoded past expiry", oauth2.Token{Expiry: now.Add(-time.Minute)}, 0, true},
	}
	for _, tc := range cases {
		got, err := tokenLifetime(&tc.tok, now)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("%s: got %s, %v; want %s (error %v)", tc.name, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestTokenLifetimeEndToEnd(t *testing.T) {
	// expires_in shapes Manus (or a proxy) might send, through the real
	// oauth2 parser and the plugin.
	cases := map[string]time.Duration{
		`3600`:        time.Hour,
		`"3600"`:      time.Hour,
		`0`:           fallbackTokenLifetime,
		`null`:        fallbackTokenLifetime,
		`20`:          20 * time.Second,
		`99999999999`: maxTokenLifetime,
	}
	for raw, want := range cases {
		t.Run(raw, func(t *testing.T) {
			e := newTestEnv(t)
			e.configure(map[string]any{"verify_credentials": false})
			e.manus.FailNext(standinBody(200, `{"access_token":"tok-`+url.QueryEscape(raw)+`","token_type":"bearer","expires_in":`+raw+`}`))
			resp := e.mustReadToken()
			expiresAt, _ := time.Parse(time.RFC3339, resp.Data["expires_at"].(string))
			if got := expiresAt.Sub(e.clock.Now()); got != want {
				t.Fatalf("lifetime = %s, want %s", got, want)
			}
		})
	}
	t.Run("missing", func(t *testing.T) {
		e := newTestEnv(t)
		e.configure(map[string]any{"verify_credentials": false})
		e.manus.FailNext(standinBody(200, `{"access_token":"tok","token_type":"Bearer"}`))
		resp := e.mustReadToken()
		if resp.Data["expires_in"] != int64(fallbackTokenLifetime/time.Second) {
			t.Fatalf("expires_in = %v, want the fallback", resp.Data["expires_in"])
		}
	})
}

func TestParseErrorBody(t *testing.T) {
	cases := []struct {
		body, code, message string
	}{
		{`{"code":"INVALID_CLIENT","message":"credentials are unknown"}`, "INVALID_CLIENT", "credentials are unknown"},
		{`{"error":"invalid_client","error_description":"bad"}`, "INVALID_CLIENT", "bad"},
		{`{"code":16,"message":"unauthenticated"}`, "16", "unauthenticated"},
		{`{"code":"has spaces in it"}`, "", ""},
		{`{"code":"` + strings.Repeat("A", 41) + `"}`, "", ""},
		{`{"message":"line\nbreak\ttab"}`, "", "line\nbreak\ttab"}, // cleaned after redaction, not here
		{`{"message":"` + strings.Repeat("m", 500) + `"}`, "", strings.Repeat("m", 500)},
		{`not json`, "", ""},
		{`[]`, "", ""},
		{``, "", ""},
	}
	for _, tc := range cases {
		got := parseErrorBody([]byte(tc.body))
		if got.code != tc.code || got.message != tc.message {
			t.Errorf("parseErrorBody(%.40q) = %+v, want code %q message %q", tc.body, got, tc.code, tc.message)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	cases := map[string]time.Duration{
		"":                              0,
		"30":                            30 * time.Second,
		"-5":                            0,
		"999999":                        maxRetryAfter, // absurd, but still "not soon"
		"soon":                          0,
		"Sun, 29 Nov 2026 12:01:00 GMT": time.Minute,
		"Sun, 29 Nov 2026 11:59:00 GMT": 0, // in the past
	}
	for header, want := range cases {
		if got := parseRetryAfter(header, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", header, got, want)
		}
	}
}

// TestTokenResponseShapesTheContractAllows sends tokens in shapes that are
// not the documented one but carry a usable Bearer token: a JSON body under
// a form or text label (golang.org/x/oauth2 picks its parser by label), a
// real form body under a text label, and a token_type that is missing or
// null. Each is served, from a single request.
func TestTokenResponseShapesTheContractAllows(t *testing.T) {
	const jsonToken = `{"access_token":"shape-token","token_type":"Bearer","expires_in":3600}`
	cases := []struct {
		name, contentType, body string
		assumedBearer           bool
	}{
		{"JSON labelled text/plain", "text/plain; charset=utf-8", jsonToken, false},
		{"JSON labelled as a form", "application/x-www-form-urlencoded", jsonToken, false},
		{"JSON labelled as a form, padded", "application/x-www-form-urlencoded", "\n  " + jsonToken + "\n", false},
		{"form body labelled text/plain", "text/plain", "access_token=shape-token&token_type=bearer&expires_in=3600", false},
		{"form body without token_type", "application/x-www-form-urlencoded", "access_token=shape-token&expires_in=3600", true},
		{"token_type missing", "application/json", `{"access_token":"shape-token","expires_in":3600}`, true},
		{"token_type null", "application/json", `{"access_token":"shape-token","token_type":null,"expires_in":3600}`, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t)
			e.configure(map[string]any{"verify_credentials": false})
			e.manus.FailNext(standin.Fault{Status: 200, ContentType: tc.contentType, Body: tc.body})
			resp := e.mustReadToken()
			if got := accessTokenOf(resp); got != "shape-token" {
				t.Fatalf("access_token = %q, want shape-token", got)
			}
			if resp.Data["token_type"] != "Bearer" || resp.Data["expires_in"] != int64(3600) {
				t.Errorf("token_type %v, expires_in %v; want Bearer, 3600", resp.Data["token_type"], resp.Data["expires_in"])
			}
			if got := e.manus.Requests(); got != 1 {
				t.Errorf("%d token requests, want 1", got)
			}
			logged := strings.Contains(e.logs.String(), "taking it as Bearer")
			if logged != tc.assumedBearer {
				t.Errorf("debug line about the missing token_type logged = %v, want %v", logged, tc.assumedBearer)
			}
		})
	}
}

// TestTransientOAuthErrorIsRetried: an RFC 6749 temporarily_unavailable (sent
// with HTTP 400) is a passing fault, retried within the mint like a 503.
func TestTransientOAuthErrorIsRetried(t *testing.T) {
	for _, code := range []string{"temporarily_unavailable", "server_error"} {
		t.Run(code, func(t *testing.T) {
			e := newTestEnv(t)
			e.configure(map[string]any{"verify_credentials": false})
			e.manus.FailNext(standinBody(http.StatusBadRequest, `{"error":"`+code+`"}`))
			if tok := accessTokenOf(e.mustReadToken()); tok == "" || !e.manus.IsValid(tok) {
				t.Fatalf("no valid token after a retried %s", code)
			}
			if got := e.manus.Requests(); got != 2 {
				t.Fatalf("%d token requests, want 2 (the failure, then the retry)", got)
			}
		})
	}
}

func TestTooShortLifetimeIsRefused(t *testing.T) {
	e := newTestEnv(t)
	e.manus.SetLifetime(3 * time.Second)
	e.configure(map[string]any{"verify_credentials": false})
	status, msg := e.readTokenError()
	if status != http.StatusBadGateway || !strings.Contains(msg, "too short to serve") {
		t.Fatalf("got %d %q", status, msg)
	}
}
