package manus

import (
	"encoding/json"
	"net/url"
	"strings"
	"unicode"
)

// Text that came from upstream can echo the request form, and so the client
// secret, or quote the bearer token. Everything such text goes through
// before it reaches an error message, a log line or a response is here.

const redactedMarker = "[redacted]"

// redactSecret removes secret from text in the encodings an echoed request
// form could carry it in. If a run of the secret is still present in any
// letter case (an upstream that truncated or re-cased its echo), the whole
// text is withheld.
func redactSecret(text, secret string) string {
	if secret == "" || text == "" {
		return text
	}
	quoted, _ := json.Marshal(secret)
	for _, form := range []string{
		secret,
		url.QueryEscape(secret),
		url.PathEscape(secret),
		string(quoted[1 : len(quoted)-1]),
	} {
		text = strings.ReplaceAll(text, form, redactedMarker)
	}
	if containsSecretFragment(text, secret) {
		return "[upstream message withheld: it contained part of the client secret]"
	}
	return text
}

// containsSecretFragment reports whether text holds, in any letter case, a
// run of secret (raw or form-encoded) long enough to be meaningful: 12
// characters, or all of a shorter secret.
func containsSecretFragment(text, secret string) bool {
	lower := strings.ToLower(text)
	for _, form := range []string{secret, url.QueryEscape(secret)} {
		form = strings.ToLower(form)
		size := min(12, len(form))
		for i := 0; i+size <= len(form); i++ {
			if strings.Contains(lower, form[i:i+size]) {
				return true
			}
		}
	}
	return false
}

func truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }

// maxMessageLength is how much of an upstream message an error shows.
const maxMessageLength = 200

// cleanMessage makes an upstream message that has already been redacted
// safe to show on one line. Truncation comes last, so it cannot cut a
// secret in half before redaction sees it.
func cleanMessage(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	return truncate(strings.TrimSpace(s), maxMessageLength)
}
