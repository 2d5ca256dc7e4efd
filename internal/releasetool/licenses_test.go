package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testBOM builds an SBOM for platform with components given as
// "path@version=LICENSE[,LICENSE]" ("path@version=" for none).
func testBOM(t *testing.T, platform string, components ...string) *bom {
	t.Helper()
	goos, goarch, _ := strings.Cut(platform, "/")
	b := &bom{BOMFormat: "CycloneDX", SpecVersion: "1.6"}
	b.Metadata.Component = component{Type: "application", Name: "example.com/plugin", Version: "v1.2.3"}
	b.Metadata.Properties = []property{{propGOOS, goos}, {propGOARCH, goarch}}
	b.Metadata.Tools = json.RawMessage(`[{"vendor":"CycloneDX","name":"cyclonedx-gomod","version":"v1.10.0"}]`)
	for _, spec := range components {
		module, licenses, _ := strings.Cut(spec, "=")
		path, version, _ := strings.Cut(module, "@")
		c := component{Type: "library", Name: path, Version: version}
		c.Evidence = &struct {
			Licenses []licenseChoice `json:"licenses"`
		}{}
		for _, id := range strings.Split(licenses, ",") {
			if id == "" {
				continue
			}
			ch := licenseChoice{}
			if strings.Contains(id, " ") {
				ch.Expression = id
			} else {
				ch.License = &struct {
					ID   string `json:"id"`
					Name string `json:"name"`
				}{ID: id}
			}
			c.Evidence.Licenses = append(c.Evidence.Licenses, ch)
		}
		b.Components = append(b.Components, c)
	}
	return b
}

func TestLicenseProblems(t *testing.T) {
	cases := []struct {
		name      string
		component string
		problem   string // "" when allowed
	}{
		{"permissive", "example.com/a@v1.0.0=MIT", ""},
		{"MPL", "example.com/a@v1.0.0=MPL-2.0", ""},
		{"two allowed", "example.com/a@v1.0.0=Apache-2.0,BSD-3-Clause", ""},
		{"none detected", "example.com/a@v1.0.0=", "example.com/a v1.0.0: no license detected"},
		{"strong copyleft", "example.com/a@v1.0.0=GPL-3.0-only", "GPL-3.0-only is not on the allow list"},
		{"network copyleft", "example.com/a@v1.0.0=AGPL-3.0-or-later", "AGPL-3.0-or-later is not on the allow list"},
		{"one of two not allowed", "example.com/a@v1.0.0=MIT,LGPL-2.1-only", "LGPL-2.1-only is not on the allow list"},
		{"expression", "example.com/a@v1.0.0=MIT OR GPL-2.0-only", "GPL-2.0-only is not on the allow list"},
		{"allowed expression", "example.com/a@v1.0.0=(MIT OR Apache-2.0)", ""},
		// The override is for v0.5.4 only: another version is read again.
		{"override", "github.com/hashicorp/go-metrics@v0.5.4=", ""},
		{"override of another version", "github.com/hashicorp/go-metrics@v0.5.5=", "no license detected"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			problems := licenseProblems(collectLicenses([]*bom{testBOM(t, "linux/amd64", tc.component)}))
			got := strings.Join(problems, "\n")
			if tc.problem == "" && got != "" {
				t.Fatalf("want no problem, got %q", got)
			}
			if tc.problem != "" && !strings.Contains(got, tc.problem) {
				t.Fatalf("want a problem containing %q, got %q", tc.problem, got)
			}
		})
	}
}

func TestRenderLicensesMergesPlatforms(t *testing.T) {
	boms := []*bom{
		testBOM(t, "linux/amd64", "example.com/a@v1.0.0=MIT", "example.com/only-linux@v0.1.0=ISC",
			"github.com/hashicorp/go-metrics@v0.5.4="),
		testBOM(t, "darwin/arm64", "example.com/a@v1.0.0=MIT", "github.com/hashicorp/go-metrics@v0.5.4="),
	}
	list := string(renderLicenses(boms[0], collectLicenses(boms)))
	for _, want := range []string{
		"# Third-party licenses of example.com/plugin v1.2.3",
		"cyclonedx-gomod v1.10.0",
		"| example.com/a | v1.0.0 | MIT | all |",
		"| example.com/only-linux | v0.1.0 | ISC | linux/amd64 |",
		"| github.com/hashicorp/go-metrics | v0.5.4 | MIT * | all |",
		"- github.com/hashicorp/go-metrics v0.5.4 (*): MIT; its LICENSE is",
	} {
		if !strings.Contains(list, want) {
			t.Errorf("license list lacks %q:\n%s", want, list)
		}
	}
	if strings.Index(list, "example.com/a ") > strings.Index(list, "example.com/only-linux") {
		t.Errorf("modules are not sorted:\n%s", list)
	}
}

// TestLicensesCommand runs the command as the Makefile does: write, then
// check; the check fails once the list and the SBOMs disagree, and writing
// fails, leaving no list, when a license is not allowed.
func TestLicensesCommand(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b *bom) string {
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	sbom := write("a.sbom.json", testBOM(t, "linux/amd64", "example.com/a@v1.0.0=MIT"))
	list := filepath.Join(dir, "THIRD_PARTY_LICENSES.md")
	if err := runLicenses([]string{"-o", list, sbom}); err != nil {
		t.Fatal(err)
	}
	if err := runLicenses([]string{"-check", "-o", list, sbom}); err != nil {
		t.Fatalf("check of the list just written: %v", err)
	}
	write("a.sbom.json", testBOM(t, "linux/amd64", "example.com/a@v1.0.1=MIT"))
	if err := runLicenses([]string{"-check", "-o", list, sbom}); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("check after the SBOM changed: got %v, want a mismatch", err)
	}

	bad := write("bad.sbom.json", testBOM(t, "linux/amd64", "example.com/gpl@v1.0.0=GPL-3.0-only"))
	badList := filepath.Join(dir, "bad.md")
	if err := runLicenses([]string{"-o", badList, bad}); err == nil || !strings.Contains(err.Error(), "GPL-3.0-only") {
		t.Fatalf("GPL module: got %v, want a refusal naming GPL-3.0-only", err)
	}
	if _, err := os.Stat(badList); !os.IsNotExist(err) {
		t.Fatalf("a refused list was written anyway (%v)", err)
	}

	notJSON := filepath.Join(dir, "garbage.sbom.json")
	if err := os.WriteFile(notJSON, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := runLicenses([]string{"-o", badList, notJSON}); err == nil || !strings.Contains(err.Error(), "does not parse") {
		t.Fatalf("unparseable SBOM: got %v", err)
	}
}
