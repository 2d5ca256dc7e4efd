package manus

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
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

	// maxClientIDLength, maxClientSecretLength and maxBaseURLLength bound
	// what a config writer can make the plugin hold, send and search
	// upstream answers for, in the process every mount shares. Manus's own
	// are tm_ plus 22 characters, and 64 hex digits.
	maxClientIDLength     = 64
	maxClientSecretLength = 256
	maxBaseURLLength      = 256

	// maxCACertBytes and maxCACertificates bound ca_cert. It holds the CA
	// of a TLS-intercepting proxy, or a few; the system roots are kept, so
	// a whole public bundle is never needed, and it is parsed on every
	// config write and every cache build.
	maxCACertBytes    = 64 << 10
	maxCACertificates = 32
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

	// Generation changes on every write that changes how tokens are
	// minted; the stored token records the generation it was minted under.
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
		if err := checkVisibleASCII(field.name, field.value); err != nil {
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
	return nil
}

// sameConfig reports whether a and b (either may be nil: no config) are
// the same stored config.
func sameConfig(a, b *manusConfig) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
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
	if c.clientIDLooksLikeOne() {
		return c.ClientID
	}
	return fmt.Sprintf("(withheld: not a %s client ID of at most %d characters)", clientIDPrefix, maxClientIDLength)
}

// clientIDLooksLikeOne reports whether the client ID can be shown. One that
// does not may be a pasted secret and is treated as one: withheld from
// reads and logs, and removed from upstream text.
func (c *manusConfig) clientIDLooksLikeOne() bool {
	return strings.HasPrefix(c.ClientID, clientIDPrefix) && len(c.ClientID) <= maxClientIDLength
}

// shownClientID is the client ID as config and status reads show it:
// withheld where logs withhold it, since a value that does not look like a
// client ID may be a pasted secret.
func (c *manusConfig) shownClientID() string { return c.loggableClientID() }

// canonicalCACert checks a ca_cert as written and returns its canonical
// form: the certificates re-encoded, nothing else. It takes at most
// maxCACertBytes holding up to maxCACertificates PEM CERTIFICATE blocks with
// nothing but white space around them, so a private key or a note pasted
// with a certificate is refused, never stored or shown. "" removes the CA.
func canonicalCACert(data string) (string, error) {
	if data == "" {
		return "", nil
	}
	if len(data) > maxCACertBytes {
		return "", &fieldError{"ca_cert", fmt.Sprintf("is %d KiB; at most %d KiB of PEM (up to %d certificates) is accepted", (len(data)+1023)>>10, maxCACertBytes>>10, maxCACertificates)}
	}
	certs, err := decodeCertificates([]byte(data), true)
	if err != nil {
		return "", err
	}
	return encodeCertificates(certs), nil
}

// encodeCertificates is certs as PEM CERTIFICATE blocks, nothing else.
func encodeCertificates(certs []*x509.Certificate) string {
	var out strings.Builder
	for _, cert := range certs {
		out.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}))
	}
	return out.String()
}

// loadCACert reads a stored ca_cert. Configs stored by versions before
// 0.2.0 may hold text around the blocks, which is skipped.
func loadCACert(data string) ([]*x509.Certificate, error) {
	return decodeCertificates([]byte(data), false)
}

// shownCACert is a stored ca_cert as a config read shows it: only its
// certificates, whatever text an older version stored around them.
func shownCACert(stored string) string {
	certs, err := loadCACert(stored)
	if stored == "" || err != nil {
		return ""
	}
	return encodeCertificates(certs)
}

var pemBegin = []byte("-----BEGIN ")

// decodeCertificates reads PEM CERTIFICATE blocks in time linear in data:
// each block is decoded from where the last ended, without copying the
// rest. strict refuses text outside the blocks and more than
// maxCACertificates of them.
func decodeCertificates(rest []byte, strict bool) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		rest = bytes.TrimSpace(rest)
		if len(rest) == 0 {
			break
		}
		if strict && !bytes.HasPrefix(rest, pemBegin) {
			return nil, &fieldError{"ca_cert", "holds text outside its PEM blocks; give only -----BEGIN CERTIFICATE----- blocks (the text is not stored)"}
		}
		block, next := pem.Decode(rest)
		if block == nil {
			if strict || len(certs) == 0 {
				return nil, &fieldError{"ca_cert", "is not PEM: expected one or more -----BEGIN CERTIFICATE----- blocks"}
			}
			break // text after the last block of an old stored config
		}
		if err := checkCertificateBlock(block, len(certs), strict); err != nil {
			return nil, err
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, &fieldError{"ca_cert", "contains a certificate that does not parse: " + err.Error()}
		}
		certs = append(certs, cert)
		rest = next
	}
	if len(certs) == 0 {
		return nil, &fieldError{"ca_cert", "contains no certificate"}
	}
	return certs, nil
}

func checkCertificateBlock(block *pem.Block, before int, strict bool) error {
	switch {
	case block.Type != "CERTIFICATE":
		return &fieldError{"ca_cert", fmt.Sprintf("contains a %q PEM block; only CERTIFICATE blocks are accepted", shorten(block.Type, 40))}
	case len(block.Headers) > 0:
		return &fieldError{"ca_cert", "contains a CERTIFICATE block with PEM headers; give the certificate alone"}
	case strict && before == maxCACertificates:
		return &fieldError{"ca_cert", fmt.Sprintf("holds more than %d certificates", maxCACertificates)}
	}
	return nil
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
