package manus

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// docsRepoURL is how the alert rules (and could any page) link into this
// repository by absolute URL.
const docsRepoURL = "https://github.com/manus-community/vault-plugin-secrets-manus/blob/main/"

var (
	// docsLink is an inline Markdown link or image: [text](target "title").
	docsLink = regexp.MustCompile(`!?\[[^\]]*\]\(([^()\s]+)(?:\s+"[^"]*")?\)`)
	// docsRepoLink is an absolute link into this repository.
	docsRepoLink = regexp.MustCompile(regexp.QuoteMeta(docsRepoURL) + `([^\s"')>]+)`)
	// docsCodeSpan is inline code, in which nothing is a link.
	docsCodeSpan = regexp.MustCompile("`[^`\n]*`")
	docsHeading  = regexp.MustCompile(`^(#{1,6})\s+(.*?)\s*#*\s*$`)
)

// TestDocsLinksResolve: every relative link in the Markdown files, and every
// absolute link into this repository from them or from the alert rules,
// points at a file that exists and, with a #fragment into a Markdown file,
// at one of its headings.
func TestDocsLinksResolve(t *testing.T) {
	files := docsMarkdownFiles(t)
	anchors := map[string]map[string]bool{}
	anchorsOf := func(path string) map[string]bool {
		if a, ok := anchors[path]; ok {
			return a
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		anchors[path] = docsAnchors(string(raw))
		return anchors[path]
	}
	check := func(from, target, dir string) {
		path, fragment, _ := strings.Cut(target, "#")
		if path == "" {
			path = from
		} else {
			path = filepath.ToSlash(filepath.Clean(filepath.Join(dir, path)))
		}
		if _, err := os.Stat(path); err != nil {
			t.Errorf("%s links to %s, which does not exist", from, target)
			return
		}
		if fragment == "" || !strings.HasSuffix(path, ".md") {
			return
		}
		if !anchorsOf(path)[fragment] {
			t.Errorf("%s links to %s, but %s has no heading with the anchor #%s", from, target, path, fragment)
		}
	}

	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range docsProse(string(raw)) {
			for _, m := range docsLink.FindAllStringSubmatch(line, -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				check(file, target, filepath.Dir(file))
			}
		}
		for _, m := range docsRepoLink.FindAllStringSubmatch(string(raw), -1) {
			check(file, m[1], ".")
		}
	}
	rules, err := filepath.Glob("docs/prometheus/*.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range rules {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range docsRepoLink.FindAllStringSubmatch(string(raw), -1) {
			check(file, m[1], ".")
		}
	}
}

// docsProse is the text's lines outside fenced code blocks, with inline
// code blanked out: where a Markdown link can be.
func docsProse(text string) []string {
	var lines []string
	inFence := false
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			inFence = !inFence
			continue
		}
		if !inFence {
			lines = append(lines, docsCodeSpan.ReplaceAllString(line, "code"))
		}
	}
	return lines
}

// docsAnchors are the anchors GitHub gives the headings of a Markdown file:
// the heading's text, lower-cased, with punctuation other than '-' and '_'
// dropped and spaces made '-'; a repeated anchor gets -1, -2, ...
func docsAnchors(text string) map[string]bool {
	anchors := map[string]bool{}
	seen := map[string]int{}
	inFence := false
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			inFence = !inFence
			continue
		}
		m := docsHeading.FindStringSubmatch(line)
		if inFence || m == nil {
			continue
		}
		anchor := docsAnchor(m[2])
		if n := seen[anchor]; n > 0 {
			seen[anchor]++
			anchor += "-" + strconv.Itoa(n)
		} else {
			seen[anchor] = 1
		}
		anchors[anchor] = true
	}
	return anchors
}

// docsLinkText keeps a link's text and drops its target.
var docsLinkText = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`)

func docsAnchor(heading string) string {
	heading = docsLinkText.ReplaceAllString(heading, "$1")
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// docsMarkdownFiles lists the repository's Markdown files, relative to the
// repository root (this package's directory).
func docsMarkdownFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case d.IsDir() && slices.Contains([]string{".git", ".dev", "bin", "dist", "testdata", "node_modules"}, d.Name()):
			return filepath.SkipDir
		case strings.HasSuffix(path, ".md"):
			files = append(files, filepath.ToSlash(path))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}
