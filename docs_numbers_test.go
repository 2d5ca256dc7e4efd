package manus

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The tuned numbers of a token's life and of minting are stated once, in
// docs/caching-and-leases.md or docs/failure-behaviour.md, and linked from
// everywhere else. Some are restated where a reader needs them at hand (the
// README's config table, docs/api.md, the architecture diagram, the paths'
// help texts). These tests keep every statement true of the code: each
// number is computed from the code, must appear in its home page (and, where
// the help text states it, there), and must not appear anywhere in the
// Markdown files (CHANGELOG.md, which is history, aside) or the help texts
// with another value.

// docsNumber is one number the docs state.
type docsNumber struct {
	name string
	// want is the value the code has, in the unit the patterns capture.
	want float64
	// homes are the sentences that state the number where it belongs:
	// each must be found in its source.
	homes []docsHome
	// others find further statements of the number. They are kept narrow:
	// a pattern that matched other numbers would make this test cry wolf.
	others []string
}

// docsHome is a sentence that must be found in source (a Markdown path, or
// "help:<path>" for a path's help text). pattern has one capture group: the
// stated value. Like the others, it is also looked for everywhere.
type docsHome struct {
	source, pattern string
}

// patterns are all the ways the number may be stated.
func (n docsNumber) patterns() []*regexp.Regexp {
	var out []*regexp.Regexp
	for _, h := range n.homes {
		out = append(out, regexp.MustCompile(h.pattern))
	}
	for _, o := range n.others {
		out = append(out, regexp.MustCompile(o))
	}
	return out
}

func docsSeconds(d time.Duration) float64 { return d.Seconds() }
func docsMinutes(d time.Duration) float64 { return d.Minutes() }

const (
	docsCachingPage = "docs/caching-and-leases.md"
	docsFailurePage = "docs/failure-behaviour.md"
)

