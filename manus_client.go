package manus

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/net/http/httpproxy"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

const (
	// tokenEndpointPath is appended to base_url to mint tokens.
	tokenEndpointPath = "/api/user/manage/v1/oauth/token" //nolint:gosec // G101: a URL path, not a credential

	// usersEndpointPath is what the status probe calls with the token.
	usersEndpointPath = "/api/user/manage/v1/users"

	// maxTokenResponseBytes and maxResponseHeaderBytes cap what the client
	// reads of an answer's body and of its status line and headers: real
	// ones are a few hundred bytes, and all of it is searched for the secret.
	maxTokenResponseBytes  = 64 << 10
	maxResponseHeaderBytes = 16 << 10
)

// tokenURLOf is where a config with baseURL sends the credentials.
func tokenURLOf(baseURL string) string {
	return strings.TrimRight(baseURL, "/") + tokenEndpointPath
}

// manusClient mints tokens with the OAuth2 client-credentials grant, for one
// mount, reusing its idle connections between mints.
type manusClient struct {
	oauth          clientcredentials.Config
	redactor       *redactor // takes the secret out of upstream text
	baseURL        string
	tokenURL       string
	attemptTimeout time.Duration
	transport      http.RoundTripper
	clock          func() time.Time
	logger         hclog.Logger
}

// newManusClient builds the client for cfg; logger takes its notes about
// odd but usable token responses.
func newManusClient(cfg *manusConfig, clock func() time.Time, logger hclog.Logger) (*manusClient, error) {
	transport, err := newTransport(cfg.CACert)
	if err != nil {
		return nil, err
	}
	tokenURL := tokenURLOf(cfg.BaseURL)
	return &manusClient{
		oauth:          clientCredentialsConfig(cfg.ClientID, cfg.ClientSecret, tokenURL),
		redactor:       newRedactor(cfg.ClientSecret, withheldClientID(cfg)),
		baseURL:        strings.TrimRight(cfg.BaseURL, "/"),
		tokenURL:       tokenURL,
		attemptTimeout: cfg.RequestTimeout,
		transport:      transport,
		clock:          clock,
		logger:         logger,
	}, nil
}

// withheldClientID is the client ID if reads and logs withhold it, so it is
// removed from upstream text too; else "".
func withheldClientID(cfg *manusConfig) string {
	if cfg.clientIDLooksLikeOne() {
		return ""
	}
	return cfg.ClientID
}

// clientCredentialsConfig is the exchange of RFC 6749 section 4.4.
func clientCredentialsConfig(clientID, clientSecret, tokenURL string) clientcredentials.Config {
	return clientcredentials.Config{
		ClientID:     clientID,
		ClientSecret: clientSecret,
		TokenURL:     tokenURL,
		// The form body only: auto-detect would try HTTP Basic first
		// and send every failing request twice.
		AuthStyle: oauth2.AuthStyleInParams,
	}
}

