package manus

import (
	"net/url"
	"strings"
	"testing"
)

func TestRedactSecret(t *testing.T) {
	secret := "a1b2c3+d4/e5=f6&g7"
	cases := []string{
		"echo " + secret,
		"echo client_secret=" + url.QueryEscape(secret),
		"echo " + url.PathEscape(secret),
		`{"m":"` + secret + `"}`,
		"truncated echo " + secret[:13], // a fragment of 12+ characters
	}
	for _, text := range cases {
		got := newRedactor(secret).redact(text)
		if strings.Contains(got, secret) || strings.Contains(got, url.QueryEscape(secret)) || strings.Contains(got, secret[:12]) {
			t.Errorf("redact(%q) = %q still holds the secret", text, got)
		}
	}
	if got := newRedactor(secret).redact("harmless"); got != "harmless" {
		t.Errorf("redact changed harmless text: %q", got)
	}
	upper := "echo " + strings.ToUpper(secret)
	if got := newRedactor(secret).redact(upper); strings.Contains(strings.ToLower(got), strings.ToLower(secret[:12])) {
		t.Errorf("an upper-cased echo survived: %q", got)
	}
}

func TestCleanMessage(t *testing.T) {
	if got := cleanMessage("line\nbreak\ttab\x00"); got != "line break tab" {
		t.Errorf("cleanMessage = %q", got)
	}
	if got := cleanMessage(strings.Repeat("m", 500)); got != strings.Repeat("m", 200)+"..." {
		t.Errorf("cleanMessage did not cut to 200: %d", len(got))
	}
}

func TestShortenKeepsRunes(t *testing.T) {
	if got := shorten("ééé", 3); got != "é..." {
		t.Fatalf("truncate split a rune: %q", got)
	}
}
