package manus

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

const (
	// fallbackTokenLifetime is assumed without a usable expires_in: far
	// below the documented hour, so an unknown life is replaced early.
	fallbackTokenLifetime = 5 * time.Minute

	// maxTokenLifetime caps an implausibly large expires_in.
	maxTokenLifetime = 24 * time.Hour

	// minTokenLifetime is the shortest expires_in that can back a lease.
	minTokenLifetime = 5 * time.Second

	// maxRetryAfter bounds a Retry-After the plugin will believe.
	maxRetryAfter = time.Hour
)

var errBodyTooLarge = errors.New("response body too large")

// recordedExchange is an http.RoundTripper for a single token request. It
// keeps the status, the headers the plugin needs and at most limit bytes of
// the body, so failures are described from facts, never from oauth2's error
// text, which embeds the raw body.
type recordedExchange struct {
	base  http.RoundTripper
	limit int

	status      int
	contentType string
	retryAfter  string
	body        []byte
	oversized   bool
}

func (r *recordedExchange) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	r.status = resp.StatusCode
	r.contentType = resp.Header.Get("Content-Type")
	r.retryAfter = resp.Header.Get("Retry-After")
	resp.Body = &recordingBody{ReadCloser: resp.Body, exchange: r}
	if isFormLabel(r.contentType) {
		r.relabelJSONObject(resp)
	}
	return resp, nil
}

// isFormLabel reports the two media types oauth2 parses as a form
// (internal/token.go, doTokenRoundTrip); every other label as JSON.
func isFormLabel(contentType string) bool {
	mediaType, _, _ := mime.ParseMediaType(contentType)
	return mediaType == "application/x-www-form-urlencoded" || mediaType == "text/plain"
}

// relabelJSONObject labels a form-labelled body that is in fact a JSON
// object application/json, as proxies that re-label answers exist; it is
// read once and handed on unchanged.
func (r *recordedExchange) relabelJSONObject(resp *http.Response) {
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	resp.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), errorReader{err}))
	if err == nil && isJSONObject(body) {
		resp.Header.Set("Content-Type", "application/json")
	}
}

// errorReader ends a replayed body as its first read ended.
type errorReader struct{ err error }

func (e errorReader) Read([]byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	return 0, io.EOF
}

func isJSONObject(body []byte) bool {
	body = bytes.TrimSpace(body)
	return len(body) > 0 && body[0] == '{' && json.Valid(body)
}

// hasField reports whether the body carries name, non-null.
func (r *recordedExchange) hasField(name string) bool {
	if isJSONObject(r.body) {
		var fields map[string]json.RawMessage
		if json.Unmarshal(r.body, &fields) != nil {
			return false
		}
		raw, ok := fields[name]
		return ok && string(raw) != "null"
	}
	form, err := url.ParseQuery(string(r.body))
	return err == nil && form.Has(name)
}

// recordingBody copies what is read into the exchange, up to the limit.
type recordingBody struct {
	io.ReadCloser
	exchange *recordedExchange
}

func (b *recordingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	e := b.exchange
	if room := e.limit - len(e.body); n > room {
		e.body = append(e.body, p[:room]...)
		e.oversized = true
		return room, errBodyTooLarge
	}
	e.body = append(e.body, p[:n]...)
	return n, err
}

// tokenLifetime decides how long a new token lives; a missing or zero
// expires_in never means "does not expire".
func tokenLifetime(tok *oauth2.Token, now time.Time) (time.Duration, error) {
	var lifetime time.Duration
	switch {
	case tok.ExpiresIn != 0: // JSON body: oauth2 copies expires_in as is
		lifetime = time.Duration(tok.ExpiresIn) * time.Second
	case !tok.Expiry.IsZero(): // form-encoded body: only Expiry is set
		lifetime = tok.Expiry.Sub(now).Round(time.Second)
	default:
		return fallbackTokenLifetime, nil
	}
	switch {
	case lifetime <= 0:
		return 0, fmt.Errorf("expires_in is %d, so the token is already expired", int64(lifetime/time.Second))
	case lifetime < minTokenLifetime:
		return 0, fmt.Errorf("expires_in is %d, too short to serve (at least %s is needed)", int64(lifetime/time.Second), minTokenLifetime)
	case lifetime > maxTokenLifetime:
		return maxTokenLifetime, nil
	}
	return lifetime, nil
}

// errorBody is the code and message of a gRPC-style {"code","message"} or
// RFC 6749 {"error","error_description"} body: raw upstream text, redacted
// before use.
type errorBody struct {
	code    string
	message string
}

// errorCodePattern is an error code, upper-cased; anything else is dropped.
var errorCodePattern = regexp.MustCompile(`^[A-Z0-9_.\-]{1,40}$`)

func parseErrorBody(body []byte) errorBody {
	var fields map[string]json.RawMessage
	if json.Unmarshal(body, &fields) != nil {
		return errorBody{}
	}
	code := firstString(fields, "code", "error")
	if code == "" {
		code = numberText(fields["code"])
	}
	code = strings.ToUpper(strings.TrimSpace(code))
	if !errorCodePattern.MatchString(code) {
		code = ""
	}
	return errorBody{
		code:    code,
		message: firstString(fields, "message", "error_description"),
	}
}

func firstString(fields map[string]json.RawMessage, keys ...string) string {
	for _, key := range keys {
		var s string
		if json.Unmarshal(fields[key], &s) == nil && s != "" {
			return s
		}
	}
	return ""
}

func numberText(raw json.RawMessage) string {
	var n json.Number
	if json.Unmarshal(raw, &n) != nil {
		return ""
	}
	return n.String()
}

// describeUnparsable says why an answer was unusable, without quoting it.
func describeUnparsable(exchange *recordedExchange) string {
	mediaType, _, _ := mime.ParseMediaType(exchange.contentType)
	body := bytes.TrimSpace(exchange.body)
	if len(body) == 0 {
		return "the body is empty"
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal(body, &fields) != nil {
		if mediaType == "" {
			mediaType = "none"
		}
		return fmt.Sprintf("the body is not a JSON object (Content-Type: %s)", shorten(mediaType, 64))
	}
	var accessToken string
	if json.Unmarshal(fields["access_token"], &accessToken) != nil || accessToken == "" {
		return "access_token is missing or empty"
	}
	if raw, ok := fields["expires_in"]; ok && !isWholeNumber(raw) {
		return "expires_in is not a whole number of seconds"
	}
	return "the token response could not be parsed"
}

func isWholeNumber(raw json.RawMessage) bool {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		raw = json.RawMessage(s)
	}
	if string(raw) == "null" {
		return true
	}
	_, err := strconv.ParseInt(string(raw), 10, 64)
	return err == nil
}

// parseRetryAfter reads a Retry-After in seconds or as an HTTP date,
// ignoring what is past or unparsable and capping it at maxRetryAfter.
func parseRetryAfter(header string, now time.Time) time.Duration {
	header = strings.TrimSpace(header)
	if header == "" {
		return 0
	}
	var wait time.Duration
	if secs, err := strconv.ParseInt(header, 10, 64); err == nil {
		wait = time.Duration(min(secs, int64(maxRetryAfter/time.Second))) * time.Second
	} else if at, err := http.ParseTime(header); err == nil {
		wait = at.Sub(now)
	}
	return max(min(wait, maxRetryAfter), 0)
}
