package manus

import (
	"fmt"
	"net/url"
	"os"
	"strings"
	"unicode"
)

// The secret's destination is base_url and ca_cert; a write sends a secret
// only to one it confirms (docs/configuration.md#where-the-secret-goes).

// allowedBaseURLsEnv restricts base_url for every mount at registration
// (`vault plugin register -env`); unset, any is allowed.
const allowedBaseURLsEnv = "MANUS_ALLOWED_BASE_URLS"

// checkSecretDestination refuses a write that would send a secret where the
// write does not confirm: one without client_secret may not move the
// stored one; one with it must restate base_url and ca_cert unless they
// are the defaults, so a planted destination cannot capture a rotation.
func checkSecretDestination(base, cfg *manusConfig, written func(field string) bool) error {
	if base == nil {
		return nil // a first write: every field is this write's or a default
	}
	if !written("client_secret") {
		return checkStoredSecretStays(base, cfg)
	}
	var unconfirmed []string
	if !written("base_url") && cfg.BaseURL != defaultBaseURL {
		unconfirmed = append(unconfirmed, "base_url")
	}
	if !written("ca_cert") && cfg.CACert != "" {
		unconfirmed = append(unconfirmed, "ca_cert")
	}
	if len(unconfirmed) == 0 {
		return nil
	}
	return &fieldError{"client_secret", fmt.Sprintf(
		"is sent only where the same write says: it would go to %s, trusting %s, and this write does not restate %s (kept from the stored config). Nothing was sent or stored. If that is where it belongs, write %s again with client_secret; to go back to the default endpoint, write base_url=%s ca_cert=\"\" with it",
		tokenURLOf(cfg.BaseURL), trustedRoots(cfg.CACert), strings.Join(unconfirmed, " and "), strings.Join(unconfirmed, " and "), defaultBaseURL)}
}

func checkStoredSecretStays(base, cfg *manusConfig) error {
	var changed []string
	if cfg.BaseURL != base.BaseURL {
		changed = append(changed, "base_url")
	}
	if cfg.CACert != base.CACert {
		changed = append(changed, "ca_cert")
	}
	if len(changed) == 0 {
		return nil
	}
	fields := strings.Join(changed, " and ")
	return &fieldError{"client_secret", fmt.Sprintf("must be written in the same write that changes %s: the stored secret is only sent where, and over TLS trusting what, it was written for. Nothing was sent or stored; write %s again together with client_secret=...", fields, fields)}
}

// trustedRoots says what a config's token requests trust, by subject.
func trustedRoots(caCert string) string {
	if caCert == "" {
		return "the system roots"
	}
	certs, err := loadCACert(caCert)
	if err != nil {
		return "the system roots and a ca_cert that does not load"
	}
	subjects := make([]string, 0, len(certs))
	for _, cert := range certs {
		subjects = append(subjects, fmt.Sprintf("%q", shorten(cert.Subject.String(), 64)))
	}
	return fmt.Sprintf("the system roots and ca_cert (%d certificate(s): %s)", len(certs), shorten(strings.Join(subjects, ", "), 300))
}

// allowedBaseURLs is the registration's list of base URLs (empty: any).
type allowedBaseURLs []string

// allowedBaseURLsFromEnv reads base URLs separated by commas or spaces
// (OpenBao's catalog API splits an env value at commas).
func allowedBaseURLsFromEnv() (allowedBaseURLs, error) {
	var allowed allowedBaseURLs
	separator := func(r rune) bool { return r == ',' || unicode.IsSpace(r) }
	for _, entry := range strings.FieldsFunc(os.Getenv(allowedBaseURLsEnv), separator) {
		if err := validateBaseURL(entry); err != nil {
			return nil, fmt.Errorf("%s: %q %s", allowedBaseURLsEnv, entry, strings.TrimPrefix(err.Error(), "invalid base_url: "))
		}
		allowed = append(allowed, normalBaseURL(entry))
	}
	return allowed, nil
}

// normalBaseURL: scheme and host in lower case, no trailing slash.
func normalBaseURL(raw string) string {
	u, err := url.Parse(strings.TrimRight(raw, "/"))
	if err != nil {
		return raw
	}
	u.Scheme, u.Host = strings.ToLower(u.Scheme), strings.ToLower(u.Host)
	return u.String()
}

func (a allowedBaseURLs) permit(baseURL string) error {
	if len(a) == 0 {
		return nil
	}
	normal := normalBaseURL(baseURL)
	for _, allowed := range a {
		if normal == allowed {
			return nil
		}
	}
	return &fieldError{"base_url", fmt.Sprintf("%s is not one of the base URLs the plugin was registered to allow (%s: %s); ask whoever registers the plugin", baseURL, allowedBaseURLsEnv, strings.Join(a, ", "))}
}
