package manus

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"net/url"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Upstream text can echo the request form, and so the secret, or quote the
// bearer token: it goes through here before any message, log or response.

const redactedMarker = "[redacted]"

// withheldMessage replaces text that still holds part of a value.
const withheldMessage = "[upstream message withheld: it contained part of the client secret]"

// echoedSecretField is a client_secret field of an echoed form or JSON
// body, up to where its value would end.
var echoedSecretField = regexp.MustCompile(`(?i)(client_secret["']?\s*[=:]\s*["']?)[^&\s"',}]*`)

// minSecretFragment is the shortest run of a value that withholds a
// message: 8 hex digits still take 32 bits off guessing a secret, shorter
// runs would withhold ordinary words. It is one uint64 wide.
const minSecretFragment = 8

// redactor removes values from upstream text in time linear in both, built
// once per client: one mount's config must not make the shared process
// spend seconds on a failed request.
type redactor struct {
	// forms are the values in each encoding an echo could use.
	forms []string
	// windows are the lower-cased runs of minSecretFragment bytes of each
	// value, raw and form-encoded; whole, values shorter than that.
	windows map[uint64]struct{}
	whole   [][]byte
}

func newRedactor(values ...string) *redactor {
	r := &redactor{windows: map[uint64]struct{}{}}
	for _, v := range values {
		if v == "" {
			continue
		}
		quoted, _ := json.Marshal(v)
		r.forms = append(r.forms, v, url.QueryEscape(v), url.PathEscape(v), string(quoted[1:len(quoted)-1]))
		for _, form := range []string{v, url.QueryEscape(v)} {
			r.addFragments(asciiLower(form))
		}
	}
	return r
}

func (r *redactor) addFragments(form []byte) {
	if len(form) < minSecretFragment {
		r.whole = append(r.whole, form)
		return
	}
	for i := 0; i+minSecretFragment <= len(form); i++ {
		r.windows[binary.LittleEndian.Uint64(form[i:])] = struct{}{}
	}
}

// redact removes every value and what follows a client_secret field name
// (an echo cut short can end inside the secret); a run of a value left in
// any letter case withholds the whole text.
func (r *redactor) redact(text string) string {
	if len(r.forms) == 0 || text == "" {
		return text
	}
	for _, form := range r.forms {
		text = strings.ReplaceAll(text, form, redactedMarker)
	}
	if bytes.Contains(asciiLower(text), []byte("client_secret")) { // the regexp is the costly part
		text = echoedSecretField.ReplaceAllString(text, "${1}"+redactedMarker)
	}
	if r.holdsFragment(text) {
		return withheldMessage
	}
	return text
}

// holdsFragment reports a run of a value in text, in any letter case: one
// map lookup per byte.
func (r *redactor) holdsFragment(text string) bool {
	lower := asciiLower(text)
	for _, v := range r.whole {
		if bytes.Contains(lower, v) {
			return true
		}
	}
	for i := 0; i+minSecretFragment <= len(lower) && len(r.windows) > 0; i++ {
		if _, ok := r.windows[binary.LittleEndian.Uint64(lower[i:])]; ok {
			return true
		}
	}
	return false
}

// asciiLower lower-cases ASCII letters only: credentials are ASCII, and
// Unicode mapping could make other bytes ASCII (the Kelvin sign is k).
func asciiLower(s string) []byte {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return b
}

// shorten cuts s to at most limit bytes, at a rune boundary; only ever
// after redaction.
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

// cleanMessage puts a redacted upstream message on one line.
func cleanMessage(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	return shorten(strings.TrimSpace(s), maxMessageLength)
}
