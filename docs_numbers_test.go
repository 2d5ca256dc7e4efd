package manus

import (
	"cmp"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The tuned numbers the docs state come from the code. In Markdown each
// carries an invisible marker naming it, the unit read from the text:
// `at most <!-- maxSafetyMargin -->60 s` (or 1 minute, 1-minute, `60s`);
// <!-- name*2 --> states a multiple, <!-- unchecked --> a number that is
// none of these. Help texts cannot carry markers: docsHelpStates lists the
// numbers each states. How to state a number: CONTRIBUTING.md.

// docsValue is a value in seconds ("s"), bytes ("B"), attempts, or the n
// of a fraction 1/n ("1/").
type docsValue struct {
	n    float64
	unit string
}

// docsConstant is a tuned number, the page that states it and the words
// that name it: a paragraph stating its value next to them restates it.
type docsConstant struct {
	value docsValue
	home  string
	words *regexp.Regexp
}

func docsConstants() map[string]docsConstant {
	const caching, failure = "docs/caching-and-leases.md", "docs/failure-behaviour.md"
	p := defaultRetryPolicy
	c := func(v docsValue, home, words string) docsConstant {
		return docsConstant{v, home, regexp.MustCompile("(?i)" + words)}
	}
	s := func(d time.Duration) docsValue { return docsValue{d.Seconds(), "s"} }
	return map[string]docsConstant{
		"safetyMarginFraction":         c(docsValue{safetyMarginFraction, "1/"}, caching, "margin|lifetime"),
		"maxSafetyMargin":              c(s(maxSafetyMargin), caching, "margin"),
		"defaultRefreshThreshold":      c(s(defaultRefreshThreshold), caching, "refresh|threshold"),
		"oneHourRotationPeriod":        c(s(hourToken().rotationPeriod(defaultRefreshThreshold)), caching, "mint|rotation|token"),
		"maxRereadSpread":              c(s(maxRereadSpread), caching, "spread|tenth"),
		"maxRefreshThreshold":          c(s(maxRefreshThreshold), "README.md", "refresh_threshold"),
		"defaultRetryPolicy.attempts":  c(docsValue{float64(p.attempts), "attempts"}, failure, ""),
		"defaultRetryPolicy.baseDelay": c(s(p.baseDelay), failure, "back-off|delay|retr"),
		"defaultRetryPolicy.maxDelay":  c(s(p.maxDelay), failure, "retr|attempt"),
		"defaultRetryPolicy.budget":    c(s(p.budget), failure, "budget|mint"),
		"readerWaitSlack":              c(s(readerWaitSlack), failure, "request_timeout|wait"),
		"minFailureBackoff":            c(s(minFailureBackoff), failure, "back-?off"),
		"maxFailureBackoff":            c(s(maxFailureBackoff), failure, "back-?off"),
		"maxHonouredRetryAfter":        c(s(maxHonouredRetryAfter), failure, "retry-after"),
		"maxTokenResponseBytes":        c(docsValue{maxTokenResponseBytes, "B"}, failure, "response|answer|body"),
		"fallbackTokenLifetime":        c(s(fallbackTokenLifetime), failure, "lifetime|expires_in"),
		"minTokenLifetime":             c(s(minTokenLifetime), failure, "lifetime|expires_in"),
		"maxTokenLifetime":             c(s(maxTokenLifetime), failure, "lifetime|expires_in"),
		"defaultRequestTimeout":        c(s(defaultRequestTimeout), failure, "request_timeout|token request"),
		"maxRequestTimeout":            c(s(maxRequestTimeout), failure, "request_timeout|token request"),
		"maxCACertBytes":               c(docsValue{maxCACertBytes, "B"}, "docs/configuration.md", "ca_cert|certificate"),
		"maxCACertificates":            c(docsValue{maxCACertificates, "certificates"}, "docs/configuration.md", "ca_cert|certificate"),
		"firstRejectionRemintWait":     c(s(firstRejectionRemintWait), failure, "reject"),
		"maxRejectionRemintWait":       c(s(maxRejectionRemintWait), failure, "reject"),
		"minRefreshInterval":           c(s(minRefreshInterval), failure, "refresh"),
		"firstRefusalWindow":           c(s(firstRefusalWindow), "docs/cluster.md", "refus"),
		"maxRefusalWindow":             c(s(maxRefusalWindow), "docs/cluster.md", "refus"),
		"maxResponseHeaderBytes":       c(docsValue{maxResponseHeaderBytes, "B"}, failure, "header|status line"),
		"maxClientIDLength":            c(docsValue{maxClientIDLength, "characters"}, "docs/configuration.md", "client_id|client ID"),
		"maxClientSecretLength":        c(docsValue{maxClientSecretLength, "characters"}, "docs/configuration.md", "client_secret|secret"),
		"maxBaseURLLength":             c(docsValue{maxBaseURLLength, "characters"}, "docs/configuration.md", "base_url"),
	}
}

// docsHelpStates are the numbers each path's help states.
var docsHelpStates = map[string][]string{
	"help:token":         {"defaultRefreshThreshold", "safetyMarginFraction", "maxSafetyMargin"},
	"help:config":        {"maxRequestTimeout", "maxRefreshThreshold", "maxCACertBytes", "maxCACertificates", "maxClientIDLength", "maxClientSecretLength", "maxBaseURLLength"},
	"help:token/refresh": {"minRefreshInterval"},
}

// docsStated is a number: its marker's name (1) and multiple (2), a
// fraction's "1/" (3), the number (4) and its unit (5).
var docsStated = regexp.MustCompile("(?:<!-- ([\\w.]+)(?:\\*(\\d+))? -->)?`?(1/)?\\b(\\d+(?:\\.\\d+)?)(?:[ -]?(seconds?|s|minutes?|min|m|hours?|h|KiB|attempts|certificates|characters))?\\b")

// docsScales is what one of a unit is, by the unit's first letters, the
// longer prefix first.
var docsScales = []struct {
	prefix string
	one    docsValue
}{{"ch", docsValue{1, "characters"}}, {"c", docsValue{1, "certificates"}}, {"a", docsValue{1, "attempts"}},
	{"K", docsValue{1024, "B"}}, {"h", docsValue{3600, "s"}}, {"m", docsValue{60, "s"}}, {"", docsValue{1, "s"}}}

func docsScale(unit string) docsValue {
	for _, scale := range docsScales {
		if strings.HasPrefix(unit, scale.prefix) {
			return scale.one
		}
	}
	return docsValue{}
}

// TestDocsNumbersMatchTheCode: every marked number has the code's value;
// every constant is marked on its home page and stated in the help texts
// docsHelpStates names; no page or help text states one unmarked next to
// the words that name it.
func TestDocsNumbersMatchTheCode(t *testing.T) {
	constants, sources := docsConstants(), docsSources(t)
	names, atHome := slices.Sorted(maps.Keys(constants)), map[string]bool{}
	for _, source := range slices.Sorted(maps.Keys(sources)) {
		stated := map[docsValue]bool{}
		for _, unit := range sources[source] {
			for _, m := range docsStated.FindAllStringSubmatch(unit, -1) {
				name, said := m[1], strings.Trim(m[0][strings.Index(m[0], ">")+1:], "`")
				n, _ := strconv.ParseFloat(m[4], 64)
				var v, scale docsValue // without a unit, no value of ours
				if m[3] != "" {
					v = docsValue{n, "1/"}
				} else if m[5] != "" {
					scale = docsScale(m[5])
					v = docsValue{n * scale.n, scale.unit}
				}
				stated[v] = true
				c, known := constants[name]
				k, _ := strconv.Atoi(cmp.Or(m[2], "1"))
				want := docsValue{c.value.n * float64(k), c.value.unit}
				switch {
				case name == "":
					for _, name := range names {
						if c := constants[name]; v == c.value && c.words.MatchString(unit) && !slices.Contains(docsHelpStates[source], name) {
							t.Errorf("%s states %q, the %s, unmarked: link to %s, or mark it <!-- %[3]s --> (help texts: "+
								"list it in docsHelpStates), or <!-- unchecked --> if it is not the %[3]s", source, said, name, c.home)
						}
					}
				case name == "unchecked":
				case !known:
					t.Errorf("%s: %q names no constant in docsConstants", source, m[0])
				default:
					atHome[name] = atHome[name] || source == c.home && k == 1
					if v != want && m[5] != "" && want.unit == scale.unit {
						t.Errorf("%s states %s as %q; the code has %g %s", source, m[1], said, want.n/scale.n, m[5])
					} else if v != want {
						t.Errorf("%s states %s as %q; the code has %s", source, m[1], said, docsFormat(want))
					}
				}
			}
			if rest := strings.ReplaceAll(docsStated.ReplaceAllString(unit, ""), "<!-- message -->", ""); strings.Contains(rest, "<!--") {
				t.Errorf("%s: a comment that is not a marker directly before a number: %.60q", source, rest[strings.Index(rest, "<!--"):])
			}
		}
		for _, name := range docsHelpStates[source] {
			if c := constants[name]; !stated[c.value] {
				t.Errorf("%s no longer states %s as %s", source, name, docsFormat(c.value))
			}
		}
	}
	for _, name := range names {
		if !atHome[name] {
			t.Errorf("%s, the home of %s, does not state it marked <!-- %s -->", constants[name].home, name, name)
		}
	}
	// The cap on the refresh threshold is a word, not a number.
	for _, source := range []string{"docs/caching-and-leases.md", "help:token", "help:config"} {
		if !slices.ContainsFunc(sources[source], func(u string) bool { return strings.Contains(u, "capped at half the token's lifetime") }) {
			t.Errorf("%s no longer says the refresh threshold is capped at half the token's lifetime", source)
		}
	}
}

func docsFormat(v docsValue) string {
	if v.unit == "1/" {
		return fmt.Sprintf("1/%g", v.n)
	}
	return fmt.Sprintf("%g %s", v.n, v.unit)
}

// docsSources are the texts that state numbers, cut by docsUnits: every
// Markdown file but CHANGELOG.md (history), and each path's help, field and
// response descriptions ("help:<pattern>"; the lease's fields are the token
// read's response fields).
func docsSources(t *testing.T) map[string][]string {
	sources := map[string][]string{}
	for _, path := range docsMarkdownFiles(t) {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if path != "CHANGELOG.md" {
			sources[path] = docsUnits(string(raw))
		}
	}
	b := newBackend(wallClock)
	sources["help:backend"] = docsUnits(b.Help)
	for _, p := range b.Paths {
		texts := []string{p.HelpSynopsis, p.HelpDescription}
		for _, f := range p.Fields {
			texts = append(texts, f.Description)
		}
		for _, op := range p.Operations {
			props := op.Properties()
			texts = append(texts, props.Summary, props.Description)
			for _, r := range slices.Concat(slices.Collect(maps.Values(props.Responses))...) {
				texts = append(texts, r.Description)
				for _, f := range r.Fields {
					texts = append(texts, f.Description)
				}
			}
		}
		sources["help:"+p.Pattern] = docsUnits(strings.Join(texts, "\n\n"))
	}
	return sources
}

var docsLinkTarget = regexp.MustCompile(`\]\([^)\s]*\)`)

// docsUnits are a text's paragraphs and list items (lines joined) and table
// rows, without fenced code, headings or link targets.
func docsUnits(text string) []string {
	var units []string
	paragraph, fence := "", false
	for _, line := range strings.Split(docsLinkTarget.ReplaceAllString(text, "]"), "\n") {
		line = strings.TrimSpace(line)
		fence = fence != strings.HasPrefix(line, "```")
		switch {
		case fence || line == "" || strings.HasPrefix(line, "```") || strings.HasPrefix(line, "#"):
			units, paragraph = append(units, paragraph), ""
		case strings.HasPrefix(line, "|"):
			units, paragraph = append(units, paragraph, line), ""
		case strings.HasPrefix(line, "- "):
			units, paragraph = append(units, paragraph), line
		default:
			paragraph += " " + line
		}
	}
	return append(units, paragraph)
}
