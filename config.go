package manus

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

const (
	configStorageKey = "config"

	defaultBaseURL          = "https://api.manus.im"
	defaultRequestTimeout   = 10 * time.Second
	maxRequestTimeout       = 30 * time.Second
	defaultRefreshThreshold = 10 * time.Minute
	maxRefreshThreshold     = 12 * time.Hour

	// clientIDPrefix starts every Manus client ID; without it, a warning.
	clientIDPrefix = "tm_"

	// maxClientIDLength, maxClientSecretLength and maxBaseURLLength bound
	// what one mount's writer makes the shared process hold and search
	// answers for; Manus's own are tm_ plus 22 characters, and 64 hex digits.
	maxClientIDLength     = 64
	maxClientSecretLength = 256
	maxBaseURLLength      = 256
)

// manusConfig is what an operator writes to <mount>/config; ClientSecret
// leaves the plugin only in token requests.
type manusConfig struct {
	ClientID         string        `json:"client_id"`
	ClientSecret     string        `json:"client_secret"`
	BaseURL          string        `json:"base_url"`
	RequestTimeout   time.Duration `json:"request_timeout"`
	CACert           string        `json:"ca_cert,omitempty"`
	RefreshThreshold time.Duration `json:"refresh_threshold"`
	// LeasedReads: a config stored before the field existed decodes true.
	LeasedReads bool `json:"leased_reads"`

	// Generation changes with every write that changes how tokens are
	// minted; a stored token carries the one it was minted under.
	Generation string `json:"generation"`
}

func newConfigGeneration() string { return rand.Text() }

// shortDuration prints 12h rather than 12h0m0s in messages.
func shortDuration(d time.Duration) string {
	s := d.String()
	s = strings.TrimSuffix(s, "m0s")
	if strings.HasSuffix(s, "h0") {
		s = strings.TrimSuffix(s, "0")
	} else if s != d.String() {
		s += "m"
	}
	return s
}

func newDefaultConfig() *manusConfig {
	return &manusConfig{
		BaseURL:          defaultBaseURL,
		RequestTimeout:   defaultRequestTimeout,
		RefreshThreshold: defaultRefreshThreshold,
		LeasedReads:      true,
	}
}

// sameUpstreamAs reports whether c mints exactly as other does: only the
// read mode may differ.
func (c *manusConfig) sameUpstreamAs(other *manusConfig) bool {
	a, b := *c, *other
	a.LeasedReads, b.LeasedReads = false, false
	a.Generation, b.Generation = "", ""
	return a == b
}

// fieldError names the field at fault: a 400 for the writer.
type fieldError struct {
	field   string
	problem string
}

func (e *fieldError) Error() string {
	return fmt.Sprintf("invalid %s: %s", e.field, e.problem)
}

// validate returns a merged config's first problem, in the order an
// operator fills the fields in.
func (c *manusConfig) validate() error {
	switch {
	case strings.TrimSpace(c.ClientID) == "":
		return &fieldError{"client_id", "must be set to the Manus credential's client ID"}
	case c.ClientSecret == "":
		return &fieldError{"client_secret", "must be set to the secret shown when the Manus credential was created"}
	}
	for _, field := range []struct {
		name, value string
		limit       int
	}{
		{"client_id", c.ClientID, maxClientIDLength},
		{"client_secret", c.ClientSecret, maxClientSecretLength},
		{"base_url", c.BaseURL, maxBaseURLLength},
	} {
		if len(field.value) > field.limit {
			return &fieldError{field.name, fmt.Sprintf("is %d bytes long; at most %d are accepted", len(field.value), field.limit)}
		}
		if problem := visibleASCIIProblem(field.value); problem != "" {
			return &fieldError{field.name, problem + "; " + asciiAdvice(field.name)}
		}
	}
	if err := validateBaseURL(c.BaseURL); err != nil {
		return err
	}
	switch {
	case c.RequestTimeout < time.Second || c.RequestTimeout > maxRequestTimeout:
		return &fieldError{"request_timeout", fmt.Sprintf("must be between 1s and %s, got %s", shortDuration(maxRequestTimeout), shortDuration(c.RequestTimeout))}
	case c.RefreshThreshold < time.Second || c.RefreshThreshold > maxRefreshThreshold:
		return &fieldError{"refresh_threshold", fmt.Sprintf("must be between 1s and %s, got %s", shortDuration(maxRefreshThreshold), shortDuration(c.RefreshThreshold))}
	}
	return nil
}

func asciiAdvice(field string) string {
	if field == "base_url" {
		return "write the URL in plain ASCII (an internationalised host name in its xn-- form)"
	}
	return "Manus credentials are visible ASCII (RFC 6749 appendix A): retype the value, or remove the character from the file it was read from"
}

// validateBaseURL allows plain http only for a loopback IP address: a name
// such as localhost is resolved at request time, and could lead elsewhere.
func validateBaseURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return &fieldError{"base_url", "must be an absolute URL such as " + defaultBaseURL}
	}
	switch {
	case u.User != nil:
		return &fieldError{"base_url", "must not contain user info; credentials go in client_id and client_secret"}
	case u.RawQuery != "" || u.ForceQuery:
		return &fieldError{"base_url", "must not have a query string"}
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return &fieldError{"base_url", "must not have a fragment"}
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && isLoopbackIP(u.Hostname()):
		return nil
	case u.Scheme == "http":
		return &fieldError{"base_url", "must use https; plain http is allowed only for a loopback IP address (127.0.0.1 or another 127.0.0.0/8 address, [::1]), not a host name such as localhost"}
	}
	return &fieldError{"base_url", fmt.Sprintf("has unsupported scheme %q; use https", u.Scheme)}
}

func isLoopbackIP(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// sameConfig compares stored configs (nil: none).
func sameConfig(a, b *manusConfig) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// warnings lists what is allowed but probably a mistake, never quoting the
// client ID.
func (c *manusConfig) warnings() []string {
	if strings.HasPrefix(c.ClientID, clientIDPrefix) {
		return nil
	}
	return []string{fmt.Sprintf("client_id does not start with %q like every Manus client ID; check that the client ID and secret were not swapped", clientIDPrefix)}
}

// shownClientID is the client ID as reads and logs show it: withheld if it
// may be a pasted secret.
func (c *manusConfig) shownClientID() string {
	if c.clientIDLooksLikeOne() {
		return c.ClientID
	}
	return fmt.Sprintf("(withheld: not a %s client ID of at most %d characters)", clientIDPrefix, maxClientIDLength)
}

func (c *manusConfig) clientIDLooksLikeOne() bool {
	return strings.HasPrefix(c.ClientID, clientIDPrefix) && len(c.ClientID) <= maxClientIDLength
}

func readConfig(ctx context.Context, s logical.Storage) (*manusConfig, error) {
	entry, err := s.Get(ctx, configStorageKey)
	if err != nil {
		return nil, fmt.Errorf("reading config from storage: %w", err)
	}
	if entry == nil {
		return nil, nil
	}
	cfg := newDefaultConfig()
	if err := entry.DecodeJSON(cfg); err != nil {
		return nil, fmt.Errorf("decoding stored config: %w", err)
	}
	return cfg, nil
}

func writeConfig(ctx context.Context, s logical.Storage, cfg *manusConfig) error {
	entry, err := logical.StorageEntryJSON(configStorageKey, cfg)
	if err != nil {
		return fmt.Errorf("encoding config: %w", err)
	}
	if err := s.Put(ctx, entry); err != nil {
		return fmt.Errorf("writing config to storage: %w", err)
	}
	return nil
}
