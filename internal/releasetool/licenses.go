package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
)

// allowedLicenses are the SPDX identifiers a linked module may carry: the
// permissive licenses and MPL-2.0 itself, all of which can be distributed
// in one binary with this MPL-2.0 plugin. Anything else, strong copyleft
// (GPL, AGPL, LGPL), source-available (BUSL, SSPL) or a license the detector
// could not name, fails the release check until a person has looked.
var allowedLicenses = map[string]bool{
	"0BSD":            true,
	"Apache-2.0":      true,
	"BSD-2-Clause":    true,
	"BSD-3-Clause":    true,
	"BSD-Source-Code": true, // the detector's name for the Go project's BSD text (golang.org/x/...)
	"CC0-1.0":         true,
	"ISC":             true,
	"MIT":             true,
	"MIT-0":           true,
	"MPL-2.0":         true,
	"Unlicense":       true,
	"Zlib":            true,
}

// licenseOverride is a license a person read in a module's source because
// the detector named none, or named one that does not cover the code.
type licenseOverride struct {
	license string
	why     string
}

// licenseOverrides are keyed by module@version, so an upgraded module is
// read again rather than inheriting an old verdict.
var licenseOverrides = map[string]licenseOverride{
	"github.com/hashicorp/go-metrics@v0.5.4": {
		license: "MIT",
		why:     "its LICENSE is the MIT (Expat) text under a HashiCorp notice line, which the detector does not match",
	},
	"github.com/opencontainers/go-digest@v1.0.0": {
		license: "Apache-2.0",
		why: "its code is under LICENSE, Apache-2.0; the detector reports only LICENSE.docs, " +
			"CC-BY-SA-4.0, which covers its README and CONTRIBUTING files, nothing that is linked",
	},
}

// moduleLicense is one linked module in the license list.
type moduleLicense struct {
	path, version string
	licenses      []string
	overridden    bool
	platforms     []string
}

// runLicenses reads the release's SBOMs, fails if a linked module's license
// is unknown or not allowed, and writes the list (with -check, compares it
// with the list already written).
func runLicenses(args []string) error {
	fs := flag.NewFlagSet("licenses", flag.ContinueOnError)
	out := fs.String("o", "", "the license list to write (or check)")
	check := fs.Bool("check", false, "compare with the existing file instead of writing it")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() == 0 {
		return errors.New("need -o FILE and at least one SBOM")
	}
	var boms []*bom
	for _, path := range fs.Args() {
		b, err := readBOM(path)
		if err != nil {
			return err
		}
		boms = append(boms, b)
	}
	modules := collectLicenses(boms)
	if problems := licenseProblems(modules); len(problems) > 0 {
		return fmt.Errorf("linked modules whose license is unknown or not allowed with MPL-2.0:\n  %s\n"+
			"read the module's license; allow it in internal/releasetool/licenses.go only if it is compatible",
			strings.Join(problems, "\n  "))
	}
	list := renderLicenses(boms[0], modules)
	if *check {
		existing, err := os.ReadFile(*out)
		if err != nil {
			return err
		}
		if !bytes.Equal(existing, list) {
			return fmt.Errorf("%s does not match the SBOMs beside it", *out)
		}
		fmt.Printf("%s: %d linked modules, every license allowed, matches the SBOMs\n", *out, len(modules))
		return nil
	}
	return os.WriteFile(*out, list, 0o644) //nolint:gosec // a public release file, readable by all like the binaries
}

// collectLicenses merges the SBOMs' components into one entry per
// module@version, with the platforms whose binary links it.
func collectLicenses(boms []*bom) []*moduleLicense {
	byKey := map[string]*moduleLicense{}
	for _, b := range boms {
		for _, c := range b.Components {
			key := c.Name + "@" + c.Version
			m, ok := byKey[key]
			if !ok {
				m = &moduleLicense{path: c.Name, version: c.Version, licenses: detectedLicenses(c)}
				if o, ok := licenseOverrides[key]; ok {
					m.licenses, m.overridden = []string{o.license}, true
				}
				byKey[key] = m
			}
			m.platforms = append(m.platforms, b.platform())
		}
	}
	modules := make([]*moduleLicense, 0, len(byKey))
	for _, m := range byKey {
		sort.Strings(m.platforms)
		modules = append(modules, m)
	}
	sort.Slice(modules, func(i, j int) bool {
		if modules[i].path != modules[j].path {
			return modules[i].path < modules[j].path
		}
		return modules[i].version < modules[j].version
	})
	return modules
}

