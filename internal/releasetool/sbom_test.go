package main

import (
	"debug/buildinfo"
	"os"
	"runtime"
	"strings"
	"testing"
)

// TestCheckSBOM checks an SBOM against a real binary, this test's own: a
// faithful SBOM passes, and each way of getting it wrong is reported.
func TestCheckSBOM(t *testing.T) {
	binary, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	info, err := buildinfo.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := fileSHA256(binary)
	if err != nil {
		t.Fatal(err)
	}
	platform := runtime.GOOS + "/" + runtime.GOARCH
	faithful := func() *bom {
		b := testBOM(t, platform)
		b.Metadata.Properties = append(b.Metadata.Properties,
			property{propGoVersion, info.GoVersion}, property{propSHA256, sum})
		b.SerialNumber = "urn:uuid:" + sbomSerial(sum)
		for _, dep := range info.Deps {
			b.Components = append(b.Components, component{Type: "library", Name: dep.Path, Version: dep.Version})
		}
		return b
	}
	want := sbomWant{module: "example.com/plugin", version: "v1.2.3", binary: binary, platform: platform}

	if problems := checkSBOM(faithful(), want); len(problems) > 0 {
		t.Fatalf("faithful SBOM: %v", problems)
	}

	cases := []struct {
		name    string
		change  func(*bom, *sbomWant)
		problem string
	}{
		{"other version", func(_ *bom, w *sbomWant) { w.version = "v1.2.4" }, "want application example.com/plugin v1.2.4"},
		{"other module", func(b *bom, _ *sbomWant) { b.Metadata.Component.Name = "example.com/other" }, "main component is application example.com/other"},
		{"other platform", func(_ *bom, w *sbomWant) { w.platform = "plan9/386" }, "want plan9/386"},
		{"no Go version", func(b *bom, _ *sbomWant) { b.Metadata.Properties = b.Metadata.Properties[:2] }, "Go version is \"\""},
		{"other binary", func(b *bom, _ *sbomWant) { b.Metadata.Properties[3].Value = strings.Repeat("0", 64) }, "binary SHA-256 is"},
		{"random serial number", func(b *bom, _ *sbomWant) {
			b.SerialNumber = "urn:uuid:0b6d5e42-8a4c-4d3e-9c1f-2f0e8d7c6b5a"
		}, "serial number is \"urn:uuid:0b6d5e42-8a4c-4d3e-9c1f-2f0e8d7c6b5a\", want urn:uuid:" + sbomSerial(sum)},
		{"no serial number", func(b *bom, _ *sbomWant) { b.SerialNumber = "" }, "serial number is \"\""},
		{"timestamp", func(b *bom, _ *sbomWant) { b.Metadata.Timestamp = "2026-11-29T03:02:06Z" },
			"metadata.timestamp is \"2026-11-29T03:02:06Z\""},
		{"module not linked", func(b *bom, _ *sbomWant) {
			b.Components = append(b.Components, component{Name: "golang.org/x/oauth2", Version: "v0.38.0"})
		}, "the SBOM lists golang.org/x/oauth2 v0.38.0, the binary does not link it"},
		{"required module missing", func(_ *bom, w *sbomWant) { w.require = []string{"github.com/hashicorp/vault/sdk@v0.25.1"} },
			"github.com/hashicorp/vault/sdk is not listed"},
		{"required module at another version", func(b *bom, w *sbomWant) {
			b.Components = append(b.Components, component{Name: "golang.org/x/oauth2", Version: "v0.37.0"})
			w.require = []string{"golang.org/x/oauth2@v0.38.0"}
		}, "golang.org/x/oauth2 is listed at v0.37.0, go.mod has v0.38.0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, w := faithful(), want
			tc.change(b, &w)
			problems := strings.Join(checkSBOM(b, w), "\n")
			if !strings.Contains(problems, tc.problem) {
				t.Fatalf("want a problem containing %q, got %q", tc.problem, problems)
			}
		})
	}
}

// TestSBOMSerial pins the serial number to RFC 4122's version 5 UUID (as
// Python's uuid.uuid5(uuid.NAMESPACE_URL, name) computes it), so any tool
// can derive it from the binary's SHA-256, and shows it differs per binary.
func TestSBOMSerial(t *testing.T) {
	zeros := strings.Repeat("0", 64)
	if got, want := sbomSerial(zeros), "423f8113-94a2-5ec1-a2d7-4804b4fbbe5c"; got != want {
		t.Fatalf("sbomSerial(%s) = %s, want %s", zeros, got, want)
	}
	if sbomSerial(zeros) == sbomSerial(strings.Repeat("1", 64)) {
		t.Fatal("two binaries' SBOMs get the same serial number")
	}
}

func TestDiffModules(t *testing.T) {
	diffs := diffModules(
		map[string]string{"a": "v1", "b": "v2", "extra": "v1"},
		map[string]string{"a": "v1", "b": "v3", "missing": "v9"},
	)
	want := []string{
		"the SBOM lists extra v1, the binary does not link it",
		"the binary links b v3, the SBOM lists v2",
		"the binary links missing v9, the SBOM does not list it",
	}
	if strings.Join(diffs, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got %q, want %q", diffs, want)
	}
}
