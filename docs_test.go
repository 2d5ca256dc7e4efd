package manus

import (
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// TestAPIDocMatchesSchema keeps docs/api.md in step with what `vault
// path-help` and the OpenAPI document show: every path's synopsis, and every
// request and response field with its type and default, in both directions.
func TestAPIDocMatchesSchema(t *testing.T) {
	raw, err := os.ReadFile("docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	sections := splitOn(string(raw), "\n## ")
	b := newBackend(wallClock)
	for _, p := range b.Paths {
		section, ok := sections[p.Pattern]
		if !ok {
			t.Errorf("docs/api.md has no section for %q", p.Pattern)
			continue
		}
		if !strings.Contains(section, "Synopsis: "+p.HelpSynopsis) {
			t.Errorf("%s: the synopsis in docs/api.md differs from the path's HelpSynopsis %q", p.Pattern, p.HelpSynopsis)
		}
		subsections := splitOn(section, "\n### ")
		compareTable(t, p.Pattern+" request", subsections["Request fields"], p.Fields)
		for label, operation := range map[string]logical.Operation{"read": logical.ReadOperation, "write": logical.UpdateOperation} {
			op, ok := p.Operations[operation]
			if !ok || len(op.Properties().Responses[http.StatusOK]) == 0 {
				continue
			}
			answer := op.Properties().Responses[http.StatusOK]
			compareTable(t, p.Pattern+" "+label+" response", responseTable(subsections, label), answer[0].Fields)
		}
	}
}

// responseTable is the "Response fields (read)" or "(write)" table, or the
// section's one "Response fields" table.
func responseTable(subsections map[string]string, label string) string {
	if body, ok := subsections["Response fields ("+label+")"]; ok {
		return body
	}
	for title, body := range subsections {
		if strings.HasPrefix(title, "Response fields") && !strings.Contains(title, "(") {
			return body
		}
	}
	return ""
}

type docRow struct{ typ, def string }

func compareTable(t *testing.T, what, table string, fields map[string]*framework.FieldSchema) {
	t.Helper()
	rows := map[string]docRow{}
	for _, line := range strings.Split(table, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 5 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`") {
			continue
		}
		name := strings.Trim(strings.TrimSpace(cells[1]), "`")
		rows[name] = docRow{typ: strings.TrimSpace(cells[2]), def: strings.TrimSpace(cells[3])}
	}
	for name, f := range fields {
		row, ok := rows[name]
		if !ok {
			t.Errorf("%s: field %s is missing from docs/api.md", what, name)
			continue
		}
		if row.typ != f.Type.String() {
			t.Errorf("%s: %s is documented as %q, the schema says %q", what, name, row.typ, f.Type.String())
		}
		wantDef := "none"
		if f.Default != nil {
			wantDef = fmt.Sprintf("`%v`", f.Default)
		}
		if row.def != wantDef {
			t.Errorf("%s: %s default is documented as %s, the schema says %s", what, name, row.def, wantDef)
		}
	}
	for name := range rows {
		if _, ok := fields[name]; !ok {
			t.Errorf("%s: docs/api.md documents %s, which the schema does not have", what, name)
		}
	}
}

// splitOn cuts text at each heading marker and keys the parts by the rest
// of the heading line.
func splitOn(text, marker string) map[string]string {
	parts := map[string]string{}
	for _, chunk := range strings.Split(text, marker)[1:] {
		title, body, _ := strings.Cut(chunk, "\n")
		parts[strings.TrimSpace(title)] = body
	}
	return parts
}

// TestChangelogHasCurrentVersion: the version in VERSION, which the binary
// reports and the release is named after, has its CHANGELOG section.
func TestChangelogHasCurrentVersion(t *testing.T) {
	version, err := os.ReadFile("VERSION")
	if err != nil {
		t.Fatal(err)
	}
	changelog, err := os.ReadFile("CHANGELOG.md")
	if err != nil {
		t.Fatal(err)
	}
	heading := "## [" + strings.TrimSpace(string(version)) + "]"
	if !strings.Contains(string(changelog), heading) {
		t.Fatalf("CHANGELOG.md has no %q section", heading)
	}
}

// TestMakeTargetsAreDocumented: every target `make help` lists has a row in
// CONTRIBUTING.md's make-targets table, and every setting the server-starting
// scripts read from the environment is named there.
func TestMakeTargetsAreDocumented(t *testing.T) {
	contributing, err := os.ReadFile("CONTRIBUTING.md")
	if err != nil {
		t.Fatal(err)
	}
	table := string(contributing)
	table = table[strings.Index(table, "## Make targets"):strings.Index(table, "## How the tests are laid out")]
	makefile, err := os.ReadFile("Makefile")
	if err != nil {
		t.Fatal(err)
	}
	targets := regexp.MustCompile(`(?m)^([a-zA-Z0-9_-]+):.*## `).FindAllStringSubmatch(string(makefile), -1)
	if len(targets) < 20 {
		t.Fatalf("found %d targets in the Makefile", len(targets))
	}
	for _, m := range targets {
		if !strings.Contains(table, "| `make "+m[1]+"` |") {
			t.Errorf("make %s has no row in CONTRIBUTING.md's make-targets table", m[1])
		}
	}
	for _, script := range []string{"scripts/dev.sh", "scripts/bench-vault.sh", "scripts/bench-openbao.sh"} {
		raw, err := os.ReadFile(script)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`\$\{([A-Z_]+):-`).FindAllStringSubmatch(string(raw), -1) {
			if !strings.Contains(table, "`"+m[1]) {
				t.Errorf("%s reads %s, which CONTRIBUTING.md's make-targets table does not name", script, m[1])
			}
		}
	}
}