// detectedLicenses returns the SPDX identifiers (or names, or expressions)
// the SBOM gives a component, asserted or as evidence.
func detectedLicenses(c component) []string {
	choices := append([]licenseChoice(nil), c.Licenses...)
	if c.Evidence != nil {
		choices = append(choices, c.Evidence.Licenses...)
	}
	var names []string
	for _, ch := range choices {
		switch {
		case ch.Expression != "":
			names = append(names, ch.Expression)
		case ch.License != nil && ch.License.ID != "":
			names = append(names, ch.License.ID)
		case ch.License != nil && ch.License.Name != "":
			names = append(names, ch.License.Name)
		}
	}
	sort.Strings(names)
	return names
}

// licenseProblems names every module without a license or with one that is
// not allowed. Every license found must be allowed: a module whose files
// carry two licenses is bound by both.
func licenseProblems(modules []*moduleLicense) []string {
	var problems []string
	for _, m := range modules {
		if len(m.licenses) == 0 {
			problems = append(problems, fmt.Sprintf("%s %s: no license detected", m.path, m.version))
			continue
		}
		for _, l := range m.licenses {
			for _, id := range expressionIDs(l) {
				if !allowedLicenses[id] {
					problems = append(problems, fmt.Sprintf("%s %s: %s is not on the allow list", m.path, m.version, id))
				}
			}
		}
	}
	return problems
}

// expressionIDs splits an SPDX expression such as "MIT OR Apache-2.0" into
// its identifiers. Each must be allowed, which is stricter than needed for
// OR and exactly right for AND and WITH.
func expressionIDs(expr string) []string {
	var ids []string
	for _, word := range strings.Fields(strings.NewReplacer("(", " ", ")", " ").Replace(expr)) {
		switch word {
		case "AND", "OR", "WITH":
			continue
		}
		ids = append(ids, word)
	}
	return ids
}

// renderLicenses writes the list as Markdown. Its content depends only on
// the SBOMs, so the release check can write it again and compare.
func renderLicenses(first *bom, modules []*moduleLicense) []byte {
	var buf bytes.Buffer
	app := first.Metadata.Component
	fmt.Fprintf(&buf, "# Third-party licenses of %s %s\n\n", app.Name, app.Version)
	fmt.Fprintf(&buf, "The plugin itself is MPL-2.0 (the `LICENSE` file). Its release binaries\n"+
		"link the modules below, as listed in each binary's SBOM (`*.sbom.json`).\n"+
		"Licenses were detected from the module sources by %s;\n"+
		"those marked * were read by a person, because the detector named none\n"+
		"or one that does not cover the code.\n\n", toolName(first))
	buf.WriteString("| Module | Version | License | Binaries |\n|---|---|---|---|\n")
	all := len(distinctPlatforms(modules))
	for _, m := range modules {
		licenses := strings.Join(m.licenses, ", ")
		if m.overridden {
			licenses += " *"
		}
		platforms := strings.Join(m.platforms, ", ")
		if len(m.platforms) == all {
			platforms = "all"
		}
		fmt.Fprintf(&buf, "| %s | %s | %s | %s |\n", m.path, m.version, licenses, platforms)
	}
	var notes []string
	for _, m := range modules {
		if m.overridden {
			o := licenseOverrides[m.path+"@"+m.version]
			notes = append(notes, fmt.Sprintf("- %s %s (*): %s; %s.", m.path, m.version, o.license, o.why))
		}
	}
	if len(notes) > 0 {
		buf.WriteString("\n" + strings.Join(notes, "\n") + "\n")
	}
	return buf.Bytes()
}

func distinctPlatforms(modules []*moduleLicense) map[string]bool {
	seen := map[string]bool{}
	for _, m := range modules {
		for _, p := range m.platforms {
			seen[p] = true
		}
	}
	return seen
}

// toolName names the SBOM generator and its version from the metadata,
// which CycloneDX 1.4 writes as a list and 1.5 onwards as an object.
func toolName(b *bom) string {
	type tool struct{ Name, Version string }
	var list []tool
	if json.Unmarshal(b.Metadata.Tools, &list) != nil {
		var obj struct{ Components []tool }
		if json.Unmarshal(b.Metadata.Tools, &obj) == nil {
			list = obj.Components
		}
	}
	if len(list) == 0 {
		return "the SBOM generator"
	}
	return list[0].Name + " " + list[0].Version
}
