// Package standin is a strict local stand-in for the Manus token endpoint.
//
// It follows the published contract of POST /api/user/manage/v1/oauth/token
// to the letter: form body only, no Authorization header, no query string, no
// fields beyond grant_type, client_id and client_secret, and the documented
// error codes and bodies. Anything else is answered with an error and
// recorded as a contract violation, so a plugin that drifts from the contract
// fails its tests. Tests can also script faults: errors, stalls, odd bodies
// and echoes of the request form.
package standin

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// TokenPath is the token endpoint's path below the base URL.
const TokenPath = "/api/user/manage/v1/oauth/token"

// UsersPath is the users endpoint the plugin's probe calls.
const UsersPath = "/api/user/manage/v1/users"

// Error codes and messages of the token endpoint, as documented by Manus.
const (
	CodeInvalidGrantType = "INVALID_GRANT_TYPE"
	CodeInvalidRequest   = "INVALID_REQUEST"
	CodeInvalidClient    = "INVALID_CLIENT"

	msgInvalidGrantType = "grant_type must be exactly client_credentials"
	msgInvalidRequest   = "client_id or client_secret is missing"
	msgInvalidClient    = "credentials are unknown or have been deleted"
)

// ErrorStyle selects the shape of error bodies.
type ErrorStyle int

const (
	// GRPCStyle answers {"code": "INVALID_CLIENT", "message": "..."}, the
	// Manus API's general error body.
	GRPCStyle ErrorStyle = iota
	// OAuthStyle answers {"error": "invalid_client", "error_description": "..."}
	// as RFC 6749 section 5.2 describes.
	OAuthStyle
)

// Fault replaces the stand-in's normal answer to one token request (or to
// every request, during an outage). The request's contract is still checked
// first.
type Fault struct {
	// Stall delays the answer; a request whose client gives up first gets
	// none at all.
	Stall time.Duration
	// Status, if non-zero, is answered instead of the normal outcome, with
	// Body and ContentType (default application/json) and Header.
	Status      int
	Body        string
	ContentType string
	Header      map[string]string
}

// Unavailable is a fault answering 503 with a Manus UNAVAILABLE body, the
// usual shape of an outage in tests.
func Unavailable() Fault {
	return Fault{Status: http.StatusServiceUnavailable, Body: `{"code":"UNAVAILABLE","message":"maintenance"}`}
}

// EchoedForm in a Fault's Body is replaced by the raw request body, client
// secret included: an upstream or proxy that reflects its input.
const EchoedForm = "{{form}}"

// EchoedSecret in a Fault's Body is replaced by the client_secret the
// request carried.
const EchoedSecret = "{{client_secret}}"

// Server is the stand-in. Its zero value is not usable; call New.
type Server struct {
	mu         sync.Mutex
	clients    map[string]string // client_id -> client_secret
	lifetime   time.Duration
	errorStyle ErrorStyle
	tokens     map[string]issuedToken
	issued     []string
	queued     []Fault
	outage     *Fault
	chaos      func() (Fault, bool)
	requests   int
	mints      int
	userCalls  int
	rejectAll  bool
	violations []string
	clock      func() time.Time
}

type issuedToken struct {
	clientID  string
	expiresAt time.Time
}

// New returns a stand-in that issues one-hour tokens and knows no clients.
func New() *Server {
	return &Server{
		clients:  map[string]string{},
		lifetime: time.Hour,
		tokens:   map[string]issuedToken{},
		clock:    time.Now,
	}
}

// AddClient registers a credential.
func (s *Server) AddClient(clientID, clientSecret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clients[clientID] = clientSecret
}

// DeleteClient forgets a credential, as deleting it in the Manus UI does.
// Tokens already issued stay valid until they expire; RevokeTokensOf ends
// them too.
func (s *Server) DeleteClient(clientID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.clients, clientID)
}

// RevokeTokensOf makes every token issued to clientID unacceptable.
func (s *Server) RevokeTokensOf(clientID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for tok, t := range s.tokens {
		if t.clientID == clientID {
			t.expiresAt = time.Time{}
			s.tokens[tok] = t
		}
	}
}

