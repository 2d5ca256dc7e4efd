package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/manus-community/vault-plugin-secrets-manus/internal/ociimage"
)

// TestDigestsCommand writes the digests file of a real archive, as `make
// release` does, checks it, and shows the check refuses a file that names
// another digest or misses a line.
func TestDigestsCommand(t *testing.T) {
	dir := t.TempDir()
	spec := ociimage.Spec{
		Name: "vault-plugin-secrets-manus", Version: "v1.2.3", Revision: "0123abcd", Source: "https://example.com/plugin",
		Licenses: "MPL-2.0", Created: time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC), Binaries: map[string]string{},
	}
	for _, platform := range []string{"linux/amd64", "linux/arm64"} {
		binary := filepath.Join(dir, strings.ReplaceAll(platform, "/", "_"))
		if err := os.WriteFile(binary, []byte("a static binary for "+platform), 0o755); err != nil {
			t.Fatal(err)
		}
		spec.Binaries[platform] = binary
	}
	archive := filepath.Join(dir, "vault-plugin-secrets-manus_1.2.3_oci-image.tar")
	if err := ociimage.WriteArchive(spec, archive); err != nil {
		t.Fatal(err)
	}
	summary, err := ociimage.Describe(archive)
	if err != nil {
		t.Fatal(err)
	}

	file := filepath.Join(dir, "vault-plugin-secrets-manus_1.2.3_oci-image.digests")
	if err := runDigests([]string{"-o", file, archive}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	want := []string{
		"# OCI image digests of vault-plugin-secrets-manus_1.2.3_oci-image.tar, tag 1.2.3; this file is listed in SHA256SUMS",
		summary.Index.String() + "  index",
		summary.Images[0].Manifest.String() + "  linux/amd64 manifest",
		summary.Images[0].Config.String() + "  linux/amd64 config",
		summary.Images[1].Manifest.String() + "  linux/arm64 manifest",
		summary.Images[1].Config.String() + "  linux/arm64 config",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("digests file:\n%s\nwant:\n%s", data, strings.Join(want, "\n"))
	}
	if err := runDigests([]string{"-check", "-o", file, archive}); err != nil {
		t.Fatalf("the file just written does not check: %v", err)
	}

	for name, changed := range map[string]string{
		"another index digest": strings.Replace(string(data), summary.Index.Hex, strings.Repeat("0", 64), 1),
		"a platform left out":  strings.Join(lines[:4], "\n") + "\n",
	} {
		if err := os.WriteFile(file, []byte(changed), 0o644); err != nil {
			t.Fatal(err)
		}
		err := runDigests([]string{"-check", "-o", file, archive})
		if err == nil || !strings.Contains(err.Error(), "does not list the digests of") {
			t.Errorf("%s: check says %v, want a refusal", name, err)
		}
	}
}
