package manus

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// failureKind sorts token-endpoint failures by what to do about them.
type failureKind int

const (
	failRejected    failureKind = iota // a 4xx answer: credentials or request refused
	failRateLimited                    // 429 or RESOURCE_EXHAUSTED
	failUnavailable                    // 5xx or a Manus INTERNAL/UNAVAILABLE code
	failTimeout                        // no complete answer within request_timeout
	failConnection                     // no answer at all: DNS, refused, TLS
	failBadResponse                    // an answer the plugin cannot use
	failRedirect                       // a 3xx, which the plugin never follows
)

// Manus error codes named on the token endpoint's page.
const (
	codeInvalidClient    = "INVALID_CLIENT"
	codeInvalidRequest   = "INVALID_REQUEST"
	codeInvalidGrantType = "INVALID_GRANT_TYPE"
)

// upstreamError is the only error type a mint returns, built from vetted
// parts (status, code, a redacted message), never a raw body.
type upstreamError struct {
	kind       failureKind
	tokenURL   string
	status     int    // HTTP status, 0 when there was no answer
	code       string // Manus or OAuth2 error code, upper case
	detail     string // cleaned, redacted upstream message or local reason
	timeout    time.Duration
	retryAfter time.Duration
}

func asUpstreamError(err error) (*upstreamError, bool) {
	var upErr *upstreamError
	ok := errors.As(err, &upErr)
	return upErr, ok
}

func (e *upstreamError) Error() string {
	var msg string
	switch e.kind {
	case failTimeout:
		msg = fmt.Sprintf("no answer from the Manus token endpoint %s within %s (request_timeout); check the network path and any proxy, or raise request_timeout in config", e.tokenURL, e.timeout)
	case failConnection:
		msg = fmt.Sprintf("could not reach the Manus token endpoint %s: %s; check base_url, DNS, HTTPS_PROXY/NO_PROXY and ca_cert", e.tokenURL, e.detail)
	case failBadResponse:
		msg = fmt.Sprintf("the Manus token endpoint %s returned an unusable response (%s): %s", e.tokenURL, e.statusText(), e.detail)
	case failRedirect:
		msg = fmt.Sprintf("the Manus token endpoint %s answered with a redirect (%s), which the plugin does not follow so the client secret is never re-sent; point base_url at the final API address", e.tokenURL, e.statusText())
	case failRateLimited:
		msg = fmt.Sprintf("Manus is rate limiting token requests (%s)%s; every mint counts, so check for other clients using the same credential", e.statusText(), e.retryHint())
	case failUnavailable:
		msg = fmt.Sprintf("the Manus token endpoint failed (%s); this is on the Manus side, retry later", e.statusText())
	default:
		msg = e.rejectionText()
	}
	if e.detail != "" && e.kind != failConnection && e.kind != failBadResponse {
		msg += fmt.Sprintf(`. Manus said: %q`, e.detail)
	}
	return msg
}

func (e *upstreamError) rejectionText() string {
	switch e.code {
	case codeInvalidClient:
		return fmt.Sprintf("Manus rejected the client credentials (%s): the client_id/client_secret pair is unknown or the credential was deleted; create a credential in Manus and write its client_id and client_secret to this mount's config", e.statusText())
	case codeInvalidRequest:
		return fmt.Sprintf("Manus rejected the token request as incomplete (%s): client_id or client_secret is missing; write both to this mount's config", e.statusText())
	case codeInvalidGrantType:
		return fmt.Sprintf("Manus rejected the grant type (%s): it must be client_credentials; a proxy may be rewriting the request, otherwise please report this plugin bug", e.statusText())
	}
	return fmt.Sprintf("Manus refused the token request (%s)", e.statusText())
}

// statusText is "HTTP 401 INVALID_CLIENT", or "HTTP 503" without a code.
func (e *upstreamError) statusText() string {
	parts := make([]string, 0, 2)
	if e.status != 0 {
		parts = append(parts, fmt.Sprintf("HTTP %d", e.status))
	}
	if e.code != "" {
		parts = append(parts, e.code)
	}
	return strings.Join(parts, " ")
}

func (e *upstreamError) retryHint() string {
	if e.retryAfter <= 0 {
		return ""
	}
	return fmt.Sprintf(", Manus asks to retry after %s", e.retryAfter)
}

// classify refines the kind from the code where the status misleads: an
// INTERNAL body with 200, a temporarily_unavailable with 400.
func (e *upstreamError) classify() *upstreamError {
	switch e.code {
	case "INTERNAL", "UNAVAILABLE", "DEADLINE_EXCEEDED",
		// RFC 6749 4.1.2.1: a failing or overloaded server, sent with 400.
		"TEMPORARILY_UNAVAILABLE", "SERVER_ERROR":
		e.kind = failUnavailable
	case "RESOURCE_EXHAUSTED":
		e.kind = failRateLimited
	}
	return e
}

// retryable reports a failure in transit or on the Manus side, not a
// verdict on the request.
func (e *upstreamError) retryable() bool {
	switch e.kind {
	case failTimeout, failConnection, failUnavailable, failRateLimited:
		return true
	}
	return false
}

// vaultStatus is the HTTP status Vault gives the client for this failure on
// a token read: the gateway statuses, since the reader did nothing wrong.
func (e *upstreamError) vaultStatus() int {
	if e.kind == failTimeout {
		return http.StatusGatewayTimeout
	}
	return http.StatusBadGateway
}
