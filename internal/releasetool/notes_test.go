package main

import (
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/manus-community/vault-plugin-secrets-manus/internal/ociimage"
)

const testChangelog = `# Changelog

Intro.

## [Unreleased]

### Added
- Something new.

## [1.2.3]

### Fixed
- Something old.

## [1.2.2]

- Older.
`

const testSums = "abc123  vault-plugin-secrets-manus_1.2.3_linux_amd64\ndef456  THIRD_PARTY_LICENSES.md\n"

func TestReleaseNotes(t *testing.T) {
	notes := releaseNotes("1.2.3", testChangelog, testSums, "0123abcd", "go1.26.8", nil)
	for _, want := range []string{
		"# vault-plugin-secrets-manus v1.2.3\n",
		"Built from commit 0123abcd with go1.26.8",
		"## Changes in 1.2.3\n\n### Fixed\n- Something old.\n\n",
		"changes not yet released under a version",
		"### Added\n- Something new.",
		"abc123  vault-plugin-secrets-manus_1.2.3_linux_amd64\ndef456  THIRD_PARTY_LICENSES.md\n```\n",
		"```sh\ngpg --verify SHA256SUMS.sig SHA256SUMS\nsha256sum --check --ignore-missing SHA256SUMS\n```\n",
	} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes lack %q:\n%s", want, notes)
		}
	}
	if strings.Contains(notes, "Older.") {
		t.Errorf("notes carry the previous version's section:\n%s", notes)
	}
}

func TestReleaseNotesWithoutAVersionSection(t *testing.T) {
	notes := releaseNotes("1.3.0", testChangelog, testSums, "unknown", "go1.26.8", nil)
	if !strings.Contains(notes, "[Unreleased] section: it has no 1.3.0 section yet)\n\n### Added\n- Something new.") {
		t.Errorf("notes do not fall back to [Unreleased], marked:\n%s", notes)
	}
	if !strings.Contains(notes, "commit unknown") {
		t.Errorf("notes do not say the commit is unknown:\n%s", notes)
	}
}

func TestReleaseNotesOfAReleasedVersion(t *testing.T) {
	released := strings.Replace(testChangelog, "### Added\n- Something new.\n", "", 1)
	notes := releaseNotes("1.2.3", released, testSums, "0123abcd", "go1.26.8", nil)
	if strings.Contains(notes, "not yet released") {
		t.Errorf("an empty [Unreleased] section is announced:\n%s", notes)
	}
}

func TestChangelogSection(t *testing.T) {
	if body, ok := changelogSection(testChangelog, "1.2.2"); !ok || body != "- Older." {
		t.Fatalf("last section: %q %v", body, ok)
	}
	if _, ok := changelogSection(testChangelog, "1.2"); ok {
		t.Fatal("a version prefix matched a longer version's heading")
	}
}

func TestReleaseNotesListTheImageDigests(t *testing.T) {
	digest := func(c string) v1.Hash { return v1.Hash{Algorithm: "sha256", Hex: strings.Repeat(c, 64)} }
	image := &imageNotes{archive: "vault-plugin-secrets-manus_1.2.3_oci-image.tar", summary: &ociimage.Summary{
		Tag: "1.2.3", Index: digest("a"),
		Images: []ociimage.PlatformImage{{Platform: "linux/amd64", Manifest: digest("b"), Config: digest("c"), BinarySHA256: strings.Repeat("d", 64)}},
	}}
	notes := releaseNotes("1.2.3", testChangelog, testSums, "0123abcd", "go1.26.8", image)
	for _, want := range []string{
		"## Container image",
		"oci-archive:vault-plugin-secrets-manus_1.2.3_oci-image.tar:1.2.3",
		"Multi-platform index:\n`sha256:" + strings.Repeat("a", 64) + "`",
		"| linux/amd64 | `" + strings.Repeat("d", 64) + "` | `sha256:" + strings.Repeat("b", 64) + "` | `sha256:" + strings.Repeat("c", 64) + "` |",
	} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes lack %q:\n%s", want, notes)
		}
	}
}