// docsNumbers computes each number from the code, checking on the way that
// the code behaves as the statement says (a fraction is a fraction, a cap is
// a cap, a back-off doubles).
func docsNumbers(t *testing.T) []docsNumber {
	t.Helper()
	t0 := time.Date(2026, 11, 29, 2, 0, 0, 0, time.UTC)
	token := func(lifetime time.Duration) *accessToken {
		return &accessToken{MintedAt: t0, ExpiresAt: t0.Add(lifetime)}
	}

	// The safety margin: a fixed fraction of the lifetime, up to a cap.
	fraction := 30 * time.Minute / token(30*time.Minute).safetyMargin()
	for _, lifetime := range []time.Duration{10 * time.Minute, 30 * time.Minute, 45 * time.Minute} {
		if got := token(lifetime).safetyMargin(); got != lifetime/fraction {
			t.Fatalf("the safety margin of a %s token is %s, not 1/%d of it", lifetime, got, fraction)
		}
	}
	marginCap := token(24 * time.Hour).safetyMargin()
	if marginCap >= 24*time.Hour/fraction || token(12*time.Hour).safetyMargin() != marginCap {
		t.Fatalf("the safety margin of long tokens is not capped (%s)", marginCap)
	}
	if got := token(time.Hour).safetyMargin(); got != min(time.Hour/fraction, marginCap) {
		t.Fatalf("the safety margin of a one-hour token is %s", got)
	}

	// The refresh threshold is capped at half the lifetime: with 45
	// minutes configured, a one-hour token is fresh until 30 minutes in.
	if !token(time.Hour).isFresh(t0.Add(29*time.Minute), 45*time.Minute) ||
		token(time.Hour).isFresh(t0.Add(31*time.Minute), 45*time.Minute) {
		t.Fatal("the refresh threshold is not capped at half the token's lifetime")
	}
	// And with the default, a one-hour token is replaced when the
	// threshold is left.
	refreshAfter := time.Hour - defaultRefreshThreshold
	if !token(time.Hour).isFresh(t0.Add(refreshAfter-time.Second), defaultRefreshThreshold) ||
		token(time.Hour).isFresh(t0.Add(refreshAfter+time.Second), defaultRefreshThreshold) {
		t.Fatalf("a one-hour token is not replaced %s after its mint", refreshAfter)
	}

	// The failure back-off doubles from its minimum to its maximum, and a
	// Retry-After stretches it up to its own cap.
	if failureBackoff(1, 0) != minFailureBackoff || failureBackoff(2, 0) != 2*minFailureBackoff ||
		failureBackoff(3, 0) != 4*minFailureBackoff || failureBackoff(30, 0) != maxFailureBackoff {
		t.Fatal("the failure back-off does not double from minFailureBackoff to maxFailureBackoff")
	}
	if failureBackoff(1, 24*time.Hour) != maxHonouredRetryAfter {
		t.Fatal("a long Retry-After does not stretch the failure back-off to maxHonouredRetryAfter")
	}

	policy := defaultRetryPolicy
	caching, failure := docsCachingPage, docsFailurePage
	return []docsNumber{
		{
			name: "safety margin, fraction of the lifetime",
			want: float64(fraction),
			homes: []docsHome{
				{caching, `\bsafety margin of 1/(\d+) of its lifetime, at most \d+ s\b`},
				{"help:token", `\bsafety margin \(1/(\d+) of the lifetime, at most \d+s\)`},
			},
			others: []string{`\b1/(\d+) of (?:its|the|the token's|a token's) lifetime`},
		},
		{
			name: "safety margin, cap (seconds)",
			want: docsSeconds(marginCap),
			homes: []docsHome{
				{caching, `\bsafety margin of 1/\d+ of its lifetime, at most (\d+) s\b`},
				{"help:token", `\bsafety margin \(1/\d+ of the lifetime, at most (\d+)s\)`},
			},
			others: []string{
				`\b1/\d+ of (?:its|the|the token's|a token's) lifetime\)?,? at most (\d+) ?s\b`,
				`\bwith an? (\d+) ?s (?:safety )?margin\b`,
				`\bsafety margin \(at most (\d+) ?s\)`,
			},
		},
		{
			name: "refresh threshold, default (minutes)",
			want: docsMinutes(defaultRefreshThreshold),
			homes: []docsHome{
				{caching, "`refresh_threshold` defaults to (\\d+) minutes and is capped at half the token's lifetime"},
				{"help:token", `\brefresh_threshold \(default (\d+) minutes, capped at half the token's lifetime\)`},
			},
			others: []string{
				`refresh_threshold[^.|]{0,20}\(default (\d+) minutes`,
				"`refresh_threshold` \\| `(\\d+)m` \\|",
				`\b(\d+)[- ]minute (?:refresh threshold|overlap)`,
				`\bWhy (\d+) minutes\b`,
				`\bRefresh (\d+) minutes early\b`,
				`\brefresh point of a one-hour token is (\d+) minutes before`,
				`\bone-hour token is replaced once it has (\d+) minutes left`,
				`\bstill has at least (\d+) min − `,
			},
		},
		{
			name: "refresh threshold, default (seconds)",
			want: docsSeconds(defaultRefreshThreshold),
			homes: []docsHome{
				{caching, `\bwhich is below (\d+) s: the re-read always finds the token due`},
			},
			others: []string{`\bwhich is below (\d+) ?s\b`},
		},
		{
			name: "mint interval of a one-hour token (minutes)",
			want: docsMinutes(refreshAfter),
			homes: []docsHome{
				{caching, `\bManus sees one mint every (\d+) minutes per mount`},
			},
			others: []string{
				`\b(?:mint|mints|token) (?:about )?(?:once )?every (\d+) minutes\b`,
				`\babout (\d+) minutes for a fresh one-hour token\b`,
			},
		},
		{
			name:   "mint interval of a one-hour token (seconds)",
			want:   docsSeconds(refreshAfter),
			others: []string{`\bone every (\d+) s\b`},
		},
		{
			name: "non-leased re-read spread, cap (seconds)",
			want: docsSeconds(maxRereadSpread),
			homes: []docsHome{
				{caching, `\bup to a tenth of the refresh threshold, at most (\d+) s, so a fleet`},
			},
			others: []string{`a tenth of the refresh threshold,? \(?at most (\d+) ?s\b`},
		},
		{
			name: "attempts per mint",
			want: float64(policy.attempts),
			homes: []docsHome{
				{failure, `\bup to (\d+) attempts in all\b`},
			},
			others: []string{`\b(\d+) attempts\b`},
		},
		{
			name: "first retry delay (seconds)",
			want: docsSeconds(policy.baseDelay),
			homes: []docsHome{
				{failure, `\bjittered exponential back-off \(a random point in the upper half of (\d+(?:\.\d+)?) s, `},
			},
			others: []string{
				`\bupper half of (\d+(?:\.\d+)?) ?s, `,
				`\bexponential back-off \((\d+(?:\.\d+)?) ?s, `,
			},
		},
		{
			name: "longest retry delay (seconds)",
			want: docsSeconds(policy.maxDelay),
			homes: []docsHome{
				{failure, `\bat most (\d+) s between attempts\b`},
				{failure, "`Retry-After` \\(seconds or an HTTP date\\) of up to (\\d+) s is waited out; a longer one ends the mint"},
			},
			others: []string{
				`\bat most (\d+) ?s between attempts\b`,
				`Retry-After` + "`?" + ` \([^)]*\) of up to (\d+) ?s\b`,
				`Retry-After` + "`?" + ` (?:honoured )?up to (\d+) ?s\b`,
			},
		},
		{
			name: "mint budget (seconds)",
			want: docsSeconds(policy.budget),
			homes: []docsHome{
				{failure, `\bA whole mint, retries included, ends within (\d+) s \(the mint budget\)`},
			},
			others: []string{
				`\bretried if transient, within (\d+) ?s\b`,
				`\b(\d+) ?s (?:mint )?budget\b`,
				`\bbudget of (\d+) ?s\b`,
				`\bwhole mint[^.|]{0,40}?\b(\d+) ?s\b`,
			},
		},
		{
			name: "a read's wait beyond request_timeout (seconds)",
			want: docsSeconds(readerWaitSlack),
			homes: []docsHome{
				{failure, "A read waits at most `request_timeout` \\+ (\\d+(?:\\.\\d+)?) s for a mint in flight"},
			},
			others: []string{"request_timeout`? \\+ (\\d+(?:\\.\\d+)?) ?s\\b"},
		},
		{
			name: "failure back-off, first window (seconds)",
			want: docsSeconds(minFailureBackoff),
			homes: []docsHome{
				{failure, `\breads do not ask Manus again for (\d+) s, then \d+ s, \d+ s \.\.\. up to \d+ s after consecutive failures`},
			},
			others: []string{
				`\bfor (\d+) ?s, then \d+ ?s, \d+ ?s \.\.\. up to \d+ ?s`,
				`\b(\d+) ?s doubling to \d+ ?s\b`,
			},
		},
		{
			name: "failure back-off, longest window (seconds)",
			want: docsSeconds(maxFailureBackoff),
			homes: []docsHome{
				{failure, `\breads do not ask Manus again for \d+ s, then \d+ s, \d+ s \.\.\. up to (\d+) s after consecutive failures`},
			},
			others: []string{
				`\bfor \d+ ?s, then \d+ ?s, \d+ ?s \.\.\. up to (\d+) ?s`,
				`\b\d+ ?s doubling to (\d+) ?s\b`,
				`failure back-off \(at most (\d+) ?s\)`,
			},
		},
		{
			name: "failure back-off, longest Retry-After honoured (minutes)",
			want: docsMinutes(maxHonouredRetryAfter),
			homes: []docsHome{
				{failure, "\\(longer if Manus sent a `Retry-After`, up to (\\d+) minutes\\)"},
			},
			others: []string{`Retry-After` + "`?" + `,? up to (\d+) minutes\b`},
		},
		{
			name: "token response size cap (KiB)",
			want: float64(maxTokenResponseBytes) / 1024,
			homes: []docsHome{
				{failure, `\bToken responses are read up to (\d+) KiB\b`},
			},
			others: []string{`\b(?:up to|over) (\d+) KiB\b`},
		},
		{
			name: "lifetime assumed without expires_in (minutes)",
			want: docsMinutes(fallbackTokenLifetime),
			homes: []docsHome{
				{failure, `\bthe plugin assumes a (\d+)-minute lifetime\b`},
			},
			others: []string{`\bassumes? a (\d+)-minute lifetime\b`},
		},
		{
			name: "shortest lifetime accepted (seconds)",
			want: docsSeconds(minTokenLifetime),
			homes: []docsHome{
				{failure, `\ba lifetime under (\d+) s\b`},
			},
			others: []string{`\blifetime under (\d+) ?s\b`},
		},
		{
			name: "longest lifetime accepted (hours)",
			want: maxTokenLifetime.Hours(),
			homes: []docsHome{
				{failure, `\bValues above \d+ h are capped at (\d+) h\b`},
			},
			others: []string{
				`\bValues above (\d+) ?h\b`,
				`\bcapped at (\d+) ?h\b`,
			},
		},
		{
			name: "request_timeout default (seconds)",
			want: docsSeconds(defaultRequestTimeout),
			homes: []docsHome{
				{failure, "One token request takes at most `request_timeout` \\(default (\\d+) s, at most \\d+ s\\)"},
				{"README.md", "^\\| `request_timeout` \\| `(\\d+)s` \\|"},
			},
			others: []string{"request_timeout`? \\(default (\\d+) ?s\\b"},
		},
		{
			name: "request_timeout maximum (seconds)",
			want: docsSeconds(maxRequestTimeout),
			homes: []docsHome{
				{failure, "One token request takes at most `request_timeout` \\(default \\d+ s, at most (\\d+) s\\)"},
				{"README.md", `\bLimit for one token request \(1s to (\d+)s\)`},
			},
			others: []string{
				"request_timeout`? \\(default \\d+ ?s, at most (\\d+) ?s\\)",
				`one token request[^.|]{0,20}?\b1 ?s to (\d+) ?s\b`,
			},
		},
	}
}

