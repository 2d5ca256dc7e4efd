package manus

import (
	"context"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/manus-community/vault-plugin-secrets-manus/internal/standin"
)

// The messages the docs quote come from the code: every quote in the
// README's troubleshooting table, every row of docs/api.md's error table
// (with its status) and every fenced block marked <!-- message --> must be
// found in what one of the situations below answers. In a quote, "..."
// stands for any text and 5xx for any 5xx status.

// docsSituation is something an operator can run into, and what the plugin
// answers: the HTTP status Vault sends and the message.
type docsSituation func(t *testing.T) (int, string)

// docsVaultsOwn are quoted texts Vault itself writes, not the plugin.
var docsVaultsOwn = map[string]bool{"permission denied": true}

func docsSituations() map[string]docsSituation {
	outage := func(fault standin.Fault) docsSituation {
		return func(t *testing.T) (int, string) {
			e := newTestEnv(t)
			e.configure(map[string]any{"verify_credentials": false})
			e.manus.SetOutage(fault)
			return e.readTokenError()
		}
	}
	write := func(extra map[string]any) docsSituation {
		return func(t *testing.T) (int, string) {
			e := newTestEnv(t)
			e.configure(nil)
			resp, err := e.writeConfig(extra)
			return failureOf(t, resp, err)
		}
	}
	secretWith := func(value string) docsSituation {
		return write(map[string]any{"client_secret": value, "verify_credentials": false})
	}
	ca := func(t *testing.T) string { return testCertificatePEM(t) }
	return map[string]docsSituation{
		"unconfigured read": func(t *testing.T) (int, string) { return newTestEnv(t).readTokenError() },
		"deleted credential": func(t *testing.T) (int, string) {
			e := newTestEnv(t)
			e.configure(map[string]any{"verify_credentials": false})
			e.manus.DeleteClient(testClientID)
			return e.readTokenError()
		},
		"invalid request":    outage(standin.Fault{Status: 400, Body: `{"code":"INVALID_REQUEST","message":"client_id or client_secret is missing"}`}),
		"invalid grant type": outage(standin.Fault{Status: 400, Body: `{"code":"INVALID_GRANT_TYPE","message":"grant_type must be exactly client_credentials"}`}),
		"rate limited":       outage(standin.Fault{Status: http.StatusTooManyRequests, Body: `{"code":"RESOURCE_EXHAUSTED","message":"slow down"}`}),
		"unavailable":        outage(standin.Unavailable()),
		"temporarily":        outage(standin.Fault{Status: 400, Body: `{"error":"temporarily_unavailable"}`}),
		"redirect":           outage(standin.Fault{Status: http.StatusFound, Header: map[string]string{"Location": "https://elsewhere.example/"}}),
		"HTML page":          outage(standin.Fault{Status: 200, Body: "<html>hello</html>", ContentType: "text/html"}),
		"DPoP token":         outage(standin.Fault{Status: 200, Body: `{"access_token":"x","token_type":"DPoP","expires_in":3600}`}),
		"connection refused": docsReadAt(func(t *testing.T, e *testEnv) string { return closedLoopbackURL(t) }),
		"back-off":           docsBackoff,
		"mint in progress":   docsMintInProgress,
		"too soon to lease":  docsTooSoonToLease,
		"rejected tokens":    docsRejectedTwice,
		"leased read on a standby": func(t *testing.T) (int, string) {
			active := newTestEnv(t)
			active.configure(nil)
			resp, err := active.standby().request(logical.ReadOperation, "token", nil)
			return failureOf(t, resp, err)
		},
		"moved without the secret":      write(map[string]any{"base_url": "https://elsewhere.example"}),
		"moved CA without the secret":   func(t *testing.T) (int, string) { return write(map[string]any{"ca_cert": ca(t)})(t) },
		"rotation left the destination": secretWith(testClientSecret),
		"not allowed at registration": func(t *testing.T) (int, string) {
			e := newTestEnv(t)
			e.b.allowedBaseURLs = allowedBaseURLs{defaultBaseURL}
			resp, err := e.writeConfig(map[string]any{"client_id": testClientID, "client_secret": testClientSecret, "base_url": "https://elsewhere.example"})
			return failureOf(t, resp, err)
		},
		"rotation at a proxy": func(t *testing.T) (int, string) {
			e := newTestEnv(t)
			resp, err := e.writeConfig(map[string]any{"client_id": testClientID, "client_secret": testClientSecret, "base_url": "https://manus-proxy.internal", "verify_credentials": false})
			requireOK(t, resp, err)
			resp, err = e.writeConfig(map[string]any{"client_secret": testClientSecret})
			return failureOf(t, resp, err)
		},
		"http by name":       write(map[string]any{"base_url": "http://localhost:8080", "client_secret": testClientSecret}),
		"client_id too long": write(map[string]any{"client_id": "tm_" + strings.Repeat("a", maxClientIDLength)}),
		"secret too long": func(t *testing.T) (int, string) {
			return docsSecretWrite(t, strings.Repeat("a", maxClientSecretLength+1))
		},
		"base_url too long":  write(map[string]any{"base_url": "https://a.example/" + strings.Repeat("a", maxBaseURLLength), "client_secret": testClientSecret}),
		"text around the CA": func(t *testing.T) (int, string) { return docsCAWrite(t, "note\n"+ca(t)) },
		"CA too large":       func(t *testing.T) (int, string) { return docsCAWrite(t, ca(t)+strings.Repeat(" ", maxCACertBytes)) },
		"too many CAs":       func(t *testing.T) (int, string) { return docsCAWrite(t, strings.Repeat(ca(t), maxCACertificates+1)) },
		"a private key": func(t *testing.T) (int, string) {
			return docsCAWrite(t, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
		},
		"final line break": func(t *testing.T) (int, string) { return docsSecretWrite(t, testClientSecret+"\n") },
		"byte-order mark":  func(t *testing.T) (int, string) { return docsSecretWrite(t, "\uFEFF"+testClientSecret) },
		"zero-width space": func(t *testing.T) (int, string) {
			return docsSecretWrite(t, testClientSecret[:9]+"\u200B"+testClientSecret[9:])
		},
		"non-breaking space": func(t *testing.T) (int, string) {
			return docsSecretWrite(t, testClientSecret[:9]+"\u00A0"+testClientSecret[9:])
		},
		"control character": func(t *testing.T) (int, string) {
			return docsSecretWrite(t, testClientSecret[:9]+"\n"+testClientSecret[9:])
		},
		"format character":   func(t *testing.T) (int, string) { return docsSecretWrite(t, "\u202E"+testClientSecret) },
		"non-ASCII":          func(t *testing.T) (int, string) { return docsSecretWrite(t, "é"+testClientSecret) },
		"overlapping writes": docsOverlappingWrites,
		"reload during mint": docsDuringMint(func(e *testEnv) { e.b.Clean(context.Background()) }),
		"delete during mint": docsDuringMint(func(e *testEnv) { _, _ = e.request(logical.DeleteOperation, "config", nil) }),
		"change during mint": docsDuringMint(func(e *testEnv) { e.b.InvalidateKey(context.Background(), configStorageKey) }),
		"verification refused": func(t *testing.T) (int, string) {
			e := newTestEnv(t)
			resp, err := e.writeConfig(map[string]any{"client_id": "tm_unknown", "client_secret": testClientSecret, "base_url": e.baseURL})
			return failureOf(t, resp, err)
		},
		"verification failed": func(t *testing.T) (int, string) {
			e := newTestEnv(t)
			e.manus.SetOutage(standin.Unavailable())
			resp, err := e.writeConfig(e.validConfig())
			return failureOf(t, resp, err)
		},
		"verification timed out": func(t *testing.T) (int, string) {
			e := newTestEnv(t)
			e.manus.SetOutage(stall(3 * time.Second))
			resp, err := e.writeConfig(map[string]any{"client_id": testClientID, "client_secret": testClientSecret, "base_url": e.baseURL, "request_timeout": 1})
			return failureOf(t, resp, err)
		},
	}
}

// TestDocsQuoteTheMessages: every message the docs quote is one the plugin
// gives, with the status docs/api.md says.
func TestDocsQuoteTheMessages(t *testing.T) {
	type answer struct {
		status  int
		message string
	}
	var mu sync.Mutex
	answers := map[string]answer{}
	t.Run("situations", func(t *testing.T) {
		for name, situation := range docsSituations() {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				status, msg := situation(t)
				mu.Lock()
				defer mu.Unlock()
				answers[name] = answer{status, strings.Join(strings.Fields(msg), " ")}
			})
		}
	})
	for _, q := range docsQuotes(t) {
		found := false
		for _, a := range answers {
			if q.pattern.MatchString(a.message) && (q.status == 0 || q.status == a.status) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s quotes %q (status %d), which no situation in docs_messages_test.go answers", q.source, q.text, q.status)
		}
	}
}

