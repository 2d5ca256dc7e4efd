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

// Text that came from upstream can echo the request form, and so the client
// secret (or a client_id withheld as a possible pasted secret), or quote the
// bearer token. Everything such text goes through before it reaches an
// error message, a log line or a response is here.

const redactedMarker = "[redacted]"

// withheldMessage replaces upstream text that still holds part of a value
// once every whole copy is gone.
const withheldMessage = "[upstream message withheld: it contained part of the client secret]"

// echoedSecretField is a client_secret field in an echoed form
// (client_secret=...) or JSON body ("client_secret": "..."), up to where its
// value would end.
var echoedSecretField = regexp.MustCompile(`(?i)(client_secret["']?\s*[=:]\s*["']?)[^&\s"',}]*`)

// minSecretFragment is the shortest run of a value that withholds a
// message. Eight characters of a 64-hex-digit secret still take 32 bits off
// guessing it; a shorter run would withhold ordinary words. It is also the
// width of the window the fragment search slides, one uint64.
const minSecretFragment = 8

// redactor removes values from upstream text. Its cost is linear in the text
// and in the values, and it is built once per client: the plugin process is
// shared by every mount, so one mount's config must not be able to make a
// failed token request cost seconds of CPU.
type redactor struct {
	// forms are the values in every encoding an echoed request form could
	// carry them in, replaced wherever they occur whole.
	forms []string
	// windows holds every run of minSecretFragment bytes of each value (raw
	// and form-encoded), lower-cased; whole holds, lower-cased, the values
	// shorter than that, which count only whole.
	windows map[uint64]struct{}
	whole   [][]byte
}

// newRedactor removes values (empty ones are skipped) from text.
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

// redact removes every value, in every encoding an echo could use, and what
// follows a client_secret field name (an echo cut short can end inside the
// secret). If a run of a value is still present in any letter case (an
// upstream that truncated or re-cased its echo), the whole text is withheld.
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

// holdsFragment reports whether text holds, in any letter case, a run of
// minSecretFragment bytes of a value, or all of a shorter value. One pass
// over text, one map lookup per byte.
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

// asciiLower is s with its ASCII letters lower-cased, byte for byte:
// credentials are visible ASCII, and Unicode case mapping could turn other
// bytes into ASCII ones (the Kelvin sign lower-cases to k).
func asciiLower(s string) []byte {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return b
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
