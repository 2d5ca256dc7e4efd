package manus

import (
	"context"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// TestInvisibleCharactersInCredentialsAreRefused: characters that copying a
// credential adds unseen are refused with a 400 that names the field, the
// kind of character and its position, before any request to Manus, whether
// or not the write verifies, and the stored config stays as it was. Sent on,
// each would come back from Manus as INVALID_CLIENT, the wrong diagnosis.
func TestInvisibleCharactersInCredentialsAreRefused(t *testing.T) {
	secret := testClientSecret // 64 characters
	cases := []struct {
		name, field, value string
		want               []string
	}{
		{"secret file saved with a byte-order mark", "client_secret", "\uFEFF" + secret, []string{"byte-order mark", "U+FEFF", "character 1 of 65"}},
		{"secret pasted with a trailing zero-width space", "client_secret", secret + "\u200B", []string{"zero-width", "U+200B", "character 65 of 65"}},
		{"secret with a word joiner inside", "client_secret", secret[:10] + "\u2060" + secret[10:], []string{"zero-width", "U+2060", "character 11 of 65"}},
		{"secret with a non-breaking space", "client_secret", secret[:5] + "\u00A0" + secret[5:], []string{"non-breaking space", "U+00A0", "character 6"}},
		{"secret with a newline inside", "client_secret", secret[:32] + "\n" + secret[32:], []string{"control character", "line feed", "character 33"}},
		{"secret with a trailing carriage return", "client_secret", secret + "\r", []string{"start or end with whitespace"}},
		{"secret with a right-to-left override", "client_secret", "\u202E" + secret, []string{"format character", "U+202E", "character 1"}},
		{"secret with an em space", "client_secret", secret[:3] + "\u2003" + secret[3:], []string{"non-ASCII space", "U+2003"}},
		{"secret with a visible non-ASCII letter", "client_secret", "é" + secret, []string{"non-ASCII character", "character 1"}},
		{"secret that is not UTF-8", "client_secret", "\xff" + secret, []string{"not valid UTF-8", "character 1"}},
		{"client_id with a byte-order mark", "client_id", "\uFEFF" + testClientID, []string{"byte-order mark", "character 1"}},
		{"client_id with a zero-width space", "client_id", testClientID + "\u200B", []string{"zero-width", "U+200B"}},
		{"client_id with a soft hyphen", "client_id", "tm_\u00ADRRa7dgjD", []string{"format character", "U+00AD", "character 4"}},
		{"client_id with a tab inside", "client_id", "tm_\tRRa7dgjD", []string{"control character", "tab"}},
		{"base_url with a zero-width space", "base_url", "https://api.manus.im\u200B", []string{"zero-width", "xn--"}},
	}
	for _, tc := range cases {
		for _, verify := range []bool{true, false} {
			name := tc.name
			if !verify {
				name += ", unverified"
			}
			t.Run(name, func(t *testing.T) {
				e := newTestEnv(t)
				e.configure(nil)
				before, _ := readConfig(context.Background(), e.storage)
				requests := e.manus.Requests()

				resp, err := e.writeConfig(map[string]any{tc.field: tc.value, "verify_credentials": verify})
				status, msg := failureOf(t, resp, err)
				if status != http.StatusBadRequest || !strings.HasPrefix(msg, "invalid "+tc.field+":") {
					t.Fatalf("got %d %q; want a 400 starting %q", status, msg, "invalid "+tc.field+":")
				}
				for _, want := range tc.want {
					if !strings.Contains(msg, want) {
						t.Errorf("message %q lacks %q", msg, want)
					}
				}
				if tc.field != "base_url" && strings.Contains(msg, strings.Trim(tc.value, "\uFEFF\u200B\r")) {
					t.Errorf("the message echoes the value: %q", msg)
				}
				if tc.field == "client_secret" && strings.Contains(msg, secret[:12]) {
					t.Errorf("the message carries part of the secret: %q", msg)
				}
				if after, _ := readConfig(context.Background(), e.storage); !reflect.DeepEqual(before, after) {
					t.Errorf("the refused write changed the stored config")
				}
				if e.manus.Requests() != requests {
					t.Errorf("the refused write still called Manus")
				}
			})
		}
	}
}

// TestVisibleASCIICredentialsAreAccepted: the rule refuses nothing RFC 6749
// allows, inner spaces and punctuation included, so a credential in a shape
// the vendor has not shown yet is not locked out.
func TestVisibleASCIICredentialsAreAccepted(t *testing.T) {
	for _, secret := range []string{
		testClientSecret,
		"with inner space and !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
	} {
		e := newTestEnv(t)
		resp, err := e.writeConfig(map[string]any{"client_id": testClientID, "client_secret": secret, "base_url": e.baseURL, "verify_credentials": false})
		requireOK(t, resp, err)
	}
}