// docsQuote is a message a page quotes, with the status it says (0: none).
type docsQuote struct {
	source, text string
	status       int
	pattern      *regexp.Regexp
}

var (
	docsBacktick      = regexp.MustCompile("`([^`]+)`")
	docsMessageMarker = regexp.MustCompile("(?s)<!-- message -->\\s*```\\w*\\n(.*?)```")
)

// docsQuotes collects the quotes: the troubleshooting table's first column
// (rows about alerts quote alert names), docs/api.md's error table, and the
// marked blocks of every page.
func docsQuotes(t *testing.T) []docsQuote {
	var quotes []docsQuote
	add := func(source, text string, status int) {
		text = strings.Join(strings.Fields(text), " ")
		if docsVaultsOwn[text] {
			return
		}
		expr := strings.ReplaceAll(strings.ReplaceAll(regexp.QuoteMeta(text), `\.\.\.`, ".*?"), "5xx", `5\d\d`)
		quotes = append(quotes, docsQuote{source, text, status, regexp.MustCompile(expr)})
	}
	readme := docsFile(t, "README.md")
	for _, row := range docsTableRows(readme[strings.Index(readme, "## Troubleshooting"):]) {
		if !strings.HasPrefix(row[0], "Alert ") {
			for _, m := range docsBacktick.FindAllStringSubmatch(row[0], -1) {
				add("README.md troubleshooting", m[1], 0)
			}
		}
	}
	api := docsFile(t, "docs/api.md")
	for _, row := range docsTableRows(api[strings.Index(api, "| Status | When |"):]) {
		status, err := strconv.Atoi(row[0])
		if err != nil {
			t.Fatalf("docs/api.md error table: status %q", row[0])
		}
		add("docs/api.md errors", strings.Trim(row[2], "`"), status)
	}
	for _, path := range docsMarkdownFiles(t) {
		for _, m := range docsMessageMarker.FindAllStringSubmatch(docsFile(t, path), -1) {
			add(path, m[1], 0)
		}
	}
	if len(quotes) < 40 {
		t.Fatalf("found %d quotes; the tables or markers moved", len(quotes))
	}
	return quotes
}

