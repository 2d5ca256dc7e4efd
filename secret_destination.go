package manus

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
)

// The client secret leaves Vault only for the token endpoint its writer
// chose: base_url, over TLS checked against the system roots plus ca_cert.
// Together they are the secret's destination, and a write may send a secret
// only to a destination it confirms itself. See docs/security-model.md.

// allowedBaseURLsEnv names the variable with which whoever registers the
// plugin (`vault plugin register -env`) can restrict base_url for every
// mount, whatever a config writer writes. Unset, any base_url is allowed.
const allowedBaseURLsEnv = "MANUS_ALLOWED_BASE_URLS"

// tokenURLOf is the token endpoint a config with baseURL sends the
// credentials to.
func tokenURLOf(baseURL string) string {
	return strings.TrimRight(baseURL, "/") + tokenEndpointPath
}

// checkSecretDestination refuses a write that would send a client secret
// somewhere its writer did not confirm in that same write:
//   - a write without client_secret sends the stored one, so it may not move
//     base_url or ca_cert: whoever may update the config but does not know
//     the secret cannot redirect it;
//   - a write with client_secret sends the new one, so base_url and ca_cert
//     must each be written with it or be the defaults (https://api.manus.im,
//     the system roots): a destination planted by an earlier write cannot
//     capture the next rotation.
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
		"is sent only where the same write says: the stored config would send it to %s, trusting %s, and this write does not restate %s. Nothing was sent or stored. If that is where it belongs, write %s again with client_secret; to go back to the default endpoint, write base_url=%s ca_cert=\"\" with it",
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

// trustedRoots says what a config's token requests trust, for messages and
// the config write's answer: the system roots, and the certificates of
// ca_cert by subject.
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

// validateBaseURL checks a base_url as written. Plain http is allowed only
// for a loopback IP address, where the secret never leaves the host; a name
// such as localhost is resolved at request time, through /etc/hosts or DNS,
// and could lead elsewhere.
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

// allowedBaseURLs is the registration's list of base URLs (empty: any).
type allowedBaseURLs []string

// allowedBaseURLsFromEnv reads allowedBaseURLsEnv: base URLs separated by
// commas, each one checked as a base_url is.
func allowedBaseURLsFromEnv() (allowedBaseURLs, error) {
	var allowed allowedBaseURLs
	for _, entry := range strings.Split(os.Getenv(allowedBaseURLsEnv), ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		if err := validateBaseURL(entry); err != nil {
			return nil, fmt.Errorf("%s: %q %s", allowedBaseURLsEnv, entry, strings.TrimPrefix(err.Error(), "invalid base_url: "))
		}
		allowed = append(allowed, normalBaseURL(entry))
	}
	return allowed, nil
}

// normalBaseURL is how base URLs compare: scheme and host in lower case, no
// trailing slash.
func normalBaseURL(raw string) string {
	u, err := url.Parse(strings.TrimRight(raw, "/"))
	if err != nil {
		return raw
	}
	u.Scheme, u.Host = strings.ToLower(u.Scheme), strings.ToLower(u.Host)
	return u.String()
}

// permit refuses a base_url the registration does not allow.
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