// newTransport builds one mount's transport, reading the proxy settings
// (`vault plugin register -env HTTPS_PROXY=...`) when it is built.
func newTransport(caPEM string) (*http.Transport, error) {
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
	if caPEM != "" {
		pool, err := certPoolWith(caPEM)
		if err != nil {
			return nil, err
		}
		tlsConfig.RootCAs = pool
	}
	proxyForURL := httpproxy.FromEnvironment().ProxyFunc()
	return &http.Transport{
		Proxy: func(req *http.Request) (*url.URL, error) {
			return proxyForURL(req.URL)
		},
		DialContext:            (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:        tlsConfig,
		TLSHandshakeTimeout:    10 * time.Second,
		MaxResponseHeaderBytes: maxResponseHeaderBytes,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           2,
		IdleConnTimeout:        90 * time.Second,
		ExpectContinueTimeout:  time.Second,
	}, nil
}

// certPoolWith is the system roots plus the given certificates: a proxy's CA
// adds to the public roots rather than replacing them.
func certPoolWith(caPEM string) (*x509.CertPool, error) {
	certs, err := loadCACert(caPEM)
	if err != nil {
		return nil, err
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	for _, cert := range certs {
		pool.AddCert(cert)
	}
	return pool, nil
}

// close releases the idle connections of a client being replaced, rather
// than leave them (and their goroutines) until the idle timeout.
func (c *manusClient) close() {
	if t, ok := c.transport.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
}

// mintToken makes one token request. Every failure is an *upstreamError
// built from what the exchange recorded, never the body or oauth2's error
// text, which can carry the request form.
func (c *manusClient) mintToken(ctx context.Context) (*accessToken, error) {
	ctx, cancel := context.WithTimeout(ctx, c.attemptTimeout)
	defer cancel()

	exchange := &recordedExchange{base: c.transport, limit: maxTokenResponseBytes}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, &http.Client{Transport: exchange, CheckRedirect: refuseRedirects})

	sentAt := c.clock()
	tok, err := c.oauth.Token(ctx)
	if err != nil {
		return nil, c.describeFailure(ctx, err, exchange)
	}
	return c.acceptToken(tok, exchange, sentAt)
}

// acceptToken checks a token oauth2 parsed and anchors its expiry at the
// time the request was sent: early by the round trip, never late.
func (c *manusClient) acceptToken(tok *oauth2.Token, exchange *recordedExchange, sentAt time.Time) (*accessToken, error) {
	if err := c.checkTokenType(tok.TokenType, exchange); err != nil {
		return nil, err
	}
	// oauth2 stamps Expiry with the real clock when the answer arrives.
	lifetime, err := tokenLifetime(tok, time.Now())
	if err != nil {
		return nil, c.badResponse(exchange, err.Error())
	}
	return newAccessToken(tok.AccessToken, sentAt, lifetime), nil
}

// checkTokenType accepts Bearer in any case (RFC 6749 section 5.1) and a
// missing or null token_type (the vendor does not mark it required, and
// gateways drop nulls); another type cannot be sent as a bearer token.
func (c *manusClient) checkTokenType(tokenType string, exchange *recordedExchange) error {
	switch {
	case strings.EqualFold(tokenType, "Bearer"):
		return nil
	case tokenType == "" && !exchange.hasField("token_type"):
		c.logger.Debug("the token response has no token_type; taking it as Bearer")
		return nil
	}
	return c.badResponse(exchange, fmt.Sprintf("token_type is %q, expected Bearer", c.quote(tokenType, nil, 32)))
}

// describeFailure turns a failed exchange into an operator-facing error.
func (c *manusClient) describeFailure(ctx context.Context, err error, exchange *recordedExchange) error {
	switch {
	case exchange.status == 0 && isTimeout(ctx, err):
		return &upstreamError{kind: failTimeout, tokenURL: c.tokenURL, timeout: c.attemptTimeout}
	case exchange.status == 0:
		return &upstreamError{kind: failConnection, tokenURL: c.tokenURL, detail: c.quote(connectionReason(err), nil, maxReasonLength)}
	case exchange.oversized:
		return c.badResponse(exchange, fmt.Sprintf("the body is larger than %d KiB", maxTokenResponseBytes>>10))
	}
	if isTimeout(ctx, err) {
		return &upstreamError{kind: failTimeout, tokenURL: c.tokenURL, timeout: c.attemptTimeout}
	}
	body := parseErrorBody(exchange.body)
	switch {
	case body.code != "" || exchange.status >= 300:
		return c.statusError(exchange, body)
	default:
		return c.badResponse(exchange, describeUnparsable(exchange))
	}
}

func (c *manusClient) statusError(exchange *recordedExchange, body errorBody) error {
	e := &upstreamError{
		tokenURL: c.tokenURL,
		status:   exchange.status,
		code:     c.safeCode(body.code),
		detail:   cleanMessage(c.redact(body.message)),
	}
	switch {
	case exchange.status == http.StatusTooManyRequests:
		e.kind = failRateLimited
		e.retryAfter = parseRetryAfter(exchange.retryAfter, c.clock())
	case exchange.status >= 500:
		e.kind = failUnavailable
	case exchange.status >= 300 && exchange.status < 400:
		e.kind = failRedirect
	default:
		e.kind = failRejected
	}
	return e.classify()
}

func (c *manusClient) badResponse(exchange *recordedExchange, why string) error {
	return &upstreamError{kind: failBadResponse, tokenURL: c.tokenURL, status: exchange.status, detail: c.redact(why)}
}

func (c *manusClient) redact(text string) string {
	return c.redactor.redact(text)
}

// quote is upstream text fit for a message: redacted (of the probe's token
// too, if given), then shortened; the other way round could leave part of
// a secret.
func (c *manusClient) quote(text string, token *redactor, limit int) string {
	text = c.redact(text)
	if token != nil {
		text = token.redact(text)
	}
	return shorten(text, limit)
}

// safeCode drops an error code that carries part of the secret, as an
// upstream echoing the form into its "error" field would.
func (c *manusClient) safeCode(code string) string {
	if code != "" && c.redactor.holdsFragment(code) {
		return ""
	}
	return code
}

func isTimeout(ctx context.Context, err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return true
	}
	var netErr net.Error
	return errors.As(err, &netErr) && netErr.Timeout()
}

// maxReasonLength is how much of a transport's reason an error shows.
const maxReasonLength = 300

// connectionReason is the transport's reason without its URL wrapper; it
// can quote a malformed answer, so quote it before use.
func connectionReason(err error) string {
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		err = urlErr.Err
	}
	return err.Error()
}

// refuseRedirects: following would re-send the form (secret included) or
// the bearer token wherever the redirect points.
func refuseRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// probeResult is what the status probe learned: nothing of the body but
// its error code.
type probeResult struct {
	httpStatus int
	code       string
	roundTrip  time.Duration
	err        error
}

func (r probeResult) accepted() bool { return r.httpStatus >= 200 && r.httpStatus < 300 }

// rejectsToken reports a 401: the token itself refused.
func (r probeResult) rejectsToken() bool { return r.httpStatus == http.StatusUnauthorized }

// probeUsers calls GET /api/user/manage/v1/users?limit=1 with token.
func (c *manusClient) probeUsers(ctx context.Context, token string) probeResult {
	ctx, cancel := context.WithTimeout(ctx, c.attemptTimeout)
	defer cancel()
	usersURL := c.baseURL + usersEndpointPath
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, usersURL+"?limit=1", nil)
	if err != nil {
		return probeResult{err: err}
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	client := &http.Client{Transport: c.transport, CheckRedirect: refuseRedirects}
	tokenRedactor := newRedactor(token)
	started := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		result := probeResult{roundTrip: time.Since(started)}
		if isTimeout(ctx, err) {
			result.err = fmt.Errorf("no answer from %s within %s (request_timeout)", usersURL, c.attemptTimeout)
		} else {
			result.err = fmt.Errorf("could not reach %s: %s", usersURL, c.quote(connectionReason(err), tokenRedactor, maxReasonLength))
		}
		return result
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxTokenResponseBytes))
	result := probeResult{httpStatus: resp.StatusCode, roundTrip: time.Since(started)}
	if resp.StatusCode >= 300 {
		code := c.safeCode(parseErrorBody(body).code)
		if !tokenRedactor.holdsFragment(code) {
			result.code = code
		}
	}
	return result
}
