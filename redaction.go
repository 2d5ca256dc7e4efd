package manus

import (
	"encoding/json"
	"net/url"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Text that came from upstream can echo the request form, and so the client
// secret, or quote the bearer token. Everything such text goes through
// before it reaches an error message, a log line or a response is here.

const redactedMarker = "[redacted]"

// echoedSecretField is a client_secret field in an echoed form
// (client_secret=...) or JSON body ("client_secret": "..."), up to where its
// value would end.
var echoedSecretField = regexp.MustCompile(`(?i)(client_secret["']?\s*[=:]\s*["']?)[^&\s"',}]*`)

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
	// An echo cut short by whoever sent it can end inside the secret,
	// leaving a run too short to recognise: whatever follows a
	// client_secret field name goes.
	text = echoedSecretField.ReplaceAllString(text, "${1}"+redactedMarker)
	if containsSecretFragment(text, secret) {
		return "[upstream message withheld: it contained part of the client secret]"
	}
	return text
}

// minSecretFragment is the shortest run of a secret that withholds a
// message. Eight characters of a 64-hex-digit secret still take 32 bits off
// guessing it; a shorter run would withhold ordinary words.
const minSecretFragment = 8

// containsSecretFragment reports whether text holds, in any letter case, a
// run of secret (raw or form-encoded) long enough to be meaningful:
// minSecretFragment characters, or all of a shorter secret.
func containsSecretFragment(text, secret string) bool {
	if secret == "" {
		return false
	}
	lower := strings.ToLower(text)
	for _, form := range []string{secret, url.QueryEscape(secret)} {
		form = strings.ToLower(form)
		size := min(minSecretFragment, len(form))
		for i := 0; i+size <= len(form); i++ {
			if strings.Contains(lower, form[i:i+size]) {
				return true
			}
		}
	}
	return false
}

// shorten cuts s to at most limit bytes, at a rune boundary, marking the
// cut. Only ever on text already redacted.
func shorten(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

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
	return shorten(strings.TrimSpace(s), maxMessageLength)
}
