package manus

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
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

	// clientIDPrefix starts every Manus client ID; a missing prefix is
	// worth a warning (a pasted secret?) but not a refusal.
	clientIDPrefix = "tm_"
)

// manusConfig is what an operator writes to <mount>/config. It is stored
// seal-wrapped; ClientSecret never leaves the plugin except in token requests.
type manusConfig struct {
	ClientID         string        `json:"client_id"`
	ClientSecret     string        `json:"client_secret"`
	BaseURL          string        `json:"base_url"`
	RequestTimeout   time.Duration `json:"request_timeout"`
	CACert           string        `json:"ca_cert,omitempty"`
	RefreshThreshold time.Duration `json:"refresh_threshold"`
	// LeasedReads chooses how token reads answer: a leased secret (true,
	// the default) or plain data with the rotating-secret fields and no
	// lease. A config stored before the field existed decodes as true.
	LeasedReads bool `json:"leased_reads"`

	// Generation changes on every write; the stored token records the
	// generation it was minted under.
	Generation string `json:"generation"`
}

// newConfigGeneration tags one written config; the token stored with it
// carries the same tag.
func newConfigGeneration() string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return hex.EncodeToString(b)
}

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

// sameUpstreamAs reports whether c mints exactly as other does: the same
// credential, endpoint, timeout, CA and refresh threshold. Only the read
// mode may differ, and a write that changes nothing else keeps the cached
// token and mints nothing.
func (c *manusConfig) sameUpstreamAs(other *manusConfig) bool {
	a, b := *c, *other
	a.LeasedReads, b.LeasedReads = false, false
	a.Generation, b.Generation = "", ""
	return a == b
}

// fieldError names the field at fault; it becomes a 400 for the writer.
type fieldError struct {
	field   string
	problem string
}

func (e *fieldError) Error() string {
	return fmt.Sprintf("invalid %s: %s", e.field, e.problem)
}

// validate checks a complete, merged config. It returns the first problem
// found, field by field in the order an operator fills them in.
func (c *manusConfig) validate() error {
	switch {
	case strings.TrimSpace(c.ClientID) == "":
		return &fieldError{"client_id", "must be set to the Manus credential's client ID"}
	case c.ClientSecret == "":
		return &fieldError{"client_secret", "must be set to the secret shown when the Manus credential was created"}
	}
	for _, field := range []struct{ name, value string }{
		{"client_id", c.ClientID},
		{"client_secret", c.ClientSecret},
		{"base_url", c.BaseURL},
	} {
		if err := checkCredentialCharacters(field.name, field.value); err != nil {
			return err
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
	if c.CACert != "" {
		if _, err := parsePEMCertificates(c.CACert); err != nil {
			return err
		}
	}
	return nil
}

// warnings lists what is allowed but probably a mistake. The client ID is
// not quoted: if it lacks the prefix it may be a pasted secret.
func (c *manusConfig) warnings() []string {
	if strings.HasPrefix(c.ClientID, clientIDPrefix) {
		return nil
	}
	return []string{fmt.Sprintf("client_id does not start with %q like every Manus client ID; check that the client ID and secret were not swapped", clientIDPrefix)}
}

// loggableClientID is the client ID for log lines, withheld when it does not
// look like one: a client_secret written into client_id must not be logged.
func (c *manusConfig) loggableClientID() string {
	if strings.HasPrefix(c.ClientID, clientIDPrefix) && len(c.ClientID) <= 64 {
		return c.ClientID
	}
	return "(withheld: lacks the tm_ prefix)"
}

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
	case u.Scheme == "http" && isLoopbackHost(u.Hostname()):
		return nil
	case u.Scheme == "http":
		return &fieldError{"base_url", "must use https; plain http is allowed only for loopback hosts (localhost, 127.0.0.0/8, ::1)"}
	}
	return &fieldError{"base_url", fmt.Sprintf("has unsupported scheme %q; use https", u.Scheme)}
}

func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// parsePEMCertificates accepts one or more PEM CERTIFICATE blocks and
// nothing else, so a pasted private key or a truncated block is refused.
func parsePEMCertificates(data string) ([]*x509.Certificate, error) {
	rest := []byte(strings.TrimSpace(data))
	var certs []*x509.Certificate
	for len(rest) > 0 {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, &fieldError{"ca_cert", "is not PEM: expected one or more -----BEGIN CERTIFICATE----- blocks"}
		}
		if block.Type != "CERTIFICATE" {
			return nil, &fieldError{"ca_cert", fmt.Sprintf("contains a %q PEM block; only CERTIFICATE blocks are accepted", block.Type)}
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, &fieldError{"ca_cert", "contains a certificate that does not parse: " + err.Error()}
		}
		certs = append(certs, cert)
		rest = []byte(strings.TrimSpace(string(rest)))
	}
	if len(certs) == 0 {
		return nil, &fieldError{"ca_cert", "contains no certificate"}
	}
	return certs, nil
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
