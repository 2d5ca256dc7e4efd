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
	// tokenEndpointPath is appended to base_url; it is the only Manus
	// endpoint the plugin calls to mint tokens.
	tokenEndpointPath = "/api/user/manage/v1/oauth/token" //nolint:gosec // G101: a URL path, not a credential

	// usersEndpointPath is what the status probe calls with the token, the
	// endpoint family the token exists for.
	usersEndpointPath = "/api/user/manage/v1/users"

	// maxTokenResponseBytes caps what the plugin reads of a token response
	// (and of the users API's answer to the probe), and
	// maxResponseHeaderBytes the status line and headers of either. Real
	// answers are a few hundred bytes; the caps keep a misbehaving upstream
	// or proxy from making the plugin buffer, and search for the secret,
	// megabytes.
	maxTokenResponseBytes  = 64 << 10
	maxResponseHeaderBytes = 16 << 10
)

// manusClient mints access tokens from the Manus token endpoint with the
// OAuth2 client-credentials grant. It holds one mount's credentials and a
// transport whose idle connections are reused between mints.
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

// newManusClient builds the client for cfg: the client reads the config,
// the config knows nothing of the client. logger takes its debug notes
// about odd but usable token responses.
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

// withheldClientID is the client ID if reads and logs withhold it (it may be
// a pasted secret), for upstream text to be rid of it too; else "".
func withheldClientID(cfg *manusConfig) string {
	if cfg.clientIDLooksLikeOne() {
		return ""
	}
	return cfg.ClientID
}

// clientCredentialsConfig is the OAuth2 client-credentials exchange (RFC 6749
// section 4.4) with the Manus token endpoint at tokenURL.
func clientCredentialsConfig(clientID, clientSecret, tokenURL string) clientcredentials.Config {
	return clientcredentials.Config{
		ClientID:     clientID,
		ClientSecret: clientSecret,
		TokenURL:     tokenURL,
		// Manus takes the credentials in the form body only. The
		// auto-detect default would try HTTP Basic first and send every
		// failing request twice.
		AuthStyle: oauth2.AuthStyleInParams,
	}
}

// newTransport builds the HTTP transport for one mount. The proxy settings
// are read from the environment when the transport is built, so
// `vault plugin register -env HTTPS_PROXY=...` applies on the next config
// load without a process-wide cache.
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

// certPoolWith returns the system roots plus the given PEM certificates, so a
// CA for a TLS-intercepting proxy adds to the public roots rather than
// replacing them.
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

// close releases the idle connections of a client that is being replaced,
// so a replaced config leaves no upstream connection (and its goroutines)
// open until the idle timeout.
func (c *manusClient) close() {
	if t, ok := c.transport.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
}

// mintToken makes one token request. It never returns the upstream body or
// an oauth2 error text, both of which can carry the request form: every
// failure is an *upstreamError built from what the exchange recorded.
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

// acceptToken checks a token oauth2 parsed and anchors its expiry at the time
// the request was sent, which errs on the early side by the round trip.
func (c *manusClient) acceptToken(tok *oauth2.Token, exchange *recordedExchange, sentAt time.Time) (*accessToken, error) {
	if err := c.checkTokenType(tok.TokenType, exchange); err != nil {
		return nil, err
	}
	// A duration between two readings of the real clock: oauth2 stamps
	// Expiry with time.Now when the answer arrives.
	lifetime, err := tokenLifetime(tok, time.Now())
	if err != nil {
		return nil, c.badResponse(exchange, err.Error())
	}
	return newAccessToken(tok.AccessToken, sentAt, lifetime), nil
}

// checkTokenType accepts Bearer in any letter case (RFC 6749 section 5.1:
// the type is case insensitive) and a token_type that is missing or null.
// The vendor page lists token_type without marking it required, and gateways
// that drop null fields exist, so its absence is taken as Bearer, the only
// type Manus issues. A type that is present and different (DPoP, MAC, "")
// cannot be used as "Authorization: Bearer" and fails the mint.
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

// redact removes the client secret (and a withheld client ID), in every
// encoding a form echo could use, from text that came from upstream.
func (c *manusClient) redact(text string) string {
	return c.redactor.redact(text)
}

// quote is upstream text made fit for a message: the client secret and
// token (if any: the probe's redactor) removed first, then shortened to at
// most limit bytes. Shortening first could cut a secret so that what is left
// of it no longer looks like it.
func (c *manusClient) quote(text string, token *redactor, limit int) string {
	text = c.redact(text)
	if token != nil {
		text = token.redact(text)
	}
	return shorten(text, limit)
}

// safeCode drops an error code that carries part of the client secret: an
// upstream that echoes the form into its "error" field would otherwise put
// the secret, upper-cased, into every message and log line.
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

// maxReasonLength is how much of a transport's reason for a failure an
// error shows.
const maxReasonLength = 300

// connectionReason keeps the transport's own reason (refused, no such host,
// certificate problems) without the URL wrapper around it. It is upstream
// text (a malformed answer is quoted in it): quote it before use.
func connectionReason(err error) string {
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		err = urlErr.Err
	}
	return err.Error()
}

// refuseRedirects makes a client return a redirect instead of following it:
// following would re-send the token form (secret included) or the bearer
// token to wherever it points, and neither endpoint has reason to redirect.
func refuseRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// probeResult is what the status probe learned from the users endpoint:
// never any of the response body beyond its error code.
type probeResult struct {
	httpStatus int
	code       string
	roundTrip  time.Duration
	err        error
}

// accepted reports whether the users API took the token.
func (r probeResult) accepted() bool { return r.httpStatus >= 200 && r.httpStatus < 300 }

// rejectsToken reports whether the users API refused the token itself (401),
// as opposed to refusing the request or failing.
func (r probeResult) rejectsToken() bool { return r.httpStatus == http.StatusUnauthorized }

// probeUsers calls GET /api/user/manage/v1/users?limit=1 with token, to
// prove the credential end to end.
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
			// A broken answer can quote what was sent: the token as well
			// as the secret come out of the reason.
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
