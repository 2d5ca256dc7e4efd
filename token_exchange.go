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
	// fallbackTokenLifetime is assumed when Manus sends no usable expires_in
	// (missing, null or 0). It is far below the documented hour so that a
	// token of unknown life is replaced early rather than served expired.
	fallbackTokenLifetime = 5 * time.Minute

	// maxTokenLifetime caps an implausibly large expires_in; Manus documents
	// one hour.
	maxTokenLifetime = 24 * time.Hour

	// minTokenLifetime is the shortest expires_in the plugin accepts: a
	// shorter token cannot back a useful lease by the time it is served.
	minTokenLifetime = 5 * time.Second

	// maxRetryAfter bounds a Retry-After the plugin will believe.
	maxRetryAfter = time.Hour
)

var errBodyTooLarge = errors.New("response body too large")

// This file holds the token request as the plugin sees it on the wire:
// recordedExchange records the answer of the token endpoint, and the
// functions below read it (the token's lifetime, an error body, a
// Retry-After) without ever quoting it whole.

// recordedExchange is an http.RoundTripper for a single token request. It
// keeps the status, the headers the plugin needs and at most limit bytes of
// the body, so failures can be described from facts rather than from oauth2's
// error text, which embeds the raw body.
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

// isFormLabel reports the two media types golang.org/x/oauth2 parses as a
// form-encoded body (internal/token.go, doTokenRoundTrip); it parses every
// other label as JSON.
func isFormLabel(contentType string) bool {
	mediaType, _, _ := mime.ParseMediaType(contentType)
	return mediaType == "application/x-www-form-urlencoded" || mediaType == "text/plain"
}

// relabelJSONObject reads a form-labelled body and, if it is in fact a JSON
// object, labels it application/json so oauth2 parses it as one: proxies
// and gateways that re-label responses exist, and a JSON token under the
// wrong label is still the token. A real form body keeps its label. The
// body is read once, up to the limit, and handed on unchanged, so this costs
// no second request.
func (r *recordedExchange) relabelJSONObject(resp *http.Response) {
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	resp.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), errorReader{err}))
	if err == nil && isJSONObject(body) {
		resp.Header.Set("Content-Type", "application/json")
	}
}

// errorReader ends a replayed body with the error its first read ended with
// (nil: a clean end).
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

// hasField reports whether the response body, as JSON object or form,
// carries name with a non-null value.
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

// recordingBody copies what is read into the exchange and fails the read
// once the body passes the limit.
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

// tokenLifetime decides how long a freshly minted token lives. A missing or
// zero expires_in falls back to fallbackTokenLifetime; it is never taken to
// mean "does not expire".
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

// errorBody is what the plugin takes from an error response: the Manus or
// OAuth2 error code and a message. It accepts the gRPC-style
// {"code","message"} body and the RFC 6749 {"error","error_description"}
// one. Both are raw upstream text: manusClient redacts them before use.
type errorBody struct {
	code    string
	message string
}

// errorCodePattern is what a Manus or OAuth2 error code looks like once
// upper-cased; anything else is not shown.
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

// describeUnparsable says why a response that is not an error was unusable,
// without quoting it.
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

// parseRetryAfter reads a Retry-After header in seconds or as an HTTP date.
// Negative, past or unparsable values are ignored; values beyond
// maxRetryAfter count as maxRetryAfter, still a reason not to retry soon.
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