func docsFile(t *testing.T, path string) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// docsTableRows are the cells of the first table in text, past its header.
func docsTableRows(text string) [][]string {
	var rows [][]string
	started := false
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "|---"):
			started = true
		case started && strings.HasPrefix(line, "|"):
			cells := strings.Split(strings.Trim(line, "|"), " | ")
			for i := range cells {
				cells[i] = strings.TrimSpace(cells[i])
			}
			rows = append(rows, cells)
		case started:
			return rows
		}
	}
	return rows
}

func docsSecretWrite(t *testing.T, secret string) (int, string) {
	e := newTestEnv(t)
	e.configure(nil)
	resp, err := e.writeConfig(map[string]any{"client_secret": secret, "base_url": e.baseURL})
	return failureOf(t, resp, err)
}

func docsCAWrite(t *testing.T, caCert string) (int, string) {
	e := newTestEnv(t)
	e.configure(nil)
	resp, err := e.writeConfig(map[string]any{"ca_cert": caCert, "client_secret": testClientSecret, "base_url": e.baseURL})
	return failureOf(t, resp, err)
}

func docsReadAt(baseURL func(t *testing.T, e *testEnv) string) docsSituation {
	return func(t *testing.T) (int, string) {
		e := newTestEnv(t)
		e.configure(map[string]any{"verify_credentials": false, "base_url": baseURL(t, e)})
		return e.readTokenError()
	}
}

func docsBackoff(t *testing.T) (int, string) {
	e := newTestEnv(t)
	e.configure(map[string]any{"verify_credentials": false})
	e.manus.SetOutage(standin.Unavailable())
	e.readTokenError()
	return e.readTokenError()
}