// RejectAllTokens makes the users endpoint answer 401 to every token, valid
// or not, as it does to a token Manus stopped accepting (an incident, or a
// credential revoked on the Manus side while the token endpoint still
// issues tokens), until called with false.
func (s *Server) RejectAllTokens(reject bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rejectAll = reject
}

// UserCalls is the number of requests made to the users endpoint.
func (s *Server) UserCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.userCalls
}

// SetLifetime sets expires_in for tokens issued from now on.
func (s *Server) SetLifetime(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lifetime = d
}

// SetErrorStyle selects the error body shape.
func (s *Server) SetErrorStyle(style ErrorStyle) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errorStyle = style
}

// FailNext queues faults for the next token requests, one each.
func (s *Server) FailNext(faults ...Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queued = append(s.queued, faults...)
}

// SetOutage answers every token request with f until ClearOutage.
func (s *Server) SetOutage(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.outage = &f
}

// ClearOutage ends an outage.
func (s *Server) ClearOutage() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.outage = nil
}

// SetChaos lets pick decide, request by request, whether to answer with a
// fault; nil ends it. pick runs under no lock and must be safe for
// concurrent use.
func (s *Server) SetChaos(pick func() (Fault, bool)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.chaos = pick
}

// Mints is the number of tokens issued.
func (s *Server) Mints() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mints
}

// Requests is the number of requests made to the token endpoint.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// Violations lists every contract breach seen, in order.
func (s *Server) Violations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.violations...)
}

// Issued lists every access token issued, oldest first.
func (s *Server) Issued() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.issued...)
}

// IsValid reports whether Manus would accept token at this instant: issued
// here and not expired.
func (s *Server) IsValid(token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[token]
	return ok && s.clock().Before(t.expiresAt)
}

// ClientOf is the client_id an issued token was minted for.
func (s *Server) ClientOf(token string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokens[token].clientID
}

// ExpiresAt is when an issued token expires; zero if it was never issued.
func (s *Server) ExpiresAt(token string) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokens[token].expiresAt
}

// Stats is what GET /_standin/stats reports.
type Stats struct {
	Requests   int      `json:"requests"`
	Mints      int      `json:"mints"`
	Violations []string `json:"violations"`
}

// ServeHTTP routes the token endpoint and the stats endpoint.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case TokenPath:
		s.serveToken(w, r)
	case UsersPath:
		s.serveUsers(w, r)
	case "/_standin/stats":
		s.mu.Lock()
		stats := Stats{Requests: s.requests, Mints: s.mints, Violations: append([]string{}, s.violations...)}
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, stats)
	default:
		s.writeError(w, http.StatusNotFound, "NOT_FOUND", "no such endpoint")
	}
}

func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests++
	s.mu.Unlock()

	form, raw, breach := readContractForm(r)
	if breach != "" {
		s.recordViolation(breach)
		s.writeError(w, http.StatusBadRequest, CodeInvalidRequest, breach)
		return
	}
	if fault, ok := s.nextFault(); ok {
		s.serveFault(w, r, fault, raw)
		return
	}
	s.issue(w, form)
}

// serveUsers answers GET /api/user/manage/v1/users for a bearer token this
// stand-in issued and that has not expired, with an empty page; anything
// else is a 401.
func (s *Server) serveUsers(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.userCalls++
	s.mu.Unlock()
	if r.Method != http.MethodGet {
		s.recordViolation("users endpoint: method must be GET, got " + r.Method)
		s.writeError(w, http.StatusMethodNotAllowed, "INVALID_ARGUMENT", "method not allowed")
		return
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	rejectAll := s.rejectAll
	s.mu.Unlock()
	if !ok || rejectAll || !s.IsValid(token) {
		s.writeError(w, http.StatusUnauthorized, "UNAUTHENTICATED", "invalid or expired access token")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"users": []any{}, "next_cursor": ""})
}