// TestDocsNumbersMatchTheCode: every statement of a tuned number, in any
// Markdown file or help text, has the code's value, and each number's home
// page states it.
func TestDocsNumbersMatchTheCode(t *testing.T) {
	sources := docsSources(t)
	for _, n := range docsNumbers(t) {
		want := strconv.FormatFloat(n.want, 'f', -1, 64)
		patterns := n.patterns()
		for _, name := range docsSortedKeys(sources) {
			for _, unit := range sources[name] {
				reported := false // one report per unit, however many patterns match
				for _, p := range patterns {
					for _, m := range p.FindAllStringSubmatch(unit, -1) {
						if got, err := strconv.ParseFloat(m[1], 64); (err != nil || got != n.want) && !reported {
							t.Errorf("%s states the %s as %s (%q); the code has %s", name, n.name, m[1], m[0], want)
							reported = true
						}
					}
				}
			}
		}
		for _, home := range n.homes {
			units, ok := sources[home.source]
			if !ok {
				t.Errorf("%s: there is no source %s", n.name, home.source)
				continue
			}
			pattern, found := regexp.MustCompile(home.pattern), false
			for _, unit := range units {
				found = found || pattern.MatchString(unit)
			}
			if !found {
				t.Errorf("%s no longer states the %s (%s) as docs_numbers_test.go expects (%s): "+
					"state it there, or update the test", home.source, n.name, want, home.pattern)
			}
		}
	}
	// The cap on the refresh threshold is a word, not a number; docsNumbers
	// checked that the code halves.
	for _, home := range []string{docsCachingPage, "help:token", "help:config"} {
		if !docsStates(sources[home], "capped at half the token's lifetime") {
			t.Errorf("%s no longer says the refresh threshold is capped at half the token's lifetime", home)
		}
	}
}