func docsMintInProgress(t *testing.T) (int, string) {
	e := newTestEnv(t)
	e.configure(map[string]any{"verify_credentials": false, "request_timeout": 1})
	e.manus.SetOutage(stall(3 * time.Second))
	return e.readTokenError()
}

func docsTooSoonToLease(t *testing.T) (int, string) {
	e := newTestEnv(t)
	e.b.clock = wallClock
	e.manus.SetLifetime(5 * time.Second)
	e.configure(map[string]any{"verify_credentials": false})
	e.manus.FailNext(stall(4700 * time.Millisecond))
	return e.readTokenError()
}

// docsRejectedTwice: the users API rejects two tokens in a row, so the next
// mint waits.
func docsRejectedTwice(t *testing.T) (int, string) {
	e := newTestEnv(t)
	e.configure(nil)
	e.manus.RejectAllTokens(true)
	e.readStatus(true)
	e.readStatus(true)
	return e.readTokenError()
}

func docsOverlappingWrites(t *testing.T) (int, string) {
	e := newTestEnv(t)
	e.configure(nil)
	e.manus.FailNext(stall(300 * time.Millisecond))
	slow := make(chan [2]any, 1)
	go func() {
		resp, err := e.writeConfig(map[string]any{"request_timeout": 7})
		slow <- [2]any{resp, err}
	}()
	waitFor(t, func() bool { return e.manus.Requests() == 2 })
	resp, err := e.writeConfig(map[string]any{"leased_reads": false})
	requireOK(t, resp, err)
	got := <-slow
	resp, _ = got[0].(*logical.Response)
	err, _ = got[1].(error)
	return failureOf(t, resp, err)
}

// docsDuringMint cuts a read short with drop while its mint is in flight.
func docsDuringMint(drop func(e *testEnv)) docsSituation {
	return func(t *testing.T) (int, string) {
		e := newTestEnv(t)
		e.configure(map[string]any{"verify_credentials": false})
		e.manus.SetOutage(stall(10 * time.Second))
		done := make(chan [2]any, 1)
		go func() {
			resp, err := e.request(logical.ReadOperation, "token", nil)
			done <- [2]any{resp, err}
		}()
		waitFor(t, func() bool { return e.manus.Requests() == 1 })
		drop(e)
		got := <-done
		resp, _ := got[0].(*logical.Response)
		err, _ := got[1].(error)
		return failureOf(t, resp, err)
	}
}

// docsStatusSample is a `vault read manus/status` answer a page shows: a
// fenced block starting with the command, then the CLI's Key/Value lines;
// a line "..." marks it as abridged.
var docsStatusSample = regexp.MustCompile("(?s)```\\n\\$ vault read manus/status[^\\n]*\\n(.*?)```")

// TestDocsStatusSamplesMatchTheSchema: every field a page shows in a status
// sample is one status has, and an unabridged sample (the healthy mount's)
// shows every field a healthy mount's status does.
func TestDocsStatusSamplesMatchTheSchema(t *testing.T) {
	schema := statusResponseFields()
	e := newTestEnv(t)
	e.configure(nil)
	e.mustReadToken()
	healthy := e.readStatus(true)
	samples := 0
	for _, path := range docsMarkdownFiles(t) {
		for _, m := range docsStatusSample.FindAllStringSubmatch(docsFile(t, path), -1) {
			samples++
			shown, abridged := map[string]bool{}, false
			for _, line := range strings.Split(m[1], "\n") {
				switch fields := strings.Fields(line); {
				case len(fields) == 0, fields[0] == "Key", strings.HasPrefix(fields[0], "---"):
				case fields[0] == "...":
					abridged = true
				case schema[fields[0]] == nil:
					t.Errorf("%s shows status field %q, which status does not have", path, fields[0])
				default:
					shown[fields[0]] = true
				}
			}
			for field := range healthy {
				if !abridged && !shown[field] {
					t.Errorf("%s: the full status sample lacks %q, which a healthy mount's status shows", path, field)
				}
			}
		}
	}
	if samples < 4 {
		t.Fatalf("found %d status samples; the pages moved", samples)
	}
}