// readContractForm checks everything the contract fixes about the request
// and returns its form. breach is non-empty when the request broke it.
func readContractForm(r *http.Request) (url.Values, []byte, string) {
	if r.Method != http.MethodPost {
		return nil, nil, "method must be POST, got " + r.Method
	}
	if r.Header.Get("Authorization") != "" {
		return nil, nil, "credentials must be sent in the form body, not in an Authorization header"
	}
	if r.URL.RawQuery != "" {
		return nil, nil, "parameters must be sent in the form body, not in the query string"
	}
	mediaType, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mediaType != "application/x-www-form-urlencoded" {
		return nil, nil, fmt.Sprintf("Content-Type must be application/x-www-form-urlencoded, got %q", r.Header.Get("Content-Type"))
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		return nil, nil, "unreadable body"
	}
	form, err := url.ParseQuery(string(raw))
	if err != nil {
		return nil, nil, "body is not valid form encoding"
	}
	for name, values := range form {
		switch name {
		case "grant_type", "client_id", "client_secret":
			if len(values) != 1 {
				return nil, nil, fmt.Sprintf("form field %s must appear once", name)
			}
		default:
			return nil, nil, fmt.Sprintf("unexpected form field %q", name)
		}
	}
	return form, raw, ""
}

func (s *Server) recordViolation(breach string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.violations = append(s.violations, breach)
}

func (s *Server) nextFault() (Fault, bool) {
	s.mu.Lock()
	if len(s.queued) > 0 {
		f := s.queued[0]
		s.queued = s.queued[1:]
		s.mu.Unlock()
		return f, true
	}
	if s.outage != nil {
		f := *s.outage
		s.mu.Unlock()
		return f, true
	}
	pick := s.chaos
	s.mu.Unlock()
	if pick != nil {
		return pick()
	}
	return Fault{}, false
}

func (s *Server) serveFault(w http.ResponseWriter, r *http.Request, f Fault, raw []byte) {
	if f.Stall > 0 && !sleep(r.Context(), f.Stall) {
		return // the client gave up
	}
	form, _ := url.ParseQuery(string(raw))
	if f.Status == 0 {
		s.issue(w, form)
		return
	}
	body := strings.ReplaceAll(f.Body, EchoedForm, string(raw))
	body = strings.ReplaceAll(body, EchoedSecret, form.Get("client_secret"))
	contentType := f.ContentType
	if contentType == "" {
		contentType = "application/json"
	}
	w.Header().Set("Content-Type", contentType)
	for k, v := range f.Header {
		w.Header().Set(k, v)
	}
	w.WriteHeader(f.Status)
	_, _ = io.WriteString(w, body)
}

// issue applies the documented checks in the documented order and answers
// with a token or the matching error.
func (s *Server) issue(w http.ResponseWriter, form url.Values) {
	if form.Get("grant_type") != "client_credentials" {
		s.writeError(w, http.StatusBadRequest, CodeInvalidGrantType, msgInvalidGrantType)
		return
	}
	clientID, clientSecret := form.Get("client_id"), form.Get("client_secret")
	if clientID == "" || clientSecret == "" {
		s.writeError(w, http.StatusBadRequest, CodeInvalidRequest, msgInvalidRequest)
		return
	}

	s.mu.Lock()
	known, ok := s.clients[clientID]
	if !ok || known != clientSecret {
		s.mu.Unlock()
		s.writeError(w, http.StatusUnauthorized, CodeInvalidClient, msgInvalidClient)
		return
	}
	token := newToken()
	lifetime := s.lifetime
	s.tokens[token] = issuedToken{clientID: clientID, expiresAt: s.clock().Add(lifetime)}
	s.issued = append(s.issued, token)
	s.mints++
	s.mu.Unlock()

	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": token,
		"token_type":   "Bearer",
		"expires_in":   int64(lifetime / time.Second),
	})
}

func (s *Server) writeError(w http.ResponseWriter, status int, code, message string) {
	s.mu.Lock()
	style := s.errorStyle
	s.mu.Unlock()
	if style == OAuthStyle {
		writeJSON(w, status, map[string]string{"error": strings.ToLower(code), "error_description": message})
		return
	}
	writeJSON(w, status, map[string]string{"code": code, "message": message})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func newToken() string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return "standin_" + hex.EncodeToString(b)
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