// docsStates reports whether any unit contains phrase.
func docsStates(units []string, phrase string) bool {
	for _, u := range units {
		if strings.Contains(u, phrase) {
			return true
		}
	}
	return false
}

// docsSources are the texts the numbers may appear in, each cut into units
// (a paragraph joined into one line, a table row, a line of a code block):
// every Markdown file but CHANGELOG.md, and every path's help, summaries and
// field descriptions.
func docsSources(t *testing.T) map[string][]string {
	t.Helper()
	sources := map[string][]string{}
	for _, path := range docsMarkdownFiles(t) {
		if path == "CHANGELOG.md" {
			continue // history: the numbers of its time
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		sources[path] = docsUnits(string(raw))
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
			for _, responses := range props.Responses {
				for _, r := range responses {
					for _, f := range r.Fields {
						texts = append(texts, f.Description)
					}
				}
			}
		}
		sources["help:"+p.Pattern] = docsUnits(strings.Join(texts, "\n\n"))
	}
	for _, s := range b.Secrets {
		var texts []string
		for _, f := range s.Fields {
			texts = append(texts, f.Description)
		}
		sources["help:secret "+s.Type] = docsUnits(strings.Join(texts, "\n\n"))
	}
	return sources
}

// docsMarkdownFiles lists the repository's Markdown files, relative to the
// repository root (this package's directory).
func docsMarkdownFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", ".dev", "bin", "dist", "testdata", "node_modules":
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(path, ".md") {
			files = append(files, filepath.ToSlash(path))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	return files
}

var docsSpaces = regexp.MustCompile(`\s+`)

// docsUnits cuts text into units a sentence cannot cross: a paragraph
// (its lines joined), a table row, or a line of a fenced code block. Bold
// markers are dropped and runs of white space made one space.
func docsUnits(text string) []string {
	var units []string
	var paragraph []string
	flush := func() {
		if len(paragraph) > 0 {
			units = append(units, strings.Join(paragraph, " "))
			paragraph = nil
		}
	}
	inFence := false
	for _, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(trimmed, "```"):
			flush()
			inFence = !inFence
		case inFence, strings.HasPrefix(trimmed, "|"):
			flush()
			units = append(units, trimmed)
		case trimmed == "":
			flush()
		default:
			paragraph = append(paragraph, trimmed)
		}
	}
	flush()
	for i, u := range units {
		units[i] = docsSpaces.ReplaceAllString(strings.ReplaceAll(u, "**", ""), " ")
	}
	return units
}

func docsSortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
